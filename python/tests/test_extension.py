"""The IPython extension, in an in-process InteractiveShell."""
import hashlib
import json
import os
import sys
import threading
import time
from types import SimpleNamespace

import pytest

IPython = pytest.importorskip("IPython")
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

import reprotrace  # noqa: E402
from reprotrace import markers  # noqa: E402


def sha(code):
    return hashlib.sha256(code.encode()).hexdigest()


@pytest.fixture
def shell():
    shell = InteractiveShell.instance()
    yield shell
    reprotrace.unload_ipython_extension(shell)
    shell.extension_manager.loaded.discard("reprotrace")


@pytest.fixture
def emitted(monkeypatch):
    """The markers the extension emits, decoded, from the syscall's argument."""
    seen = []

    def openat(dirfd, path, flags):
        assert dirfd == markers.MARKER_DIRFD
        seen.append(markers.parse(path.decode()))
        return -1

    monkeypatch.setattr(markers, "_openat", openat)
    return seen


def boundaries(emitted):
    return [(m.phase, m.execution_count, m.cell_id, m.code_sha256) for m in emitted]


def test_each_cell_gets_begin_and_end_with_its_count_and_id(shell, emitted):
    shell.run_cell("%load_ext reprotrace", store_history=True)  # gets no markers: loaded mid-cell
    assert emitted == []
    count = shell.execution_count
    result = shell.run_cell("x = 1", store_history=True, cell_id="c-1")
    assert result.execution_count == count
    assert boundaries(emitted) == [("begin", count, "c-1", sha("x = 1")), ("end", count, "c-1", sha("x = 1"))]
    assert emitted[0].time_ns <= emitted[1].time_ns


def test_a_raising_cell_gets_its_end(shell, emitted):
    reprotrace.load_ipython_extension(shell)
    count = shell.execution_count
    result = shell.run_cell("raise ValueError('boom')", store_history=True)
    assert not result.success
    assert [(m.phase, m.execution_count, m.cell_id) for m in emitted] == [("begin", count, None), ("end", count, None)]


def test_a_cell_without_history_gets_the_count_ipython_gives_it(shell, emitted):
    reprotrace.load_ipython_extension(shell)
    count = shell.execution_count
    result = shell.run_cell("y = 2", store_history=False)
    assert shell.execution_count == count  # not incremented
    if IPython.version_info >= (9, 8):  # older ones leave it None
        assert result.execution_count == count
    assert [(m.phase, m.execution_count) for m in emitted] == [("begin", count), ("end", count)]


def test_silent_and_empty_cells_get_no_markers(shell, emitted):
    reprotrace.load_ipython_extension(shell)
    shell.run_cell("z = 3", silent=True)
    shell.run_cell("   \n", store_history=True)  # post_run_cell fires, pre_run_cell does not
    assert emitted == []


def test_a_nested_cell_is_bracketed_inside_its_parent(shell, emitted):
    reprotrace.load_ipython_extension(shell)
    count = shell.execution_count
    # The inner cell (not stored in history) finds the counter incremented by
    # the outer one only where IPython increments it before running a cell.
    inner = count + 1 if IPython.version_info >= (9, 8) else count
    shell.run_cell("get_ipython().run_cell('w = 4')", store_history=True)
    assert [(m.phase, m.execution_count, m.code_sha256) for m in emitted] == [
        ("begin", count, sha("get_ipython().run_cell('w = 4')")),
        ("begin", inner, sha("w = 4")),
        ("end", inner, sha("w = 4")),
        ("end", count, sha("get_ipython().run_cell('w = 4')")),
    ]


def test_loading_twice_registers_once_and_unloading_unregisters(shell, emitted):
    callbacks = shell.events.callbacks
    before = (len(callbacks["pre_run_cell"]), len(callbacks["post_run_cell"]))
    reprotrace.load_ipython_extension(shell)
    reprotrace.load_ipython_extension(shell)
    shell.run_cell("%load_ext reprotrace")  # "already loaded" for the extension manager too
    assert (len(callbacks["pre_run_cell"]), len(callbacks["post_run_cell"])) == (before[0] + 1, before[1] + 1)
    emitted.clear()
    shell.run_cell("v = 5", store_history=True)
    assert [m.phase for m in emitted] == ["begin", "end"]
    reprotrace.unload_ipython_extension(shell)
    assert (len(callbacks["pre_run_cell"]), len(callbacks["post_run_cell"])) == before
    shell.run_cell("v = 6", store_history=True)
    assert len(emitted) == 2


def test_reloading_ends_the_running_cell_and_keeps_one_registration(shell, emitted):
    callbacks = shell.events.callbacks
    before = len(callbacks["pre_run_cell"])
    shell.run_cell("%load_ext reprotrace", store_history=True)
    count = shell.execution_count
    shell.run_cell("%reload_ext reprotrace", store_history=True)
    shell.run_cell("u = 7", store_history=True)
    assert len(callbacks["pre_run_cell"]) == before + 1
    assert [(m.phase, m.execution_count) for m in emitted] == [
        ("begin", count),
        ("end", count),  # from the unloading
        ("begin", count + 1),
        ("end", count + 1),
    ]


def test_a_cell_with_no_result_ends_the_innermost_open_cell(shell, emitted):
    # ipykernel passes post_run_cell None when it cancels a cell's task.
    reprotrace.load_ipython_extension(shell)
    hooks = getattr(shell, reprotrace._SHELL_ATTR)
    outer = SimpleNamespace(raw_cell="outer", store_history=False, silent=False, cell_id="o")
    inner = SimpleNamespace(raw_cell="inner", store_history=False, silent=False, cell_id="i")
    hooks.pre_run_cell(outer)
    hooks.pre_run_cell(inner)
    hooks.post_run_cell(None)
    hooks.post_run_cell(SimpleNamespace(info=outer))
    hooks.post_run_cell(None)  # nothing open: nothing to end
    assert [(m.phase, m.cell_id) for m in emitted] == [("begin", "o"), ("begin", "i"), ("end", "i"), ("end", "o")]


# The END marker's outcome.


def outcome(marker):
    return (marker.version, marker.error, marker.names)


def test_the_end_says_the_names_and_no_error(shell, emitted):
    reprotrace.load_ipython_extension(shell)
    shell.run_cell("import os\ny = x + 1\ndel z", store_history=True)
    begin, end = emitted
    assert outcome(begin) == (1, None, None)
    assert outcome(end) == (2, None, markers.CellNames(["os", "y"], ["z"], ["x"], False))


def test_the_end_says_what_the_cell_raised(shell, emitted):
    reprotrace.load_ipython_extension(shell)
    shell.run_cell("v = 1\nraise ValueError('boom: ' + str(v))", store_history=True)
    assert outcome(emitted[1]) == (2, markers.CellError("ValueError", "boom: 1"), markers.CellNames(["v"], [], []))


def test_a_syntax_error_has_an_error_and_no_names(shell, emitted):
    reprotrace.load_ipython_extension(shell)
    shell.run_cell("x = (1,\n", store_history=True)
    marker = emitted[1]
    assert (marker.phase, marker.error.ename, marker.names) == ("end", "SyntaxError", None)


def test_ipython_syntax_is_read_after_transforming_it(shell, emitted):
    reprotrace.load_ipython_extension(shell)
    shell.run_cell("%%time\nfiles = !echo {path}\nn = len(files) + offset", store_history=True)
    assert emitted[1].names == markers.CellNames(["files", "n"], [], ["offset"], False)


def test_a_cancelled_cell_gets_the_exception_in_flight(shell, emitted):
    # ipykernel passes post_run_cell None from a `finally` when it cancels the
    # cell's task: the CancelledError (or KeyboardInterrupt) is in flight.
    reprotrace.load_ipython_extension(shell)
    hooks = getattr(shell, reprotrace._SHELL_ATTR)
    hooks.pre_run_cell(SimpleNamespace(raw_cell="a = 1", store_history=False, silent=False, cell_id=None))
    try:
        try:
            raise KeyboardInterrupt()
        finally:
            hooks.post_run_cell(None)
    except KeyboardInterrupt:
        pass
    assert outcome(emitted[1]) == (2, markers.CellError("KeyboardInterrupt", ""), markers.CellNames(["a"], [], []))


def test_a_failing_transformer_means_no_names(shell, emitted, monkeypatch):
    reprotrace.load_ipython_extension(shell)
    hooks = getattr(shell, reprotrace._SHELL_ATTR)

    def broken(cell):
        raise RuntimeError("transformer bug")

    monkeypatch.setattr(hooks.shell, "transform_cell", broken, raising=False)
    hooks.pre_run_cell(SimpleNamespace(raw_cell="a = 1", store_history=False, silent=False, cell_id=None))
    hooks.post_run_cell(None)
    assert outcome(emitted[1]) == (2, None, None)


# Traceback machinery, loaded with the extension.


def test_loading_formats_a_traceback_and_leaves_no_trace(shell):
    import linecache

    itb = shell.InteractiveTB
    itb.tb = marker_tb = object()
    reprotrace.load_ipython_extension(shell)
    getattr(shell, reprotrace._SHELL_ATTR).wait_for_warm_up()
    assert itb.tb is marker_tb
    assert reprotrace._WARM_UP_FILE not in linecache.cache
    assert "stack_data" in sys.modules
    del itb.tb


def test_the_first_cell_begins_once_the_machinery_is_loaded(shell, emitted, monkeypatch):
    """The warm-up runs in a thread: the load does not wait for it, the first
    cell does, before its BEGIN."""
    release = threading.Event()
    events = []

    def slow_warm_up(_shell):
        release.wait(10)
        events.append(("warmed up", len(emitted)))

    monkeypatch.setattr(reprotrace, "_warm_up_tracebacks", slow_warm_up)
    reprotrace.load_ipython_extension(shell)
    assert events == []
    threading.Timer(0.2, release.set).start()
    shell.run_cell("w = 1", store_history=True)
    assert events == [("warmed up", 0)]
    assert [m.phase for m in emitted] == ["begin", "end"]


def test_loading_survives_a_broken_traceback_formatter(shell, emitted):
    def broken(*args, **kwargs):
        raise RuntimeError("formatter bug")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shell.InteractiveTB, "structured_traceback", broken)
        patch.setattr(shell, "SyntaxTB", None)
        reprotrace.load_ipython_extension(shell)
        getattr(shell, reprotrace._SHELL_ATTR).wait_for_warm_up()
    shell.run_cell("w = 1", store_history=True)
    assert [m.phase for m in emitted] == ["begin", "end"]


# The status line, the audit and the magic.


def test_loading_says_no_audit_is_listening(shell, capsys):
    shell.run_cell("%load_ext reprotrace")
    assert capsys.readouterr().out == (
        "reprotrace: cell markers on; no audit is listening "
        "(start one: reprotrace attach --kernel <connection file> --inject-hooks); "
        "Dask clients do not take part: no audit listens to bring their workers' audits back to\n"
    )


def test_loading_says_an_audit_is_listening(shell, capsys, fake_audit, short_tmp):
    (short_tmp / "run").mkdir()
    audit = fake_audit(name="run/%d.sock" % os.getpid())
    shell.run_cell("%load_ext reprotrace")
    # This audit refuses the kernel's Dask clients, and says why.
    assert capsys.readouterr().out == (
        "reprotrace: cell markers on; an audit is listening (ebpf, writing /audit/manifest.json); "
        "Dask clients do not take part: unknown op 'dask'\n"
    )
    assert audit.ops() == ["hello", "dask"]


def test_loading_under_an_audit_that_takes_dask_sets_dasks_preload(shell, capsys, fake_audit, short_tmp, monkeypatch):
    """Before Dask is imported, Dask's own environment variables name
    reprotrace's client preload: nothing of Dask's is imported for it."""
    (short_tmp / "run").mkdir()
    preload = short_tmp / "reprotrace_dask_client.py"
    preload.write_text("")
    offer = {"ok": True, "reports": str(short_tmp / "reports"), "preload": str(preload)}

    def answer(request):
        if request.get("op") == "dask":
            return offer
        return audit.default_answer(request)

    audit = fake_audit(name="run/%d.sock" % os.getpid(), answer=answer)
    for variable in (reprotrace._DASK_PRELOAD, reprotrace._DASK_PRELOAD_ARGV):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delitem(sys.modules, "dask", raising=False)
    monkeypatch.delitem(sys.modules, "distributed", raising=False)
    shell.run_cell("%load_ext reprotrace")
    assert capsys.readouterr().out.endswith("; Dask clients take part\n")
    assert json.loads(os.environ[reprotrace._DASK_PRELOAD]) == [str(preload)]
    assert json.loads(os.environ[reprotrace._DASK_PRELOAD_ARGV]) == ["--reports", offer["reports"]]
    assert "dask" not in sys.modules
    # The audit ends: what was set is undone.
    reprotrace.collect_dask()
    assert reprotrace._DASK_PRELOAD not in os.environ and reprotrace._DASK_PRELOAD_ARGV not in os.environ


def test_a_quiet_load_says_nothing_once(shell, capsys):
    reprotrace._quiet_load = True
    shell.run_cell("%load_ext reprotrace")
    assert capsys.readouterr().out == ""
    assert reprotrace._quiet_load is False
    shell.run_cell("%reload_ext reprotrace")
    assert "cell markers on" in capsys.readouterr().out


def test_the_injected_code_loads_quietly_and_connects(shell, capsys, fake_audit, emitted):
    audit = fake_audit()
    code = INJECTED.format(socket=json.dumps(audit.path))
    shell.run_cell(code, silent=True)
    shell.run_cell(code, silent=True)  # again: nothing changes
    assert capsys.readouterr().out == ""
    assert "_reprotrace" not in shell.user_ns
    assert reprotrace.channel.current().path == audit.path
    assert audit.requests == []  # connect_audit asks nothing
    shell.run_cell("x = 1", store_history=True)
    shell.run_cell("y = x", store_history=True)
    ends = [m.time_ns for m in emitted if m.phase == "end"]
    assert [request for _, request in audit.requests] == [{"op": "cell_end", "time_ns": t} for t in ends]


# What reprotrace sends (see README.md, "Loading it").
INJECTED = """\
import reprotrace as _reprotrace
if 'reprotrace' not in get_ipython().extension_manager.loaded:
    _reprotrace._quiet_load = True
    get_ipython().run_line_magic('load_ext', 'reprotrace')
if hasattr(_reprotrace, 'connect_audit'):
    _reprotrace.connect_audit({socket})
del _reprotrace
"""


def test_connect_audit_clears_a_quiet_flag_no_load_consumed(shell, capsys, fake_audit):
    reprotrace.load_ipython_extension(shell)
    capsys.readouterr()
    reprotrace._quiet_load = True  # what an injector sets before it sees the extension is loaded
    reprotrace.connect_audit(fake_audit().path)
    assert reprotrace._quiet_load is False


def test_each_cell_waits_for_the_audit(shell, fake_audit, emitted):
    audit = fake_audit(delay=0.2)
    reprotrace.load_ipython_extension(shell)
    reprotrace.connect_audit(audit.path)
    started = time.monotonic()
    shell.run_cell("a = 1", store_history=True)
    assert time.monotonic() - started >= 0.2
    assert audit.requests[0][1] == {"op": "cell_end", "time_ns": emitted[1].time_ns}


def test_a_slow_audit_does_not_hold_the_kernel(shell, fake_audit, emitted, monkeypatch, capsys):
    monkeypatch.setattr(reprotrace.channel, "CELL_END_TIMEOUT", 0.2)
    audit = fake_audit(delay=5)
    reprotrace.load_ipython_extension(shell)
    reprotrace.connect_audit(audit.path)
    started = time.monotonic()
    result = shell.run_cell("a = 1", store_history=True)
    shell.run_cell("b = 2", store_history=True)
    assert result.success and time.monotonic() - started < 2
    assert len(audit.requests) == 1
    assert capsys.readouterr().err.count("reprotrace:") == 1
    assert [m.phase for m in emitted] == ["begin", "end", "begin", "end"]


def test_the_magic_without_an_audit(shell, capsys):
    reprotrace.load_ipython_extension(shell)
    capsys.readouterr()
    shell.run_cell("%reprotrace")
    assert capsys.readouterr().out == (
        "reprotrace: no audit is listening (start one: reprotrace attach --kernel <connection file> --inject-hooks)\n"
    )


def test_the_magic_shows_deps_and_stale_cells(shell, capsys, fake_audit):
    from conftest import CELLS_REPLY

    reprotrace.load_ipython_extension(shell)
    reprotrace.connect_audit(fake_audit().path)
    capsys.readouterr()
    shell.run_cell("%reprotrace")
    assert capsys.readouterr().out == reprotrace.channel.format_deps(CELLS_REPLY) + "\n"
    shell.run_cell("%reprotrace deps")
    assert capsys.readouterr().out.startswith("reprotrace: 3 cells audited\n[1]\n    read:    /data/in.csv\n")
    shell.run_cell("%reprotrace stale")
    assert capsys.readouterr().out == "stale: 1 cell\n  [1] /data/in.csv changed after it ran\n      x\n"
    shell.run_cell("%reprotrace everything")
    assert capsys.readouterr().out == "usage: %reprotrace [deps|stale]\n"


def test_the_magic_says_when_the_audit_does_not_answer(shell, capsys, fake_audit, monkeypatch):
    monkeypatch.setattr(reprotrace.channel, "REQUEST_TIMEOUT", 0.2)
    reprotrace.load_ipython_extension(shell)
    reprotrace.connect_audit(fake_audit(answer=lambda request: {"ok": False, "error": "busy"}).path)
    capsys.readouterr()
    shell.run_cell("%reprotrace stale")
    assert capsys.readouterr().out == "reprotrace: busy\n"


def test_unloading_removes_the_magic(shell):
    reprotrace.load_ipython_extension(shell)
    assert "reprotrace" in shell.magics_manager.magics["line"]
    reprotrace.unload_ipython_extension(shell)
    assert "reprotrace" not in shell.magics_manager.magics["line"]
