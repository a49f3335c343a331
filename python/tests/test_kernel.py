"""Real kernels under strace: the extension, loaded as reprotrace loads it
(one silent request), marks every cell.

How reprotrace sends that request (its own Jupyter client) is tested by the
Rust integration tests (tests/tests/notebook.rs)."""
import json
import os
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
# (`<unfinished ...>`).
MARKER_LINE = re.compile(r'openat\(-29300, "(reprotrace-cell:[^"]*)", 0(?:\) = -1 EBADF| <unfinished)')


@pytest.fixture
def hook_dir(tmp_path):
    """A hook dir as reprotrace assembles it: the package, as-is."""
    hook = tmp_path / "hook"
    shutil.copytree(PYTHON_DIR / "reprotrace", hook / "reprotrace", ignore=shutil.ignore_patterns("__pycache__"))
    return hook


class TracedKernel:
    """An ipykernel of this python, run under strace, with a blocking client."""

    def __init__(self, tmp_path, env, hook_dir):
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
        load = "import sys\nsys.path.insert(0, {!r})\nget_ipython().run_line_magic('load_ext', 'reprotrace')"
        loaded = self.execute(load.format(str(hook_dir)), silent=True, store_history=False)
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

    def execute(self, code, cell_id=None, **content):
        return self.reply(self.send(code, cell_id, **content))

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
        return [markers.parse(m) for m in MARKER_LINE.findall(self.log.read_text())]


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
        kernel.manager.interrupt_kernel()
        interrupted = kernel.reply(msg_id)
        after = kernel.execute("x = 1", cell_id="after")
    finally:
        emitted = kernel.stop()
    assert interrupted["ename"] in ("KeyboardInterrupt", "CancelledError")
    cells_and_markers_agree([(1, "sleep", code), (after["execution_count"], "after", "x = 1")], emitted)
