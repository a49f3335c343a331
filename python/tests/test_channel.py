"""The channel to the audit, against a fake audit serving a Unix socket."""
import os
import socket
import time

import pytest

from conftest import CELLS_REPLY
from reprotrace import channel


def test_a_request_is_one_json_line_and_its_answer(fake_audit):
    audit = fake_audit()
    seen = []

    def answer(request):
        seen.append(request)
        return {"ok": True, "audit": {"backend": "strace", "output": "/m.json"}, "extra": [1]}

    audit.answer = answer
    assert channel.Channel(audit.path).hello() == {"backend": "strace", "output": "/m.json"}
    assert seen == [{"op": "hello"}]


def test_the_exact_bytes_on_the_wire(short_tmp):
    path = str(short_tmp / "raw.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    import threading

    got = []

    def serve():
        conn, _ = listener.accept()
        data = b""
        while not data.endswith(b"\n"):
            data += conn.recv(100)
        got.append(data)
        conn.sendall(b'{"ok": true}\n')
        got.append(conn.recv(100))  # the client closes: EOF
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    channel.Channel(path).cell_end(1700000000123456789)
    thread.join(5)
    listener.close()
    assert got == [b'{"op":"cell_end","time_ns":1700000000123456789}\n', b""]


def test_cell_end_and_cells(fake_audit):
    audit = fake_audit()
    chan = channel.Channel(audit.path)
    chan.cell_end(42)
    assert chan.cells() == CELLS_REPLY
    assert [request for _, request in audit.requests] == [{"op": "cell_end", "time_ns": 42}, {"op": "cells"}]


def test_a_refusal_is_an_audit_refused_error(fake_audit):
    audit = fake_audit(answer=lambda request: {"ok": False, "error": "no such cell"})
    with pytest.raises(channel.AuditRefused, match="no such cell"):
        channel.Channel(audit.path).cell_end(1)


@pytest.mark.parametrize(
    "reply, message",
    [
        (b"not json\n", "not a JSON line"),
        (b"[1, 2]\n", "not a JSON object"),
        (None, "closed the connection"),
        (b'{"ok": true}', "closed the connection"),  # no newline before EOF
    ],
)
def test_broken_answers(fake_audit, reply, message):
    audit = fake_audit(answer=lambda request: reply)
    with pytest.raises(channel.ChannelError, match=message):
        channel.Channel(audit.path).cell_end(1)


def test_a_slow_audit_times_out(fake_audit):
    audit = fake_audit(delay=2)
    started = time.monotonic()
    with pytest.raises(channel.ChannelError, match="did not answer within 0.2 s"):
        channel.Channel(audit.path).cell_end(1, timeout=0.2)
    assert time.monotonic() - started < 1.5


def test_no_listener(short_tmp, fake_audit):
    with pytest.raises(channel.ChannelError, match="cannot reach"):
        channel.Channel(str(short_tmp / "nothing.sock")).hello()
    dead = fake_audit()
    dead.stop(remove=False)  # the socket file stays, nobody listens
    with pytest.raises(channel.ChannelError, match="cannot reach"):
        channel.Channel(dead.path).hello()


def test_connect_is_idempotent_and_makes_no_request(fake_audit):
    audit = fake_audit()
    first = channel.connect(audit.path)
    assert channel.connect(audit.path) is first
    assert channel.current() is first
    assert audit.requests == []
    assert channel.audit_info() is None
    other = channel.connect(audit.path + ".other")
    assert other is not first and channel.current() is other


def test_socket_paths(monkeypatch):
    monkeypatch.setattr(channel, "RUN_DIR", "/run/reprotrace/kernels")
    monkeypatch.setattr(channel, "TEMP_DIR", None)
    monkeypatch.delenv("TMPDIR", raising=False)
    uid = os.getuid()
    assert channel.socket_paths(123) == [
        "/run/reprotrace/kernels/123.sock",
        "/tmp/reprotrace-%d/kernels/123.sock" % uid,
    ]
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    assert channel.socket_paths(123) == [
        "/run/reprotrace/kernels/123.sock",
        "/run/user/1000/reprotrace/kernels/123.sock",
        "/var/tmp/reprotrace-%d/kernels/123.sock" % uid,
    ]
    assert channel.socket_paths()[0].endswith("/%d.sock" % os.getpid())


def test_discover_finds_the_run_dir_socket_first(short_tmp, monkeypatch, fake_audit):
    (short_tmp / "run").mkdir()
    runtime = short_tmp / "xdg" / "reprotrace" / "kernels"
    runtime.mkdir(parents=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_tmp / "xdg"))
    assert channel.discover() is None
    second = fake_audit(name="xdg/reprotrace/kernels/%d.sock" % os.getpid())
    assert channel.discover().path == second.path
    assert channel.audit_info() == {"backend": "ebpf", "output": "/audit/manifest.json"}
    channel.disconnect()
    first = fake_audit(name="run/%d.sock" % os.getpid())
    assert channel.discover().path == first.path
    assert channel.discover().path == first.path  # kept: no second hello
    assert first.ops() == ["hello"]


def test_discover_skips_a_socket_that_did_not_answer_until_it_is_made_anew(short_tmp, fake_audit):
    (short_tmp / "run").mkdir()
    path = "run/%d.sock" % os.getpid()
    dead = fake_audit(name=path)
    dead.stop(remove=False)
    assert channel.discover() is None
    assert channel.discover() is None  # not tried again (nobody would see it anyway)
    os.unlink(dead.path)
    alive = fake_audit(name=path)
    assert channel.discover().path == alive.path


def test_discover_ignores_what_is_not_a_socket(short_tmp):
    (short_tmp / "run").mkdir()
    (short_tmp / "run" / ("%d.sock" % os.getpid())).write_text("")
    assert channel.discover() is None


def test_sync_waits_for_the_audit(fake_audit):
    audit = fake_audit(delay=0.3)
    channel.connect(audit.path)
    started = time.monotonic()
    assert channel.sync_cell_end(7) is True
    assert time.monotonic() - started >= 0.3
    assert [request for _, request in audit.requests] == [{"op": "cell_end", "time_ns": 7}]


def test_sync_without_an_audit_is_a_no_op(capsys):
    assert channel.sync_cell_end(7) is False
    assert capsys.readouterr() == ("", "")


def test_a_slow_audit_is_kept_then_given_up_with_one_line_each(fake_audit, capsys, monkeypatch):
    monkeypatch.setattr(channel, "CELL_END_TIMEOUT", 0.2)
    audit = fake_audit(delay=3)
    channel.connect(audit.path)
    started = time.monotonic()
    assert channel.sync_cell_end(1) is False
    assert time.monotonic() - started < 1.5
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "did not answer within 0.2 s" in err and "busy hashing?" in err
    assert channel.current() is not None  # busy, not gone: the next cell waits again
    assert channel.sync_cell_end(2) is False
    assert capsys.readouterr().err == ""  # said once
    assert channel.sync_cell_end(3) is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 cells in a row" in err and "no longer wait" in err
    assert channel.current() is None
    started = time.monotonic()
    assert channel.sync_cell_end(4) is False  # not rediscovered, not waited for
    assert time.monotonic() - started < 0.5
    assert capsys.readouterr().err == ""


def test_a_slow_audit_that_catches_up_is_waited_for_again(fake_audit, monkeypatch):
    monkeypatch.setattr(channel, "CELL_END_TIMEOUT", 1.0)
    audit = fake_audit()
    channel.connect(audit.path)
    confirmed = []
    for delay in [1.5, 0, 1.5, 1.5, 0]:
        audit.delay = delay
        confirmed.append(channel.sync_cell_end(len(confirmed)))
        time.sleep(delay)  # the fake audit answers one request at a time: let it finish
    assert confirmed == [False, True, False, False, True]
    assert channel.current() is not None


def test_sync_gives_up_a_dead_audit_with_one_line(fake_audit, capsys):
    audit = fake_audit()
    channel.connect(audit.path)
    assert channel.sync_cell_end(1) is True
    audit.stop()
    assert channel.sync_cell_end(2) is False
    assert channel.sync_cell_end(3) is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the audit" in err


def test_sync_keeps_an_audit_that_refuses_and_says_so_once(fake_audit, capsys):
    audit = fake_audit(answer=lambda request: {"ok": False, "error": "unknown marker"})
    channel.connect(audit.path)
    assert channel.sync_cell_end(1) is False
    assert channel.sync_cell_end(2) is False
    assert channel.current() is not None
    assert capsys.readouterr().err == "reprotrace: the audit refused to confirm a cell (unknown marker)\n"
    assert len(audit.requests) == 2


def test_sync_finds_an_audit_that_came_later(short_tmp, fake_audit):
    (short_tmp / "run").mkdir()
    assert channel.sync_cell_end(1) is False
    audit = fake_audit(name="run/%d.sock" % os.getpid())
    assert channel.sync_cell_end(2) is True
    assert audit.ops() == ["hello", "cell_end"]


def test_connect_again_after_giving_up(fake_audit, capsys):
    audit = fake_audit()
    channel.connect(audit.path)
    audit.stop()
    channel.sync_cell_end(1)
    revived = fake_audit()
    channel.connect(revived.path)  # the audit says so: trusted again
    assert channel.sync_cell_end(2) is True


def test_format_deps():
    assert channel.format_deps(CELLS_REPLY) == (
        "reprotrace: 3 cells audited\n"
        "[1]\n"
        "    read:    /data/in.csv\n"
        "    wrote:   /data/out.csv\n"
        "    defines: df, pd\n"
        "[2] (cell c-2) raised KeyError: 'price'\n"
        "    uses:    df\n"
        "[3] (no files, no names)\n"
        "stale: 1 cell\n"
        "  [1] /data/in.csv changed after it ran\n"
        "      x"
    )


def test_format_stale():
    assert channel.format_stale({"ok": True, "cells": [], "stale": []}) == "stale: none"
    assert channel.format_stale({"ok": True}) == "stale: none"
    two = {"stale": [{"execution_count": 4, "cell_id": "a", "reasons": ["uses x, which [5] redefined"]}, {}]}
    assert channel.format_stale(two) == "stale: 2 cells\n  [4] (cell a) uses x, which [5] redefined\n  [?] (no reason given)"
    notes = {"stale": [], "notes": ["[2] wrote /d/x.csv, which [3] read and [4] rewrote"]}
    assert channel.format_stale(notes) == "stale: none\nnote: [2] wrote /d/x.csv, which [3] read and [4] rewrote"


def test_format_deps_tolerates_odd_replies():
    text = channel.format_deps({"ok": True, "cells": [{"error": {"ename": "E", "evalue": "v" * 500}}, 3]})
    assert text.startswith("reprotrace: 2 cells audited\n[?] raised E: vvv")
    assert len(text.splitlines()[1]) < 140  # evalue cut
