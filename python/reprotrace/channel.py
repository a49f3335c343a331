"""The channel between a kernel and the audit that watches it.

The audit (``reprotrace attach --kernel ... --inject-hooks``, or ``reprotrace
run`` for the kernels it starts) listens on a Unix stream socket. Per request
the kernel connects, sends ONE JSON object on one line (UTF-8, ending in
``\\n``), reads ONE JSON line back and closes. Requests and replies::

    {"op": "hello"}
        {"ok": true, "audit": {"backend": "ebpf", "output": "/path/manifest.json"}}
    {"op": "cell_end", "time_ns": T}
        {"ok": true}   once the audit has processed the END marker of time T
                       (and hashed what the cell read and wrote)
    {"op": "cells"}
        {"ok": true,
         "cells": [{"execution_count": 1, "cell_id": null, "inputs": ["/abs/in.csv"],
                    "outputs": [...], "defines": [...], "uses": [...], "error": null}, ...],
         "stale": [{"execution_count": 3, "cell_id": null, "reasons": ["..."]}]}

and for any request ``{"ok": false, "error": "..."}`` when the audit refuses it.

Where the socket is:

- the audit says so: right after loading the extension it runs
  ``reprotrace.connect_audit(PATH)`` in the kernel (:func:`connect`);
- otherwise the extension looks, when a user loads it and after each cell
  while it has no channel, for ``/run/reprotrace/kernels/<pid>.sock``, then
  ``$XDG_RUNTIME_DIR/reprotrace/kernels/<pid>.sock``, then
  ``${TMPDIR:-/tmp}/reprotrace-<uid>/kernels/<pid>.sock`` (``<pid>``: the
  kernel's, :func:`os.getpid`), owned by root or by the kernel's user, and
  uses the first whose ``hello`` answers within :data:`HELLO_TIMEOUT`
  (:func:`discover`). A socket that did not answer is not tried again (until
  it is made anew).

After each cell's END marker the hook waits for ``cell_end``'s answer
(:func:`sync_cell_end`) at most :data:`CELL_END_TIMEOUT` seconds, so that the
next cell cannot change a file before the audit hashed it. A timeout is an
audit still busy (hashing a cell's large files, say): the hook says so once
and goes on using the channel, and gives it up after
:data:`SLOW_CELLS_BEFORE_GIVING_UP` timeouts in a row. A dead socket or a
broken answer never breaks the kernel either: the hook stops using that
channel, saying so in one line on stderr.
"""
import json
import os
import socket
import stat
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

CELL_END_TIMEOUT = 10.0  # seconds the hook waits after a cell for the audit
REQUEST_TIMEOUT = 10.0  # the magics' requests
HELLO_TIMEOUT = 2.0  # finding a socket
SLOW_CELLS_BEFORE_GIVING_UP = 3  # cell ends in a row the audit did not confirm in time
MAX_REPLY_BYTES = 64 << 20
RUN_DIR = "/run/reprotrace/kernels"
TEMP_DIR = None  # None: $TMPDIR, else /tmp


class ChannelError(Exception):
    """The audit did not answer: no socket, no listener, a timeout, a broken reply."""


class AuditRefused(ChannelError):
    """The audit answered ``{"ok": false, "error": ...}``."""


class AuditSlow(ChannelError):
    """The audit took the request and did not answer in time."""


def request(path: str, message: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """One request to the socket at ``path``; its reply (``ok`` true).

    Raises :class:`ChannelError` (:class:`AuditRefused` for ``ok`` false)
    unless the whole exchange took at most ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    line = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    received = bytearray()
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(line)
        while b"\n" not in received:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                raise ChannelError("the audit at %s closed the connection without answering" % path)
            received += chunk
            if len(received) > MAX_REPLY_BYTES:
                raise ChannelError("the audit at %s answered more than %d bytes" % (path, MAX_REPLY_BYTES))
    except socket.timeout:
        raise AuditSlow("the audit at %s did not answer within %g s" % (path, timeout)) from None
    except OSError as err:
        raise ChannelError("cannot reach the audit at %s: %s" % (path, err.strerror or err)) from None
    finally:
        sock.close()
    try:
        reply = json.loads(bytes(received[: received.index(b"\n")]).decode("utf-8"))
    except ValueError:
        raise ChannelError("the audit at %s answered something that is not a JSON line" % path) from None
    if not isinstance(reply, dict):
        raise ChannelError("the audit at %s answered something that is not a JSON object" % path)
    if reply.get("ok") is not True:
        raise AuditRefused(str(reply.get("error") or "the audit at %s refused the request" % path))
    return reply


class Channel:
    """The audit's socket, and the requests it answers."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return "Channel(%r)" % (self.path,)

    # Timeouts default to the module's constants as they are at the call.

    def request(self, message: Dict[str, Any], timeout: Optional[float] = None) -> Dict[str, Any]:
        return request(self.path, message, REQUEST_TIMEOUT if timeout is None else timeout)

    def hello(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """What the audit says of itself (``backend``, ``output``), maybe {}."""
        audit = self.request({"op": "hello"}, HELLO_TIMEOUT if timeout is None else timeout).get("audit")
        return audit if isinstance(audit, dict) else {}

    def cell_end(self, time_ns: int, timeout: Optional[float] = None) -> None:
        """Return once the audit has processed the END marker of ``time_ns``."""
        self.request({"op": "cell_end", "time_ns": int(time_ns)}, CELL_END_TIMEOUT if timeout is None else timeout)

    def cells(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The audit's reply about the cells run so far (``cells``, ``stale``)."""
        return self.request({"op": "cells"}, timeout)


# The kernel's channel: module state, so that it outlives %reload_ext (which
# reloads the package's __init__, not this module).
_current: Optional[Channel] = None
_audit: Optional[Dict[str, Any]] = None  # what hello said, if it was asked
_given_up: set = set()  # (path, device, inode, ctime) of sockets that failed us
_warned_refusal = False
_slow_cells = 0  # cell ends in a row the audit did not confirm in time


def current() -> Optional[Channel]:
    """The channel in use, or None."""
    return _current


def audit_info() -> Optional[Dict[str, Any]]:
    """What the audit said of itself in ``hello``, or None if not asked."""
    return _audit


def connect(path: str) -> Channel:
    """Use the socket at ``path`` (the audit gave it): no request is made now.

    Idempotent: the same path keeps the channel as it is.
    """
    global _current, _audit
    path = os.fspath(path)
    if _current is None or _current.path != path:
        _current, _audit = Channel(path), None
    return _current


def disconnect() -> None:
    """Stop using the channel (a later :func:`discover` may find one again)."""
    global _current, _audit
    _current, _audit = None, None


def socket_paths(pid: Optional[int] = None) -> List[str]:
    """Where an audit puts the socket of the kernel ``pid`` (this process):
    root's audit in /run, a user's in their runtime dir, or in the temporary
    dir when they have none."""
    name = "%d.sock" % (os.getpid() if pid is None else pid)
    paths = [os.path.join(RUN_DIR, name)]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(os.path.join(runtime, "reprotrace", "kernels", name))
    temp = TEMP_DIR or os.environ.get("TMPDIR") or "/tmp"
    paths.append(os.path.join(temp, "reprotrace-%d" % os.getuid(), "kernels", name))
    return paths


def _identity(path: str) -> Optional[Tuple[str, int, int, int]]:
    """The socket at ``path`` if one is there, owned by root or by us (its
    inode number and change time: a new socket may reuse the inode)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid not in (0, os.getuid()):
        return None
    return (path, info.st_dev, info.st_ino, info.st_ctime_ns)


def discover(pid: Optional[int] = None, timeout: Optional[float] = None) -> Optional[Channel]:
    """Find the audit's socket where it puts them; use it if ``hello`` answers.

    Returns the channel in use (an existing one is kept), or None.
    """
    global _current, _audit
    if _current is not None:
        return _current
    for path in socket_paths(pid):
        identity = _identity(path)
        if identity is None or identity in _given_up:
            continue
        channel = Channel(path)
        try:
            info = channel.hello(timeout)
        except ChannelError:
            _given_up.add(identity)
            continue
        _current, _audit = channel, info
        return channel
    return None


def sync_cell_end(time_ns: int, timeout: Optional[float] = None) -> bool:
    """After a cell's END marker: wait until the audit processed it.

    Looks for a socket first when there is no channel. Never raises (but for
    SystemExit): when the audit does not answer in time, or the socket is
    dead, says so in one line on stderr and stops using the channel.
    Returns whether the audit confirmed.
    """
    global _warned_refusal, _slow_cells
    channel = _current if _current is not None else discover()
    if channel is None:
        return False
    try:
        channel.cell_end(time_ns, timeout)
        _slow_cells = 0
        return True
    except AuditSlow as err:
        # Busy, not gone (hashing a large output, say): this cell's files may
        # be hashed after the next cell changed them; the next cells wait again.
        _slow_cells += 1
        if _slow_cells >= SLOW_CELLS_BEFORE_GIVING_UP:
            _slow_cells = 0
            _give_up(channel, "%s, %d cells in a row" % (err, SLOW_CELLS_BEFORE_GIVING_UP))
        elif _slow_cells == 1:
            _warn(
                "reprotrace: %s (busy hashing?): the next cell may change a file before the audit hashed it" % err
            )
    except AuditRefused as err:
        # The audit is there and said no: keep it, say so once.
        if not _warned_refusal:
            _warned_refusal = True
            _warn("reprotrace: the audit refused to confirm a cell (%s)" % err)
        return False
    except KeyboardInterrupt:
        _give_up(channel, "interrupted while waiting for the audit at %s" % channel.path)
    except Exception as err:  # ChannelError, or anything unexpected: never break the kernel
        _give_up(channel, str(err))
    return False


def _give_up(channel: Channel, reason: str) -> None:
    global _current, _audit
    identity = _identity(channel.path)
    if identity is not None:
        _given_up.add(identity)
    if _current is channel:
        _current, _audit = None, None
    _warn("reprotrace: %s; cells no longer wait for the audit" % reason)


def _warn(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except Exception:
        pass


# ---------------------------------------------------------------------------
# The %reprotrace magic's text, from a `cells` reply.


def _names(items: Any) -> str:
    if not isinstance(items, list):
        return ""
    return ", ".join(str(item) for item in items)


def _cell_label(cell: Dict[str, Any]) -> str:
    label = "[%s]" % (cell.get("execution_count", "?"),)
    if cell.get("cell_id"):
        label += " (cell %s)" % (cell["cell_id"],)
    return label


def _error_text(error: Any, width: int = 100) -> str:
    if not isinstance(error, dict):
        return ""
    text = str(error.get("ename") or "an exception")
    evalue = str(error.get("evalue") or "").strip().replace("\n", " ")
    if evalue:
        text += ": " + evalue
    return text if len(text) <= width else text[: width - 3] + "..."


def format_deps(reply: Dict[str, Any]) -> str:
    """Per cell run so far: files read and written, names defined and used;
    then the stale cells."""
    cells = reply.get("cells") if isinstance(reply.get("cells"), list) else []
    lines = ["reprotrace: %d cell%s audited" % (len(cells), "" if len(cells) == 1 else "s")]
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        head = _cell_label(cell)
        error = _error_text(cell.get("error"))
        if error:
            head += " raised " + error
        details = [
            ("read", _names(cell.get("inputs"))),
            ("wrote", _names(cell.get("outputs"))),
            ("defines", _names(cell.get("defines"))),
            ("uses", _names(cell.get("uses"))),
        ]
        details = [(what, text) for what, text in details if text]
        lines.append(head + ("" if details else " (no files, no names)"))
        lines += ["    %-8s %s" % (what + ":", text) for what, text in details]
    lines.append(format_stale(reply))
    return "\n".join(lines)


def format_stale(reply: Dict[str, Any]) -> str:
    """The stale cells, and why; then the audit's notes, if any."""
    stale = reply.get("stale") if isinstance(reply.get("stale"), list) else []
    stale = [cell for cell in stale if isinstance(cell, dict)]
    if not stale:
        lines = ["stale: none"]
    else:
        lines = ["stale: %d cell%s" % (len(stale), "" if len(stale) == 1 else "s")]
    for cell in stale:
        reasons = cell.get("reasons") if isinstance(cell.get("reasons"), list) else []
        reasons = [str(reason) for reason in reasons] or ["(no reason given)"]
        lines.append("  %s %s" % (_cell_label(cell), reasons[0]))
        lines += ["  %s %s" % (" " * len(_cell_label(cell)), reason) for reason in reasons[1:]]
    notes = reply.get("notes") if isinstance(reply.get("notes"), list) else []
    lines += ["note: %s" % (note,) for note in notes]
    return "\n".join(lines)
