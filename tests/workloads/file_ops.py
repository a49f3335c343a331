"""A workload that exercises every way a program names files.

Run as `python3 file_ops.py WORKDIR` with WORKDIR holding `inputs/` (see
tests/src/lib.rs `prepare_file_ops`). Each step's comment says what the tracer
must get right.
"""
import os
import subprocess
import sys
import threading

work = sys.argv[1]

# chdir, then a path relative to the new working directory.
os.chdir(work)
with open("inputs/relative.txt") as f:
    f.read()

# A path relative to a directory descriptor (openat with a real dirfd).
inputs_fd = os.open("inputs", os.O_RDONLY | os.O_DIRECTORY)
fd = os.open("dirfd.txt", os.O_RDONLY, dir_fd=inputs_fd)
os.read(fd, 100)
os.close(fd)

# ".." folded lexically after another chdir.
os.chdir("outputs")
with open("../inputs/after_chdir.txt") as f:
    f.read()

# fchdir into the directory descriptor, then a relative path.
os.fchdir(inputs_fd)
with open("fchdir.txt") as f:
    f.read()
os.chdir(work)


# Reads from threads (tasks of the same process sharing cwd and descriptors).
def read_input(name):
    with open(os.path.join("inputs", name)) as f:
        f.read()


threads = [threading.Thread(target=read_input, args=(name,)) for name in ("thread1.txt", "thread2.txt")]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()

# A forked child (no exec) that writes.
pid = os.fork()
if pid == 0:
    with open("outputs/child.txt", "w") as f:
        f.write("from the child\n")
    os._exit(0)
os.waitpid(pid, 0)

# A shell redirection in another program.
subprocess.run(["sh", "-c", "cat inputs/a.txt > outputs/b.txt"], check=True)

# An atomic save: the temp name is no output, the target is.
with open("outputs/result.json.tmp", "w") as f:
    f.write('{"ok": true}\n')
os.replace("outputs/result.json.tmp", "outputs/result.json")

# A temp file created and deleted within the run: no output.
with open("scratch.tmp", "w") as f:
    f.write("scratch")
os.unlink("scratch.tmp")

# A name that is not UTF-8.
with open(os.fsencode("outputs/") + b"caf\xe9.txt", "wb") as f:
    f.write(b"bytes")

os.close(inputs_fd)
