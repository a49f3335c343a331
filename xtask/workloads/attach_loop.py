"""The attach benchmark's workload: a process already running when the tracer
joins it, then doing file work in a loop, like a notebook cell that reads its
data in small pieces.

Usage: python3 attach_loop.py WORKDIR ITERATIONS
Creates WORKDIR/ready, waits for WORKDIR/go, runs the loop, prints its seconds.
"""
import os
import sys
import time

work, iterations = sys.argv[1], int(sys.argv[2])
path = os.path.join(work, "chunk.csv")
with open(path, "w") as f:
    f.write("x,y\n" * 256)
open(os.path.join(work, "ready"), "w").close()
while not os.path.exists(os.path.join(work, "go")):
    time.sleep(0.005)
start = time.perf_counter()
total = 0
for _ in range(iterations):
    with open(path) as f:
        total += len(f.read())
    os.stat(path)
print(time.perf_counter() - start)
