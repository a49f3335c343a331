"""reprotrace's IPython extension: cell markers for per-cell manifests.

``%load_ext reprotrace`` makes every cell that IPython runs emit a BEGIN marker
before it runs and an END marker after it ran (raised or not): one failing
``openat`` each, which reprotrace's tracers turn into cell boundaries (see
:mod:`reprotrace.markers`). reprotrace loads it into kernels itself, with one
silent request over the kernel's Jupyter protocol.
"""
from . import markers

__version__ = "0.1.0"

# The registered hooks live on the shell, not in this module, so that loading
# twice (or from a reloaded module) never registers a second pair.
_SHELL_ATTR = "_reprotrace_cell_markers"


class _CellMarkers:
    """The pre_run_cell / post_run_cell callbacks of one shell."""

    def __init__(self, shell):
        from IPython import version_info

        self.shell = shell
        # The count a cell gets is shell.execution_count as run_cell found it.
        # A cell stored in history increments the counter: IPython >= 9.8
        # does so before pre_run_cell, older ones after the cell has run.
        self._counted_before_pre_run_cell = version_info >= (9, 8)
        # Cells whose BEGIN was emitted and whose END was not, innermost last
        # (a cell may run another one: get_ipython().run_cell(...)), as
        # (ExecutionInfo, execution_count, cell_id).
        self._open = []

    def pre_run_cell(self, info):
        # IPython fires no pre_run_cell for silent executions; whoever fires
        # it, they must never get markers.
        if info.silent:
            return
        count = self.shell.execution_count
        if info.store_history and self._counted_before_pre_run_cell:
            count -= 1
        cell_id = getattr(info, "cell_id", None)  # IPython >= 8, if the frontend sent one
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
        self._end(i)

    def end_all(self):
        """END every open cell, innermost first."""
        while self._open:
            self._end(len(self._open) - 1)

    def _end(self, i):
        info, count, cell_id = self._open.pop(i)
        markers.emit("end", count, cell_id, info.raw_cell)


def load_ipython_extension(ipython):
    """Register the cell-marker callbacks (once per shell)."""
    if getattr(ipython, _SHELL_ATTR, None) is not None:
        return
    hooks = _CellMarkers(ipython)
    ipython.events.register("pre_run_cell", hooks.pre_run_cell)
    ipython.events.register("post_run_cell", hooks.post_run_cell)
    setattr(ipython, _SHELL_ATTR, hooks)


def unload_ipython_extension(ipython):
    """Unregister the cell-marker callbacks, if registered.

    The running cell (%unload_ext or %reload_ext) gets its END now: its
    post_run_cell would reach these callbacks no more.
    """
    hooks = getattr(ipython, _SHELL_ATTR, None)
    if hooks is None:
        return
    ipython.events.unregister("pre_run_cell", hooks.pre_run_cell)
    ipython.events.unregister("post_run_cell", hooks.post_run_cell)
    delattr(ipython, _SHELL_ATTR)
    hooks.end_all()
