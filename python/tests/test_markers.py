"""The marker encoding and the syscall that carries it."""
import ctypes
import errno
import hashlib
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
        "reprotrace-cell:2:begin:1:-:%s:1" % SHA_X,  # unknown version
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
