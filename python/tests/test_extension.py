"""The IPython extension, in an in-process InteractiveShell."""
import hashlib
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
