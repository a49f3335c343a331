"""Real kernels under strace: the extension, loaded as reprotrace loads it
(one silent request), marks every cell.

How reprotrace sends that request (its own Jupyter client) is tested by the
Rust integration tests (tests/tests/notebook.rs)."""
import codecs
import json
import os
import queue
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ipykernel")
jupyter_client = pytest.importorskip("jupyter_client")
if shutil.which("strace") is None:
    pytest.skip("needs strace", allow_module_level=True)

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

from reprotrace import markers  # noqa: E402

PYTHON_DIR = Path(__file__).resolve().parent.parent
# The path is in the first line of a syscall that another thread interrupts
# (`<unfinished ...>`). strace escapes `"` and `\\` in it (an END's JSON).
MARKER_LINE = re.compile(r'openat\(-29300, "(reprotrace-cell:(?:[^"\\]|\\.)*)", 0(?:\) = -1 EBADF| <unfinished)')

# What reprotrace sends today (tracer-user/src/jupyter/client.rs), and what
# it should send: the extension loaded quietly, then the audit's socket.
LEGACY_LOAD = """\
import sys as _reprotrace_sys
if {dir} not in _reprotrace_sys.path:
    _reprotrace_sys.path.insert(0, {dir})
del _reprotrace_sys
if 'reprotrace' not in get_ipython().extension_manager.loaded:
    get_ipython().run_line_magic('load_ext', 'reprotrace')
"""
INJECTED_LOAD = """\
import sys as _reprotrace_sys
if {dir} not in _reprotrace_sys.path:
    _reprotrace_sys.path.insert(0, {dir})
del _reprotrace_sys
import reprotrace as _reprotrace
if 'reprotrace' not in get_ipython().extension_manager.loaded:
    _reprotrace._quiet_load = True
    get_ipython().run_line_magic('load_ext', 'reprotrace')
if hasattr(_reprotrace, 'connect_audit') and {socket} is not None:
    _reprotrace.connect_audit({socket})
del _reprotrace
"""


@pytest.fixture
def hook_dir(tmp_path):
    """A hook dir as reprotrace assembles it: the package, as-is."""
    hook = tmp_path / "hook"
    shutil.copytree(PYTHON_DIR / "reprotrace", hook / "reprotrace", ignore=shutil.ignore_patterns("__pycache__"))
    return hook


class TracedKernel:
    """An ipykernel of this python, run under strace, with a blocking client."""

    def __init__(self, tmp_path, env, hook_dir, load=INJECTED_LOAD, audit_socket=None):
        self.log = tmp_path / "strace.log"
        spec_dir = tmp_path / "kernels" / "traced"
        spec_dir.mkdir(parents=True)
        argv = ["strace", "-f", "-X", "raw", "-e", "trace=openat", "-o", str(self.log)]
        argv += [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "traced", "language": "python"}))
        self.manager = jupyter_client.KernelManager(
            kernel_name="traced", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
        )
        self.manager.start_kernel(env=env)
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        # What reprotrace sends: the hook dir on sys.path, the extension loaded.
        code = load.format(dir=json.dumps(str(hook_dir)), socket=repr(audit_socket))
        loaded = self.execute(code, silent=True, store_history=False)
        assert loaded["status"] == "ok", loaded

    def send(self, code, cell_id=None, **content):
        """Send code with a JupyterLab-style cellId; return the request's msg_id."""
        content = dict({"code": code, "silent": False, "store_history": True, "allow_stdin": False}, **content)
        metadata = {"cellId": cell_id} if cell_id else {}
        msg = self.client.session.msg("execute_request", content, metadata=metadata)
        self.client.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def reply(self, msg_id):
        """The execute_reply content for a request."""
        while True:
            reply = self.client.get_shell_msg(timeout=60)
            if reply["parent_header"]["msg_id"] == msg_id:
                return reply["content"]

    def interrupt(self, msg_id):
        """Interrupt the kernel until the request's reply comes (as a user
        presses the button again: under strace on a loaded machine a lone
        SIGINT was once seen to be lost), and return its content."""
        for _ in range(6):
            self.manager.interrupt_kernel()
            try:
                reply = self.client.get_shell_msg(timeout=10)
            except queue.Empty:
                continue
            if reply["parent_header"]["msg_id"] == msg_id:
                return reply["content"]
        return self.reply(msg_id)

    def execute(self, code, cell_id=None, **content):
        return self.reply(self.send(code, cell_id, **content))

    def streams(self, msg_id):
        """What a request printed ({"stdout": ..., "stderr": ...}), once it is idle."""
        printed = {"stdout": "", "stderr": ""}
        while True:
            msg = self.client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                printed[msg["content"]["name"]] += msg["content"]["text"]
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return printed

    def run(self, code, cell_id=None, **content):
        """Execute code: (its reply, what it printed)."""
        msg_id = self.send(code, cell_id, **content)
        reply = self.reply(msg_id)
        return reply, self.streams(msg_id)

    def value(self, expression):
        """An expression's repr, silently."""
        reply = self.execute("", silent=True, user_expressions={"v": expression})
        return reply["user_expressions"]["v"]["data"]["text/plain"]

    def state(self):
        """(execution_count, len(In), history length) without changing them."""
        expressions = {
            "count": "get_ipython().execution_count",
            "inputs": "len(In)",
            "history": "len(list(get_ipython().history_manager.get_range()))",
        }
        reply = self.execute("", silent=True, user_expressions=expressions)
        return tuple(int(reply["user_expressions"][k]["data"]["text/plain"]) for k in expressions)

    def stop(self):
        """Shut the kernel down; the markers strace logged."""
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)
        return [markers.parse(unescape(m)) for m in MARKER_LINE.findall(self.log.read_text())]


def unescape(quoted):
    """A string as strace printed it (C escapes)."""
    return codecs.escape_decode(quoted.encode())[0].decode()


def kernel_env():
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def cells_and_markers_agree(replies, emitted):
    """One BEGIN then one END per (count, cell_id, code), in order."""
    expected = []
    for count, cell_id, code in replies:
        digest = markers.code_sha256(code)
        expected += [("begin", count, cell_id, digest), ("end", count, cell_id, digest)]
    assert [(m.phase, m.execution_count, m.cell_id, m.code_sha256) for m in emitted] == expected


def test_every_cell_gets_its_markers(tmp_path, hook_dir):
    kernel = TracedKernel(tmp_path, kernel_env(), hook_dir)
    try:
        cells = [("c-1", "x = 1"), ("c-2", "print(x)"), (None, "y = x + 1"), ("c-4", "raise ValueError('boom')")]
        replies = []
        for cell_id, code in cells:
            reply = kernel.execute(code, cell_id=cell_id)
            replies.append((reply["execution_count"], cell_id, code))
        assert reply["status"] == "error"
        kernel.execute("z = 1", silent=True)
    finally:
        emitted = kernel.stop()
    assert [count for count, _, _ in replies] == [1, 2, 3, 4]
    cells_and_markers_agree(replies, emitted)
    assert [m.version for m in emitted] == [1, 2] * 4
    ends = [(m.error, m.names) for m in emitted if m.phase == "end"]
    assert ends == [
        (None, markers.CellNames(["x"], [], [], False)),
        (None, markers.CellNames([], [], ["x"], False)),
        (None, markers.CellNames(["y"], [], ["x"], False)),
        (markers.CellError("ValueError", "boom"), markers.CellNames([], [], [], False)),
    ]


def test_the_extension_as_reprotrace_loads_it_today(tmp_path, hook_dir):
    kernel = TracedKernel(tmp_path, kernel_env(), hook_dir, load=LEGACY_LOAD)
    try:
        reply = kernel.execute("x = 1", cell_id="c-1")
    finally:
        emitted = kernel.stop()
    cells_and_markers_agree([(reply["execution_count"], "c-1", "x = 1")], emitted)


def test_tracebacks_import_nothing_inside_cells(tmp_path, hook_dir):
    """IPython's traceback machinery is loaded with the extension (by the time
    the first cell begins: it loads in a thread), not by the first cell that
    raises."""
    kernel = TracedKernel(tmp_path, kernel_env(), hook_dir)
    cells = [
        "def f():\n    data = [1]\n    return data[2] / 0\nf()",
        "import json\njson.loads('{')",
        "x = (1,\n",
        "try:\n    1 / 0\nexcept Exception as e:\n    raise ValueError('x') from e",
        "def r(n):\n    return r(n + 1)\nr(0)",
        "undefined_name",
    ]
    try:
        # A silent request fires no cell hook: a cell waits for the warm-up.
        kernel.execute("pass")
        for code in cells:
            kernel.execute("import sys as _s; _before = set(_s.modules)", silent=True)
            # stop_on_error=False: the kernel may abort a request that comes
            # right after an error (the value's, which then has no value).
            reply = kernel.execute(code, stop_on_error=False)
            assert reply["status"] == "error"
            assert kernel.value("sorted(set(_s.modules) - _before)") == "[]", code
    finally:
        kernel.stop()


def test_each_cell_waits_for_the_audit(tmp_path, hook_dir, fake_audit):
    audit = fake_audit(delay=0.2)
    kernel = TracedKernel(tmp_path, kernel_env(), hook_dir, audit_socket=audit.path)
    try:
        for code in ("x = 1", "raise KeyError('k')", "y = x"):
            kernel.execute(code)
        printed = kernel.run("%reprotrace stale")[1]
    finally:
        emitted = kernel.stop()
    ends = [m.time_ns for m in emitted if m.phase == "end"]
    assert len(ends) == 4
    assert [request for _, request in audit.requests] == [{"op": "cell_end", "time_ns": t} for t in ends[:3]] + [
        {"op": "cells"},
        {"op": "cell_end", "time_ns": ends[3]},
    ]
    assert printed == {"stdout": "stale: 1 cell\n  [1] /data/in.csv changed after it ran\n      x\n", "stderr": ""}


def test_a_dead_audit_does_not_break_the_kernel(tmp_path, hook_dir, fake_audit):
    audit = fake_audit()
    kernel = TracedKernel(tmp_path, kernel_env(), hook_dir, audit_socket=audit.path)
    try:
        first = kernel.run("x = 1")
        audit.stop(remove=False)
        second = kernel.run("y = 2")
        third = kernel.run("z = 3")
    finally:
        emitted = kernel.stop()
    assert [reply["status"] for reply, _ in (first, second, third)] == ["ok"] * 3
    assert first[1]["stderr"] == "" and third[1]["stderr"] == ""
    assert second[1]["stderr"].count("\n") == 1 and "cannot reach the audit" in second[1]["stderr"]
    assert [m.phase for m in emitted] == ["begin", "end"] * 3


# Through run_cell, and through run_cell_async, where ipykernel cancels the
# cell's task once it yields (here when the sleep ends), and passes
# post_run_cell no result.
@pytest.mark.parametrize("sleep", ["time.sleep(60)", "await asyncio.sleep(3)"])
def test_an_interrupted_cell_gets_its_end(tmp_path, hook_dir, sleep):
    kernel = TracedKernel(tmp_path, kernel_env(), hook_dir)
    try:
        code = "import asyncio, time\nopen({!r}, 'w').close()\n{}".format(str(tmp_path / "sleeping"), sleep)
        # stop_on_error=False: ipykernel 6 would abort the next request.
        msg_id = kernel.send(code, cell_id="sleep", stop_on_error=False)
        while not (tmp_path / "sleeping").exists():
            time.sleep(0.02)
        interrupted = kernel.interrupt(msg_id)
        after = kernel.execute("x = 1", cell_id="after")
    finally:
        emitted = kernel.stop()
    assert interrupted["ename"] in ("KeyboardInterrupt", "CancelledError")
    cells_and_markers_agree([(1, "sleep", code), (after["execution_count"], "after", "x = 1")], emitted)
    assert emitted[1].error.ename == interrupted["ename"]
    assert emitted[3].error is None
