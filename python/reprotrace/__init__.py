"""reprotrace's IPython extension: cell markers for per-cell manifests.

``%load_ext reprotrace`` makes every cell that IPython runs emit a BEGIN marker
before it runs and an END marker after it ran (raised or not): one failing
``openat`` each, which reprotrace's tracers turn into cell boundaries (see
:mod:`reprotrace.markers`). Kernels that reprotrace launches load it by
themselves (see ``sitecustomize.py`` beside this package); a kernel that was
already running loads it through ``python -m reprotrace.inject``.
"""
from . import markers

__version__ = "0.1.0"

# The registered hooks live on the shell, not in this module, so that loading
# twice (or from a reloaded module) never registers a second pair.
_SHELL_ATTR = "_reprotrace_cell_markers"


class _CellMarkers:
    """The pre_run_cell / post_run_cell callbacks of one shell."""

    def __init__(self, shell):
        self.shell = shell
        # Cells whose BEGIN was emitted and whose END was not, innermost last
        # (a cell may run another one: get_ipython().run_cell(...)), as
        # (ExecutionInfo, execution_count, cell_id).
        self._open = []

    def pre_run_cell(self, info):
        # IPython already skips silent executions; ipykernel's async path and
        # other shells are not bound to, and silent cells never get markers.
        if info.silent:
            return
        # IPython increments execution_count before pre_run_cell when (and
        # only when) the cell is stored in history: the count the cell gets
        # (ExecutionResult.execution_count) is the value from before that.
        count = self.shell.execution_count
        if info.store_history:
            count -= 1
        cell_id = getattr(info, "cell_id", None)  # IPython >= 8 (cell_id from the frontend)
        markers.emit("begin", count, cell_id, info.raw_cell)
        self._open.append((info, count, cell_id))

    def post_run_cell(self, result):
        # post_run_cell also fires for cells that got no BEGIN: empty cells
        # (IPython returns before pre_run_cell) and the cell that loaded this
        # extension. Those get no END either.
        info = getattr(result, "info", None)
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] is info:
                break
        else:
            # No result (the cell was cancelled, or IPython failed inside
            # run_cell): that can only be the innermost cell.
            if result is not None or not self._open:
                return
            i = len(self._open) - 1
        open_info, count, cell_id = self._open.pop(i)
        markers.emit("end", count, cell_id, open_info.raw_cell)


def load_ipython_extension(ipython):
    """Register the cell-marker callbacks (once per shell)."""
    if getattr(ipython, _SHELL_ATTR, None) is not None:
        return
    hooks = _CellMarkers(ipython)
    ipython.events.register("pre_run_cell", hooks.pre_run_cell)
    ipython.events.register("post_run_cell", hooks.post_run_cell)
    setattr(ipython, _SHELL_ATTR, hooks)


def unload_ipython_extension(ipython):
    """Unregister the cell-marker callbacks, if registered."""
    hooks = getattr(ipython, _SHELL_ATTR, None)
    if hooks is None:
        return
    ipython.events.unregister("pre_run_cell", hooks.pre_run_cell)
    ipython.events.unregister("post_run_cell", hooks.post_run_cell)
    delattr(ipython, _SHELL_ATTR)
