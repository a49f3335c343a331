"""The package under test is this tree's (python/), whatever is installed; and
a fake audit to talk to."""
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))

from reprotrace import channel  # noqa: E402

CELLS_REPLY = {
    "ok": True,
    "cells": [
        {
            "execution_count": 1,
            "cell_id": None,
            "inputs": ["/data/in.csv"],
            "outputs": ["/data/out.csv"],
            "defines": ["df", "pd"],
            "uses": [],
            "error": None,
        },
        {
            "execution_count": 2,
            "cell_id": "c-2",
            "inputs": [],
            "outputs": [],
            "defines": [],
            "uses": ["df"],
            "error": {"ename": "KeyError", "evalue": "'price'"},
        },
        {"execution_count": 3, "cell_id": None, "inputs": [], "outputs": [], "defines": [], "uses": [], "error": None},
    ],
    "stale": [{"execution_count": 1, "cell_id": None, "reasons": ["/data/in.csv changed after it ran", "x"]}],
}


class FakeAudit:
    """A thread serving the audit's socket: one JSON line in, one out.

    ``delay``: seconds before answering; ``answer``: request -> reply (a dict,
    or bytes sent as they are, or None to close without answering).
    """

    def __init__(self, path, answer=None, delay=0.0):
        self.path = str(path)
        self.answer = answer or self.default_answer
        self.delay = delay
        self.requests = []  # (time.monotonic(), request)
        self.output = "/audit/manifest.json"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(8)
        self.listener.settimeout(0.05)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def default_answer(self, request):
        if request.get("op") == "hello":
            return {"ok": True, "audit": {"backend": "ebpf", "output": self.output}}
        if request.get("op") == "cell_end":
            return {"ok": True}
        if request.get("op") == "cells":
            return CELLS_REPLY
        return {"ok": False, "error": "unknown op %r" % (request.get("op"),)}

    def ops(self):
        return [request.get("op") for _, request in self.requests]

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    request = json.loads(data.split(b"\n")[0])
                    self.requests.append((time.monotonic(), request))
                    if self.delay:
                        self._stop.wait(self.delay)
                    reply = self.answer(request)
                    if reply is None:
                        continue
                    if isinstance(reply, dict):
                        reply = (json.dumps(reply) + "\n").encode()
                    conn.sendall(reply)
                except (OSError, ValueError):
                    continue

    def stop(self, remove=True):
        """Stop listening (the socket file stays unless ``remove``)."""
        self._stop.set()
        self.thread.join(5)
        self.listener.close()
        if remove and os.path.exists(self.path):
            os.unlink(self.path)


@pytest.fixture
def short_tmp():
    """A directory with a short path: a Unix socket's path has 107 bytes at most."""
    path = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_audit(short_tmp):
    """Start fake audits (FakeAudit arguments); all stopped at the end."""
    started = []

    def start(name="audit.sock", **kwargs):
        audit = FakeAudit(short_tmp / name, **kwargs)
        started.append(audit)
        return audit

    yield start
    for audit in started:
        audit.stop()


@pytest.fixture(autouse=True)
def no_channel(monkeypatch, short_tmp):
    """Every test starts without a channel, and finds no real audit's socket."""
    channel.disconnect()
    channel._given_up.clear()
    monkeypatch.setattr(channel, "_warned_refusal", False)
    monkeypatch.setattr(channel, "RUN_DIR", str(short_tmp / "run"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(channel, "TEMP_DIR", str(short_tmp / "tmp"))
    yield
    channel.disconnect()
    channel._given_up.clear()
