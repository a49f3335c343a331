"""The manager of the distributed test run: tasks pinned to known workers,
each reading its own input and writing its own output, two at once on the
two-thread worker, one that starts a child process, one on each side of a
nanny restart; then what every worker loaded, for the test's importlib oracle.

    python dask_manager.py SCHEDULER_ADDRESS DATA_DIR

DATA_DIR holds in/<name>.txt for each task; outputs go to out/, the oracle to
oracle.json, and the address of the worker each task was sent to (as the
scheduler had it then) to addresses.json. The keys are the task names, so the
test knows what ran where.
"""
import json
import os
import subprocess
import sys
import time

from distributed import Client

scheduler, data = sys.argv[1], sys.argv[2]


def copy_through_file(name, delay):
    """Read in/NAME.txt, write out/NAME.txt, import six: the task's data and software."""
    import six

    with open(os.path.join(data, "in", name + ".txt")) as source:
        text = source.read()
    time.sleep(delay)
    with open(os.path.join(data, "out", name + ".txt"), "w") as target:
        target.write(text.upper())
    return {"pid": os.getpid(), "six": six.__version__}


def copy_in_child(name):
    """The same, by a child process."""
    subprocess.run(
        ["cp", os.path.join(data, "in", name + ".txt"), os.path.join(data, "out", name + ".txt")], check=True
    )
    return {"pid": os.getpid()}


def loaded_files():
    """The files of the modules this worker process has loaded from site
    directories (read from memory: asking importlib here would read every
    distribution's metadata inside the audit; the test maps them to
    distributions afterwards, with importlib, in the worker's venv)."""
    paths = (getattr(module, "__file__", None) or "" for module in list(sys.modules.values()))
    return sorted({os.path.realpath(path) for path in paths if "-packages" in path})


with Client(scheduler) as client:
    client.wait_for_workers(5, timeout=120)

    def address(worker_name):
        workers = client.scheduler_info(n_workers=-1)["workers"]
        return next(address for address, info in workers.items() if info["name"] == worker_name)

    sent_to = {}

    def run(key, function, *args, on):
        sent_to[key] = address(on)
        return client.submit(function, *args, key=key, workers=[sent_to[key]], pure=False)

    first = [
        # Two at once on the two-thread worker: each its own thread.
        run("threads-1", copy_through_file, "threads-1", 1.0, on="a-threads"),
        run("threads-2", copy_through_file, "threads-2", 1.0, on="a-threads"),
        run("child", copy_in_child, "child", on="a-threads"),
        run("solo", copy_through_file, "solo", 0, on="a-solo"),
        run("plain", copy_through_file, "plain", 0, on="b-plain"),
        run("before-restart", copy_through_file, "before-restart", 0, on="b-restart"),
        run("unaudited", copy_through_file, "unaudited", 0, on="c-lone"),
    ]
    results = client.gather(first)
    client.restart_workers([address("b-restart")])
    results.append(client.gather(run("after-restart", copy_through_file, "after-restart", 0, on="b-restart")))
    oracle = client.run(loaded_files)
    names = {address: info["name"] for address, info in client.scheduler_info(n_workers=-1)["workers"].items()}
    with open(os.path.join(data, "oracle.json"), "w") as out:
        json.dump({names[address]: found for address, found in oracle.items()}, out, indent=1, sort_keys=True)
    with open(os.path.join(data, "addresses.json"), "w") as out:
        json.dump(sent_to, out, indent=1, sort_keys=True)
    print(json.dumps(results))
