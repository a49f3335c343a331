"""A Jupyter kernel session, driven cell by cell, for the cell-marker tests.

Run as `python kernel_session.py WORKDIR [CELLS.json]` with a python whose
environment has ipykernel and jupyter_client (and six, which a cell imports);
WORKDIR holds `input.csv` and `for_child.txt`. The kernel runs with this same
python. CELLS.json, if given, replaces the cells below: a list of
[cell_id, source] pairs.

1. Starts the kernel; once it answers, writes its pid to WORKDIR/kernel.pid,
   then its connection file's path to WORKDIR/connection.txt.
2. Waits for WORKDIR/go (the test attaches the tracer or injects the
   extension meanwhile).
3. Runs the cells of `cells()` in order, as JupyterLab would (store_history,
   the cell id in the request's metadata as `cellId`), then writes
   WORKDIR/cells.json: one {"cell_id", "execution_count", "code_sha256",
   "status"} per cell, from the kernel's execute_reply, and creates
   WORKDIR/done.
4. Waits for WORKDIR/stop, then shuts the kernel down.

The cells' sources depend on WORKDIR only, so their hashes are the same in
every run with the same WORKDIR.
"""
import hashlib
import json
import os
import sys
import time

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

POLL = 0.02  # seconds
WAIT_TIMEOUT = 120.0  # seconds, for go and stop
REPLY_TIMEOUT = 60.0  # seconds, for each cell
ABORTED_RETRIES = 5  # times an aborted cell is sent again (see run_cell)


def cells(work):
    """(cell_id, source) of each cell, in order."""

    def path(name):
        return os.path.join(work, name)

    return [
        ("read-input", "with open({!r}) as f:\n    data = f.read()\n".format(path("input.csv"))),
        ("write-output", "with open({!r}, 'w') as f:\n    f.write('out\\n')\n".format(path("out.txt"))),
        ("import-six", "import six\n"),
        (
            "child-process",
            "import subprocess\nsubprocess.run(['cat', {!r}], capture_output=True)\n".format(path("for_child.txt")),
        ),
        ("raise", "raise ValueError('boom')\n"),
    ]


def wait_for(path):
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit("kernel_session: timed out waiting for %s" % path)
        time.sleep(POLL)


def write_atomically(path, text):
    """Write then rename: the test polls for these files."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def run_cell(client, cell_id, code):
    """Execute one cell the way JupyterLab does; return the execute_reply content.

    A cell that follows a failing one may be aborted though it was sent after
    the failure's reply: ipykernel (stop_on_error) aborts what reaches it
    before it has scheduled the end of its abort, a race the faster the
    client, the likelier. It did not run (no markers): it is sent again.
    """
    for _ in range(ABORTED_RETRIES):
        reply = send_cell(client, cell_id, code)
        if reply["status"] != "aborted":
            return reply
        time.sleep(POLL)
    raise RuntimeError("cell %r aborted %d times" % (cell_id, ABORTED_RETRIES))


def send_cell(client, cell_id, code):
    """One execute_request and its reply's content.

    BlockingKernelClient.execute() sends no request metadata, so the message is
    built here: ipykernel passes metadata["cellId"] on to IPython as cell_id.
    """
    content = {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    msg = client.session.msg("execute_request", content, metadata={"cellId": cell_id})
    client.shell_channel.send(msg)
    deadline = time.monotonic() + REPLY_TIMEOUT
    while True:
        reply = client.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.0))
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]


def main():
    work = os.path.abspath(sys.argv[1])
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as given:
            session_cells = [tuple(cell) for cell in json.load(given)]
    else:
        session_cells = cells(work)

    # The native python3 kernel spec only (no kernel dirs): its argv is this
    # very python (sys.executable) with -m ipykernel_launcher, whatever
    # kernel specs the user, the system or JUPYTER_PATH hold.
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    manager.start_kernel(cwd=work)
    try:
        client = manager.blocking_client()
        client.start_channels()
        client.wait_for_ready(timeout=REPLY_TIMEOUT)
        # Once the kernel answers; connection.txt last: when it exists, both do.
        write_atomically(os.path.join(work, "kernel.pid"), "%d\n" % manager.provisioner.pid)
        write_atomically(os.path.join(work, "connection.txt"), manager.connection_file + "\n")

        wait_for(os.path.join(work, "go"))
        results = []
        for cell_id, code in session_cells:
            reply = run_cell(client, cell_id, code)
            results.append(
                {
                    "cell_id": cell_id,
                    "execution_count": reply["execution_count"],
                    "code_sha256": hashlib.sha256(code.encode("utf-8")).hexdigest(),
                    "status": reply["status"],
                }
            )
        write_atomically(os.path.join(work, "cells.json"), json.dumps(results, indent=2) + "\n")
        open(os.path.join(work, "done"), "w").close()

        wait_for(os.path.join(work, "stop"))
        client.stop_channels()
    finally:
        manager.shutdown_kernel(now=False)


if __name__ == "__main__":
    main()
