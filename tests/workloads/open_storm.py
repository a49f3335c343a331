"""Opens every file under DIR once, from THREADS threads at the same time.

Usage: python3 open_storm.py DIR THREADS
"""
import os
import sys
import threading

directory, threads = sys.argv[1], int(sys.argv[2])
names = sorted(os.listdir(directory))


def read_share(index):
    for name in names[index::threads]:
        with open(os.path.join(directory, name), "rb") as f:
            f.read(1)


workers = [threading.Thread(target=read_share, args=(index,)) for index in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
