"""The marker encoding and the syscall that carries it."""
import codecs
import ctypes
import errno
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys

import pytest

from reprotrace import markers

SHA_X = hashlib.sha256(b"x = 1\n").hexdigest()


def test_encode_parse_round_trip():
    path = markers.encode("begin", 3, "abc", "x = 1\n", 1700000000123456789)
    assert path == ("reprotrace-cell:1:begin:3:abc:%s:1700000000123456789" % SHA_X).encode()
    assert markers.parse(path.decode()) == markers.Marker(1, "begin", 3, "abc", SHA_X, 1700000000123456789)


def test_missing_cell_id_is_a_dash_and_parses_to_none():
    path = markers.encode("end", 0, None, "x = 1\n", 1).decode()
    assert ":0:-:" in path
    assert markers.parse(path).cell_id is None
    assert markers.sanitize_cell_id("") == "-"


def test_cell_id_is_restricted_and_truncated():
    assert markers.sanitize_cell_id("a:b/c d\u00e9-_Z9") == "a_b_c_d_-_Z9"
    assert markers.sanitize_cell_id("x" * 100) == "x" * 64


def test_code_hash_is_of_the_raw_utf8_source_and_total():
    assert markers.code_sha256("caf\u00e9") == hashlib.sha256("caf\u00e9".encode()).hexdigest()
    markers.code_sha256("\ud800")  # a lone surrogate must not raise


@pytest.mark.parametrize(
    "path",
    [
        "data.csv",
        "reprotrace-cell:2:begin:1:-:%s:1" % SHA_X,  # version 2 is an END with an outcome
        "reprotrace-cell:2:begin:1:-:%s:1:{}" % SHA_X,
        "reprotrace-cell:2:end:1:-:%s:1" % SHA_X,
        "reprotrace-cell:3:end:1:-:%s:1:{}" % SHA_X,  # unknown version
        "reprotrace-cell:2:end:1:-:%s:1:not json" % SHA_X,
        "reprotrace-cell:2:end:1:-:%s:1:[]" % SHA_X,
        'reprotrace-cell:2:end:1:-:%s:1:{"error":"boom"}' % SHA_X,
        'reprotrace-cell:2:end:1:-:%s:1:{"error":{"ename":"E"}}' % SHA_X,
        'reprotrace-cell:2:end:1:-:%s:1:{"names":{"uses":[1]}}' % SHA_X,
        'reprotrace-cell:2:end:1:-:%s:1:{"names":{"truncated":1}}' % SHA_X,
        'reprotrace-cell:2:end:1:-:%s:1:{"names":[]}' % SHA_X,
        "reprotrace-cell:1:middle:1:-:%s:1" % SHA_X,
        "reprotrace-cell:1:begin:-1:-:%s:1" % SHA_X,
        "reprotrace-cell:1:begin:1:a:b:%s:1" % SHA_X,
        "reprotrace-cell:1:begin:1:-:%s:1" % SHA_X.upper(),
        "reprotrace-cell:1:begin:1:%s:%s:1" % ("x" * 65, SHA_X),
        "reprotrace-cell:1:begin:1:-:%s:1:extra" % SHA_X,
    ],
)
def test_parse_refuses_what_is_not_a_marker(path):
    with pytest.raises(ValueError):
        markers.parse(path)


def test_encode_refuses_bad_fields():
    with pytest.raises(ValueError):
        markers.encode("start", 1, None, "", 1)
    with pytest.raises(ValueError):
        markers.encode("begin", -1, None, "", 1)
    with pytest.raises(ValueError):
        markers.encode("begin", 1, None, "", 1, markers.Outcome())


def test_emit_fails_with_ebadf_and_returns_the_path():
    path = markers.emit("begin", 7, "cell", "x = 1\n")
    assert ctypes.get_errno() == errno.EBADF
    marker = markers.parse(path.decode())
    assert (marker.phase, marker.execution_count, marker.cell_id, marker.code_sha256) == ("begin", 7, "cell", SHA_X)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_strace_sees_one_openat_with_the_magic_dirfd(tmp_path):
    log = tmp_path / "strace.log"
    code = "from reprotrace import markers; markers.emit('begin', 3, 'abc', 'x = 1\\n')"
    subprocess.run(
        ["strace", "-f", "-X", "raw", "-e", "trace=openat", "-o", str(log), sys.executable, "-c", code],
        check=True,
        env={"PYTHONPATH": ":".join(sys.path)},
    )
    lines = [line for line in log.read_text().splitlines() if "reprotrace-cell" in line]
    assert len(lines) == 1
    prefix = 'openat(-29300, "reprotrace-cell:1:begin:3:abc:%s:' % SHA_X
    assert prefix in lines[0]
    assert lines[0].endswith('", 0) = -1 EBADF (Bad file descriptor)')


def end(outcome, count=3, cell_id="abc", code="x = 1\n", time_ns=1700000000123456789):
    return markers.encode("end", count, cell_id, code, time_ns, outcome)


def test_end_version_2_exact_format():
    outcome = markers.Outcome(
        markers.CellError("ValueError", "bad: \u00e9\n\"q\""),
        markers.CellNames(["df", "x"], ["tmp"], ["pd"]),
    )
    path = end(outcome)
    assert path == (
        "reprotrace-cell:2:end:3:abc:%s:1700000000123456789:"
        '{"error":{"ename":"ValueError","evalue":"bad: \\u00e9\\n\\"q\\""},'
        '"names":{"defines":["df","x"],"deletes":["tmp"],"uses":["pd"],"truncated":false}}' % SHA_X
    ).encode()
    assert markers.parse(path.decode()) == markers.Marker(
        2,
        "end",
        3,
        "abc",
        SHA_X,
        1700000000123456789,
        markers.CellError("ValueError", "bad: \u00e9\n\"q\""),
        markers.CellNames(["df", "x"], ["tmp"], ["pd"], False),
    )


def test_end_without_error_or_names():
    path = end(markers.Outcome(), cell_id=None)
    assert path.endswith(b':-:' + SHA_X.encode() + b':1700000000123456789:{"error":null,"names":null}')
    marker = markers.parse(path.decode())
    assert (marker.version, marker.error, marker.names) == (2, None, None)


def test_version_1_ends_still_parse_without_outcome():
    marker = markers.parse("reprotrace-cell:1:end:4:-:%s:9" % SHA_X)
    assert (marker.version, marker.phase, marker.error, marker.names) == (1, "end", None, None)


def test_parse_reads_the_outcome_as_the_tracer_does():
    # Missing keys are null or empty, unknown ones ignored; spaces are fine.
    marker = markers.parse('reprotrace-cell:2:end:1:-:%s:1:{"names": {"uses": ["a:b"]}, "new": 1}' % SHA_X)
    assert marker.error is None
    assert marker.names == markers.CellNames([], [], ["a:b"], False)


def test_the_outcome_is_ascii_without_nul():
    outcome = markers.Outcome(markers.CellError("Erreur\u00e9", "\0\x01\u2603\U0001f600"), markers.CellNames(["\u00e9t\u00e9"], [], []))
    path = end(outcome)
    assert path.isascii() and b"\0" not in path
    marker = markers.parse(path.decode())
    assert marker.error == outcome.error and marker.names.defines == ["\u00e9t\u00e9"]


def test_the_outcome_has_no_lone_surrogate():
    # serde_json (the tracer's parser) rejects "\ud800"; a file name that is
    # not UTF-8 comes with one (surrogateescape).
    evalue = "cannot read " + os.fsdecode(b"caf\xff.csv") + " \ud800"
    path = end(markers.Outcome(markers.CellError("OSError", evalue), markers.CellNames(["x\udcff"], [], [])))
    marker = markers.parse(path.decode())
    assert marker.error.evalue == "cannot read caf\\xff.csv \ufffd"
    assert marker.names.defines == ["x\\xff"]
    assert re.search("[\ud800-\udfff]", json.dumps(marker._asdict(), ensure_ascii=False)) is None


def test_error_of_an_exception():
    assert markers.CellError.of(KeyError("price")) == markers.CellError("KeyError", "'price'")

    class Broken(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert markers.CellError.of(Broken()) == markers.CellError("Broken", "<unprintable Broken object>")


def test_evalue_is_cut_to_500_characters():
    marker = markers.parse(end(markers.Outcome(markers.CellError("E", "v" * 2000), None)).decode())
    assert marker.error.evalue == "v" * 500


def test_names_are_dropped_from_the_end_uses_first():
    defines = ["d%04d" % i for i in range(200)]
    deletes = ["x%04d" % i for i in range(200)]
    uses = ["u%04d" % i for i in range(400)]
    path = end(markers.Outcome(markers.CellError("E", "v" * 2000), markers.CellNames(defines, deletes, uses)))
    assert len(path) < markers.MAX_MARKER_BYTES
    names = markers.parse(path.decode()).names
    assert names.truncated
    assert names.defines == defines and names.deletes == deletes
    assert names.uses == uses[: len(names.uses)] and 0 < len(names.uses) < len(uses)
    # The marker is as full as whole names make it.
    assert len(path) + len(json.dumps(uses[len(names.uses)])) + 1 >= markers.MAX_MARKER_BYTES - 1

    path = end(markers.Outcome(None, markers.CellNames(defines * 3, deletes, uses)))
    names = markers.parse(path.decode()).names
    assert (names.truncated, names.uses, names.deletes) == (True, [], [])
    assert names.defines == (defines * 3)[: len(names.defines)]


def test_names_that_fit_are_not_truncated():
    names = markers.CellNames(["n%d" % i for i in range(100)], [], [])
    assert markers.parse(end(markers.Outcome(None, names)).decode()).names.truncated is False


def test_every_marker_fits_whatever_it_says():
    rng = random.Random(1234)
    alphabet = ["a", "\u00e9", "\U0001f600", '"', "\\", "\n", ":"]
    for _ in range(300):
        def word(n):
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(n)))

        error = markers.CellError(word(300), word(3000)) if rng.random() < 0.7 else None
        names = None
        if rng.random() < 0.8:
            names = markers.CellNames(*([word(40) or "n" for _ in range(rng.randrange(400))] for _ in range(3)))
        path = end(markers.Outcome(error, names), count=rng.randrange(10**9), cell_id=word(80))
        assert len(path) < markers.MAX_MARKER_BYTES
        marker = markers.parse(path.decode())
        if names is not None:
            for got, given in zip(marker.names[:3], names[:3]):
                assert got == given[: len(got)]
        if error is not None:
            assert error.evalue.startswith(marker.error.evalue)
            assert error.ename.startswith(marker.error.ename)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_strace_shows_an_end_marker_that_decodes(tmp_path):
    log = tmp_path / "strace.log"
    code = (
        "from reprotrace import markers; markers.emit('end', 3, 'abc', 'x = 1\\n', "
        "markers.Outcome(markers.CellError('E', 'a \"b\" \\\\ \\u00e9'), markers.CellNames(['x'], [], ['y'])))"
    )
    subprocess.run(
        ["strace", "-f", "-X", "raw", "-e", "trace=openat", "-o", str(log), sys.executable, "-c", code],
        check=True,
        env={"PYTHONPATH": ":".join(sys.path)},
    )
    lines = [line for line in log.read_text().splitlines() if "reprotrace-cell" in line]
    assert len(lines) == 1
    quoted = lines[0].split('openat(-29300, "', 1)[1].rsplit('", 0) = -1 EBADF', 1)[0]
    marker = markers.parse(codecs.escape_decode(quoted.encode())[0].decode())
    assert marker.error == markers.CellError("E", 'a "b" \\ \u00e9')
    assert marker.names == markers.CellNames(["x"], [], ["y"])
