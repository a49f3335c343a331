"""Cell markers: one failing ``openat`` per cell boundary, seen by both tracers.

A marker is the path argument of a single syscall::

    openat(-29300, b"reprotrace-cell:1:begin:<execution_count>:<cell_id>:<code_sha256>:<unix_time_ns>", O_RDONLY)
    openat(-29300, b"reprotrace-cell:2:end:<execution_count>:<cell_id>:<code_sha256>:<unix_time_ns>:<json>", O_RDONLY)

``-29300`` (:data:`MARKER_DIRFD`) is never a valid descriptor, and the path is
relative, so the kernel copies the path (the eBPF ``openat`` handler at
``sys_exit`` and strace both see it), then fails with ``EBADF`` before it looks
anything up: no file is opened, created or even stat'ed. The tracer recognises
a marker by the dirfd alone.

Fields, separated by ``:`` (none of them but the last of version 2 can
contain one):

- ``1`` or ``2``: the format version. A BEGIN is version 1; an END is
  version 2 (the extension writes no version 1 END any more, but
  :func:`parse` still reads one);
- ``phase``: ``begin`` (before the cell runs) or ``end`` (after it ran,
  whether it raised or not);
- ``execution_count``: decimal, the count IPython gives the cell;
- ``cell_id``: the frontend's cell id restricted to ``[A-Za-z0-9_-]`` (other
  characters become ``_``), at most 64 characters, or ``-`` when there is none;
- ``code_sha256``: lowercase hex SHA-256 of the cell's raw source in UTF-8;
- ``unix_time_ns``: ``time.time_ns()`` when the marker was emitted;
- version 2 only, last: the cell's outcome, one compact JSON object in ASCII
  (``json.dumps(..., ensure_ascii=True, separators=(",", ":"))``, so it holds
  no NUL and no byte above 127, but may hold ``:``)::

      {"error":null|{"ename":"ValueError","evalue":"..."},
       "names":null|{"defines":[...],"deletes":[...],"uses":[...],"truncated":false}}

  ``error``: the exception the cell raised (``ename`` its type's name,
  ``evalue`` its ``str()``), or null; ``names``: what the cell's source binds,
  deletes and reads at the top level (:mod:`reprotrace.names`), or null when
  it could not be read (a syntax error).

A whole marker is shorter than :data:`MAX_MARKER_BYTES` (4,000; the tracers
read up to ``PATH_MAX``, 4,096, including the NUL): ``evalue`` is cut to 500
characters first, then names are dropped from the end of ``uses``, then of
``deletes``, then of ``defines`` (``truncated`` becomes true), and as a last
resort ``evalue`` and ``ename`` are cut further. A BEGIN is 174 bytes plus the
digits of the execution count at most (the time has 19 digits until the year
2286).
"""
import ctypes
import hashlib
import json
import os
import re
import time
from typing import Any, List, Mapping, NamedTuple, Optional

MARKER_DIRFD = -29300
PREFIX = "reprotrace-cell"
VERSION = 1  # BEGIN markers (and the END markers of older extensions)
END_VERSION = 2  # END markers: version 1 plus the outcome, JSON
PHASES = ("begin", "end")
NO_CELL_ID = "-"
CELL_ID_MAX_LEN = 64
MAX_MARKER_BYTES = 4000  # a marker is shorter than this
EVALUE_MAX_CHARS = 500

_CELL_ID_FORBIDDEN = re.compile(r"[^A-Za-z0-9_-]")
_MARKER = re.compile(
    r"reprotrace-cell:(?P<version>[0-9]+):(?P<phase>begin|end):(?P<execution_count>[0-9]+)"
    r":(?P<cell_id>[A-Za-z0-9_-]{1,64}):(?P<code_sha256>[0-9a-f]{64}):(?P<time_ns>[0-9]+)"
    r"(?::(?P<outcome>.*))?",
    re.DOTALL,
)

# libc's openat, not os.open: os.open(dir_fd=...) rejects a negative dir_fd
# before any syscall is made. openat is variadic (mode), but the mode is only
# read with O_CREAT/O_TMPFILE, so the three fixed arguments are all it needs.
_libc = ctypes.CDLL(None, use_errno=True)
_openat = _libc.openat
_openat.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
_openat.restype = ctypes.c_int


class CellError(NamedTuple):
    """The exception a cell raised: its type's name and its ``str()``."""

    ename: str
    evalue: str

    @classmethod
    def of(cls, exception: BaseException) -> "CellError":
        """The error of an exception (never raises, whatever its ``__str__`` does)."""
        try:
            evalue = str(exception)
        except BaseException:  # noqa: B036 -- a broken __str__ must not break the END
            evalue = "<unprintable %s object>" % type(exception).__name__
        return cls(type(exception).__name__, evalue)


class CellNames(NamedTuple):
    """The names a cell's source binds, deletes and reads (see :mod:`reprotrace.names`)."""

    defines: List[str]
    deletes: List[str]
    uses: List[str]
    truncated: bool = False  # lists were cut to fit the marker


class Outcome(NamedTuple):
    """What an END marker (version 2) says of the cell's run."""

    error: Optional[CellError] = None
    names: Optional[CellNames] = None


class Marker(NamedTuple):
    """A decoded marker (see :func:`parse`)."""

    version: int
    phase: str
    execution_count: int
    cell_id: Optional[str]  # None when the frontend sent no cell id
    code_sha256: str
    time_ns: int
    # Version 2 (END) only; None in a version 1 marker.
    error: Optional[CellError] = None  # None: the cell raised nothing
    names: Optional[CellNames] = None  # None: the source could not be read


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


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unsurrogate(match: "re.Match[str]") -> str:
    code = ord(match.group())
    # A byte that did not decode (surrogateescape, as in os.fsdecode) reads
    # as Python shows it; any other lone surrogate becomes U+FFFD.
    return "\\x%02x" % (code - 0xDC00) if 0xDC80 <= code <= 0xDCFF else "\ufffd"


def json_text(text: str) -> str:
    """``text`` without lone surrogates: JSON parsers (serde_json, the
    tracer's) reject the ``\\udXXX`` escape of one, and so the marker."""
    return _SURROGATE.sub(_unsurrogate, text)


def _outcome_json(error: Optional[CellError], names: Optional[CellNames]) -> Any:
    return {
        "error": None if error is None else {"ename": error.ename, "evalue": error.evalue},
        "names": None
        if names is None
        else {
            "defines": list(names.defines),
            "deletes": list(names.deletes),
            "uses": list(names.uses),
            "truncated": bool(names.truncated),
        },
    }


def encode_outcome(outcome: Outcome, room: int) -> str:
    """The outcome field in at most ``room`` bytes, cut as the module says."""
    error, names = outcome
    if error is not None:
        error = CellError(json_text(error.ename), json_text(error.evalue)[:EVALUE_MAX_CHARS])
    if names is not None:
        names = CellNames(*([json_text(name) for name in kept] for kept in names[:3]), truncated=names.truncated)
    text = _json(_outcome_json(error, names))
    if len(text) <= room:
        return text
    if names is not None:
        # Drop names from the end of uses, then deletes, then defines. A name
        # costs its JSON string and a comma: drop what the excess needs at
        # once, then check, one more name at a time.
        lists = [list(names.defines), list(names.deletes), list(names.uses)]
        excess = len(text) - room - 1  # "true" is one byte shorter than "false"
        for kept in reversed(lists):
            while kept and excess > 0:
                excess -= len(_json(kept.pop())) + 1
        while True:
            names = CellNames(lists[0], lists[1], lists[2], True)
            text = _json(_outcome_json(error, names))
            if len(text) <= room:
                return text
            nonempty = [kept for kept in reversed(lists) if kept]
            if not nonempty:
                break
            nonempty[0].pop()
    return _fit_error(error, names, room)


def _fit_error(error: Optional[CellError], names: Optional[CellNames], room: int) -> str:
    """Last resort, names all gone: cut evalue, then ename, until it fits."""
    assert error is not None, "an outcome without error or names always fits"
    evalue, ename = error.evalue, error.ename
    while True:
        text = _json(_outcome_json(CellError(ename, evalue), names))
        if len(text) <= room:
            return text
        over = len(text) - room
        if evalue:
            # A character takes at most 12 bytes in ASCII JSON (a surrogate pair).
            evalue = evalue[: max(0, len(evalue) - max(1, over // 12))]
        else:
            ename = ename[: max(0, len(ename) - max(1, over // 12))]


def encode(
    phase: str,
    execution_count: int,
    cell_id: Optional[str],
    code: str,
    time_ns: int,
    outcome: Optional[Outcome] = None,
) -> bytes:
    """The marker path for a cell boundary: version 1 without ``outcome``,
    version 2 (an END only) with one."""
    if phase not in PHASES:
        raise ValueError("phase must be 'begin' or 'end', not %r" % (phase,))
    if execution_count < 0:
        raise ValueError("execution_count must not be negative")
    if outcome is not None and phase != "end":
        raise ValueError("only an END marker carries an outcome")
    text = "%s:%d:%s:%d:%s:%s:%d" % (
        PREFIX,
        VERSION if outcome is None else END_VERSION,
        phase,
        execution_count,
        sanitize_cell_id(cell_id),
        code_sha256(code),
        time_ns,
    )
    if outcome is not None:
        room = MAX_MARKER_BYTES - 1 - len(text) - 1  # the ":", and "shorter than"
        text += ":" + encode_outcome(Outcome(*outcome), room)
    return text.encode("ascii")


def emit(
    phase: str,
    execution_count: int,
    cell_id: Optional[str],
    code: str,
    outcome: Optional[Outcome] = None,
    time_ns: Optional[int] = None,
) -> bytes:
    """Emit one marker (one ``openat`` syscall) and return its path.

    ``time_ns`` defaults to now. Never raises for the syscall's result: it
    fails with EBADF by design, and ``ctypes.get_errno()`` tells the errno
    afterwards.
    """
    if time_ns is None:
        time_ns = time.time_ns()
    path = encode(phase, execution_count, cell_id, code, time_ns, outcome)
    fd = _openat(MARKER_DIRFD, path, os.O_RDONLY)
    if fd >= 0:  # cannot happen on Linux; never leak a descriptor if it does
        os.close(fd)
    return path


def _strings(value: Any, what: str) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("%s must be a list of strings" % what)
    return value


def _decode_outcome(text: str) -> Outcome:
    """The outcome field, read as reprotrace's tracer reads it (missing keys
    are null or empty, unknown ones ignored)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError("the outcome of a marker is not JSON: %r" % (text,)) from None
    if not isinstance(value, Mapping):
        raise ValueError("the outcome of a marker is not a JSON object")
    error = value.get("error")
    if error is not None:
        if not isinstance(error, Mapping) or not all(isinstance(error.get(k), str) for k in ("ename", "evalue")):
            raise ValueError("a marker's error must be null or {ename, evalue}")
        error = CellError(error["ename"], error["evalue"])
    names = value.get("names")
    if names is not None:
        if not isinstance(names, Mapping):
            raise ValueError("a marker's names must be null or an object")
        truncated = names.get("truncated", False)
        if not isinstance(truncated, bool):
            raise ValueError("a marker's names.truncated must be a boolean")
        names = CellNames(
            *(_strings(names.get(k, []), "names." + k) for k in ("defines", "deletes", "uses")),
            truncated=truncated,
        )
    return Outcome(error, names)


def parse(path: str) -> Marker:
    """Decode a marker path as a tracer logs it; ValueError if it is not one.

    A version 1 marker has no outcome (``error`` and ``names`` are None); a
    version 2 marker is an END and has one.
    """
    match = _MARKER.fullmatch(path)
    if match is None:
        raise ValueError("not a reprotrace cell marker: %r" % (path,))
    version = int(match["version"])
    if version not in (VERSION, END_VERSION):
        raise ValueError("unsupported reprotrace cell marker version %d" % version)
    outcome = Outcome()
    if version == VERSION:
        if match["outcome"] is not None:
            raise ValueError("a version 1 marker has no outcome: %r" % (path,))
    else:
        if match["phase"] != "end" or match["outcome"] is None:
            raise ValueError("a version 2 marker is an END with an outcome: %r" % (path,))
        outcome = _decode_outcome(match["outcome"])
    cell_id = match["cell_id"]
    return Marker(
        version=version,
        phase=match["phase"],
        execution_count=int(match["execution_count"]),
        cell_id=None if cell_id == NO_CELL_ID else cell_id,
        code_sha256=match["code_sha256"],
        time_ns=int(match["time_ns"]),
        error=outcome.error,
        names=outcome.names,
    )
