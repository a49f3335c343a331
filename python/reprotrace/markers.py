"""Cell markers: one failing ``openat`` per cell boundary, seen by both tracers.

A marker is the path argument of a single syscall::

    openat(-29300, b"reprotrace-cell:1:<phase>:<execution_count>:<cell_id>:<code_sha256>:<unix_time_ns>", O_RDONLY)

``-29300`` (:data:`MARKER_DIRFD`) is never a valid descriptor, and the path is
relative, so the kernel copies the path (the eBPF ``sys_enter_openat``
tracepoint and strace both see it), then fails with ``EBADF`` before it looks
anything up: no file is opened, created or even stat'ed. The tracer recognises
a marker by the dirfd alone.

Fields, separated by ``:`` (none of them can contain one):

- ``1``: the format version;
- ``phase``: ``begin`` (before the cell runs) or ``end`` (after it ran,
  whether it raised or not);
- ``execution_count``: decimal, the count IPython gives the cell;
- ``cell_id``: the frontend's cell id restricted to ``[A-Za-z0-9_-]`` (other
  characters become ``_``), at most 64 characters, or ``-`` when there is none;
- ``code_sha256``: lowercase hex SHA-256 of the cell's raw source in UTF-8;
- ``unix_time_ns``: ``time.time_ns()`` when the marker was emitted.

A marker is 174 bytes plus the digits of the execution count at most (the
time has 19 digits until the year 2286).
"""
import ctypes
import hashlib
import os
import re
import time
from typing import NamedTuple, Optional

MARKER_DIRFD = -29300
PREFIX = "reprotrace-cell"
VERSION = 1
PHASES = ("begin", "end")
NO_CELL_ID = "-"
CELL_ID_MAX_LEN = 64

_CELL_ID_FORBIDDEN = re.compile(r"[^A-Za-z0-9_-]")
_MARKER = re.compile(
    r"reprotrace-cell:(?P<version>[0-9]+):(?P<phase>begin|end):(?P<execution_count>[0-9]+)"
    r":(?P<cell_id>[A-Za-z0-9_-]{1,64}):(?P<code_sha256>[0-9a-f]{64}):(?P<time_ns>[0-9]+)"
)

# libc's openat, not os.open: os.open(dir_fd=...) rejects a negative dir_fd
# before any syscall is made. openat is variadic (mode), but the mode is only
# read with O_CREAT/O_TMPFILE, so the three fixed arguments are all it needs.
_libc = ctypes.CDLL(None, use_errno=True)
_openat = _libc.openat
_openat.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
_openat.restype = ctypes.c_int


class Marker(NamedTuple):
    """A decoded marker (see :func:`parse`)."""

    version: int
    phase: str
    execution_count: int
    cell_id: Optional[str]  # None when the frontend sent no cell id
    code_sha256: str
    time_ns: int


def sanitize_cell_id(cell_id: Optional[str]) -> str:
    """The marker's cell_id field for a frontend's cell id (None: none sent)."""
    if not cell_id:
        return NO_CELL_ID
    return _CELL_ID_FORBIDDEN.sub("_", str(cell_id)[:CELL_ID_MAX_LEN])


def code_sha256(code: str) -> str:
    """Hex SHA-256 of a cell's source in UTF-8.

    ``surrogatepass`` keeps this total: a notebook's JSON can hold a lone
    surrogate, which plain UTF-8 refuses to encode.
    """
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def encode(phase: str, execution_count: int, cell_id: Optional[str], code: str, time_ns: int) -> bytes:
    """The marker path for a cell boundary."""
    if phase not in PHASES:
        raise ValueError("phase must be 'begin' or 'end', not %r" % (phase,))
    if execution_count < 0:
        raise ValueError("execution_count must not be negative")
    text = "%s:%d:%s:%d:%s:%s:%d" % (
        PREFIX,
        VERSION,
        phase,
        execution_count,
        sanitize_cell_id(cell_id),
        code_sha256(code),
        time_ns,
    )
    return text.encode("ascii")


def emit(phase: str, execution_count: int, cell_id: Optional[str], code: str) -> bytes:
    """Emit one marker (one ``openat`` syscall) and return its path.

    Never raises for the syscall's result: it fails with EBADF by design, and
    ``ctypes.get_errno()`` tells the errno afterwards.
    """
    path = encode(phase, execution_count, cell_id, code, time.time_ns())
    fd = _openat(MARKER_DIRFD, path, os.O_RDONLY)
    if fd >= 0:  # cannot happen on Linux; never leak a descriptor if it does
        os.close(fd)
    return path


def parse(path: str) -> Marker:
    """Decode a marker path as a tracer logs it; ValueError if it is not one."""
    match = _MARKER.fullmatch(path)
    if match is None:
        raise ValueError("not a reprotrace cell marker: %r" % (path,))
    version = int(match["version"])
    if version != VERSION:
        raise ValueError("unsupported reprotrace cell marker version %d" % version)
    cell_id = match["cell_id"]
    return Marker(
        version=version,
        phase=match["phase"],
        execution_count=int(match["execution_count"]),
        cell_id=None if cell_id == NO_CELL_ID else cell_id,
        code_sha256=match["code_sha256"],
        time_ns=int(match["time_ns"]),
    )
