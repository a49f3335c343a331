"""Load the reprotrace extension into a kernel that is already running.

    python -m reprotrace.inject CONNECTION_FILE HOOK_DIR

reprotrace runs this with the kernel's own python (which has jupyter_client,
a dependency of ipykernel) and PYTHONPATH=HOOK_DIR. It sends the kernel one
execute_request with silent=True and store_history=False: the kernel's
execution count, In/Out and history stay as they were, and no cell markers
are emitted for it. The request puts HOOK_DIR first on the kernel's sys.path
(the package there matches the tracer's marker format) and runs
``%load_ext reprotrace`` unless the extension is already loaded (the magic
would print a notice). A request sent while a cell runs waits for it: the
kernel handles execute requests one at a time.

Exit status: 0 when the kernel replied ok, 1 otherwise (the error on stderr),
2 for bad arguments.
"""
import argparse
import sys

REPLY_TIMEOUT = 30.0  # seconds

# Names the code binds in the user namespace are deleted again.
_CODE = """\
import sys as _reprotrace_sys
if {hook_dir!r} not in _reprotrace_sys.path:
    _reprotrace_sys.path.insert(0, {hook_dir!r})
del _reprotrace_sys
if 'reprotrace' not in get_ipython().extension_manager.loaded:
    get_ipython().run_line_magic('load_ext', 'reprotrace')
"""


def inject(connection_file: str, hook_dir: str, timeout: float = REPLY_TIMEOUT) -> dict:
    """Send the request; return the execute_reply's content."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient()
    client.load_connection_file(connection_file)
    # Only the shell channel: the reply comes there; no iopub or stdin.
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        reply = client.execute(
            _CODE.format(hook_dir=hook_dir),
            silent=True,
            store_history=False,
            allow_stdin=False,
            reply=True,
            timeout=timeout,
        )
    finally:
        client.stop_channels()
    return reply["content"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reprotrace.inject",
        description="Load the reprotrace cell-marker extension into a running IPython kernel.",
    )
    parser.add_argument("connection_file", help="the kernel's connection file (kernel-*.json)")
    parser.add_argument("hook_dir", help="directory holding the reprotrace package, put on the kernel's sys.path")
    args = parser.parse_args(argv)
    try:
        content = inject(args.connection_file, args.hook_dir)
    except Exception as exc:  # connection file unreadable, timeout, ...
        print("reprotrace.inject: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
        return 1
    if content.get("status") == "ok":
        return 0
    print(
        "reprotrace.inject: the kernel answered %s: %s: %s"
        % (content.get("status"), content.get("ename", ""), content.get("evalue", "")),
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
