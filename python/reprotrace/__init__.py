"""reprotrace's IPython extension: cell markers for per-cell manifests.

``%load_ext reprotrace`` makes every cell that IPython runs emit a BEGIN marker
before it runs and an END marker after it ran (raised or not): one failing
``openat`` each, which reprotrace's tracers turn into cell boundaries (see
:mod:`reprotrace.markers`). The END marker also says which exception the cell
raised and which names its source defines, deletes and uses
(:mod:`reprotrace.names`).

When an audit listens for this kernel (:mod:`reprotrace.channel`), the hook
waits after each END marker until the audit has processed it, and the
``%reprotrace`` magic shows what the audit knows of the cells run so far.
A user's ``%load_ext reprotrace`` also asks that audit whether the kernel's
Dask clients may take part (as under ``reprotrace run --dask``): if it says
yes, every ``distributed.Client`` the kernel has or makes registers
reprotrace's plugins and brings its workers' audits back to it.

reprotrace loads the extension into kernels itself, with one silent request
over the kernel's Jupyter protocol; it sets :data:`_quiet_load` first (so the
load prints nothing) and calls :func:`connect_audit` after.
"""
import linecache
import sys
import threading
import time

from . import markers

# Each of these is optional: the cell markers work without them (an END
# marker then says names null; no audit channel).
try:
    from . import names as _names
except ImportError:  # pragma: no cover -- a hook dir without the module
    _names = None
try:
    from . import channel as _channel
except ImportError:  # pragma: no cover
    _channel = None

__version__ = "0.1.0"

# The registered hooks live on the shell, not in this module, so that loading
# twice (or from a reloaded module) never registers a second pair.
_SHELL_ATTR = "_reprotrace_cell_markers"
MAGIC = "reprotrace"

# Set to True right before loading the extension to load it without the
# status line (reprotrace's own injection does); the load resets it.
_quiet_load = False


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
        # (ExecutionInfo, execution_count, cell_id, CellNames or None).
        self._open = []
        self._warm_up = None

    def start_warm_up(self):
        """Loads IPython's traceback machinery (:func:`_warm_up_tracebacks`)
        in a thread of its own: formatting a traceback the first time takes
        a tenth of a second or more (Pygments compiles its lexer), which a
        kernel spends while it waits for its first cell instead of before
        answering the request that loads the extension. The next cell waits
        for it (:meth:`wait_for_warm_up`)."""
        self._warm_up = threading.Thread(
            target=_warm_up_tracebacks, args=(self.shell,), name="reprotrace-warm-up", daemon=True
        )
        try:
            self._warm_up.start()
        except RuntimeError:  # no thread to be had: load it now
            self._warm_up = None
            _warm_up_tracebacks(self.shell)

    def wait_for_warm_up(self):
        """Returns once the traceback machinery is loaded."""
        if self._warm_up is not None:
            self._warm_up.join()
            self._warm_up = None

    def pre_run_cell(self, info):
        # IPython fires no pre_run_cell for silent executions; whoever fires
        # it, they must never get markers.
        if info.silent:
            return
        # Before the BEGIN: what the warm-up still loads is not the cell's.
        self.wait_for_warm_up()
        count = self.shell.execution_count
        if info.store_history and self._counted_before_pre_run_cell:
            count -= 1
        cell_id = getattr(info, "cell_id", None)  # IPython >= 8, if the frontend sent one
        # Read before the BEGIN: this is the hook's work, not the cell's.
        cell_names = self._names_of(info.raw_cell)
        markers.emit("begin", count, cell_id, info.raw_cell)
        self._open.append((info, count, cell_id, cell_names))

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
        self._end(i, _error_of(result))

    def end_all(self):
        """END every open cell, innermost first."""
        while self._open:
            self._end(len(self._open) - 1, None)

    def _end(self, i, error):
        info, count, cell_id, cell_names = self._open.pop(i)
        time_ns = time.time_ns()
        markers.emit("end", count, cell_id, info.raw_cell, markers.Outcome(error, cell_names), time_ns=time_ns)
        # The next cell must not start before the audit has hashed what this
        # one read and wrote.
        if _channel is not None:
            _channel.sync_cell_end(time_ns)

    def _names_of(self, raw_cell):
        if _names is None:
            return None
        try:
            found = _names.of_cell(raw_cell, self.shell.transform_cell)
        except Exception:  # a transformer's own failure, say: no names, never a broken cell
            return None
        if found is None:
            return None
        return markers.CellNames(found.defines, found.deletes, found.uses)


def _error_of(result):
    """What the cell raised: from its ExecutionResult, or, when ipykernel
    passes none (it cancelled the cell's task), the exception in flight."""
    if result is None:
        exception = sys.exc_info()[1]
    else:
        exception = getattr(result, "error_before_exec", None)  # a SyntaxError, say
        if exception is None:
            exception = getattr(result, "error_in_exec", None)
    return None if exception is None else markers.CellError.of(exception)


# ---------------------------------------------------------------------------
# Traceback machinery, loaded outside any cell.

_WARM_UP_FILE = "<reprotrace traceback warm-up>"
_WARM_UP_CODE = """\
def _inner(values):
    total = sum(values) + len(values)
    return values[total] / 0

def _outer():
    data = [1, 2, 3]
    return _inner(data[:1])

_outer()
"""


def _warm_up_tracebacks(shell):
    """Format one traceback now, as IPython formats a failing cell's.

    IPython imports its traceback machinery (Pygments' formatter and style,
    stack_data, executing, asttokens, pure_eval...) the first time a cell
    raises, inside that cell: the tracer would count it as the cell's
    software. Formatting a traceback here loads it all outside any cell.
    Best effort: never fails the load. It runs in a thread of its own
    (:meth:`_CellMarkers.start_warm_up`) while the kernel waits for its first
    cell; a traceback formatted meanwhile outside any cell (a silent request
    that fails) may find the formatter's last traceback put back as it was.
    """
    try:
        shell.logger  # IPython >= 9.x builds its session logger in the first cell
    except Exception:
        pass
    if "zmq" in sys.modules:
        # pyzmq sends a large message (a deep traceback, say) without copying
        # it, and imports what frees it then.
        try:
            import zmq.utils.garbage  # noqa: F401
        except Exception:
            pass
    lines = _WARM_UP_CODE.splitlines(True)
    linecache.cache[_WARM_UP_FILE] = (len(_WARM_UP_CODE), None, lines, _WARM_UP_FILE)
    try:
        # A failing cell, then a cell with a syntax error (IPython passes
        # SyntaxTB no frames).
        for name, raise_, frames in (("InteractiveTB", _raise_in_code, True), ("SyntaxTB", _raise_syntax_error, False)):
            formatter = getattr(shell, name, None)
            if formatter is None:
                continue
            saved = formatter.__dict__.get("tb", _MISSING)
            try:
                try:
                    raise_()
                except Exception as exc:
                    formatter.structured_traceback(type(exc), exc, exc.__traceback__ if frames else [])
            except Exception:
                pass
            finally:
                # Keep no reference to the warm-up's frames (AutoFormattedTB
                # remembers the last traceback it formatted).
                if saved is _MISSING:
                    formatter.__dict__.pop("tb", None)
                else:
                    formatter.tb = saved
    finally:
        linecache.cache.pop(_WARM_UP_FILE, None)


_MISSING = object()


def _raise_in_code():
    exec(compile(_WARM_UP_CODE, _WARM_UP_FILE, "exec"), {})


def _raise_syntax_error():
    compile("x = (1,\n", _WARM_UP_FILE, "exec")


# ---------------------------------------------------------------------------
# The audit: status line, connect_audit, the %reprotrace magic.


def connect_audit(path):
    """Use the audit listening on the Unix socket ``path`` (reprotrace calls
    this in the kernel right after loading the extension). Idempotent; makes
    no request now. Without the extension loaded it only remembers the path.

    Also clears a :data:`_quiet_load` that no load consumed (the extension
    was loaded already), so that a later ``%reload_ext`` speaks again.
    """
    global _quiet_load
    _quiet_load = False
    if _channel is not None:
        _channel.connect(path)


def _connection_file():
    """This kernel's connection file, if this is an ipykernel."""
    if "ipykernel" in sys.modules:
        try:
            from ipykernel.connect import get_connection_file

            return get_connection_file()
        except Exception:
            pass
    return "<connection file>"


def _no_audit():
    return "no audit is listening (start one: reprotrace attach --kernel %s --inject-hooks)" % _connection_file()


def status_line():
    """One line: cell markers on, and whether an audit is listening."""
    current = None if _channel is None else _channel.discover()
    if current is None:
        return "reprotrace: cell markers on; " + _no_audit()
    info = _channel.audit_info()
    if info is None:  # given by connect_audit: ask now
        try:
            info = current.hello()
        except _channel.ChannelError as err:
            return "reprotrace: cell markers on; the audit at %s does not answer (%s)" % (current.path, err)
    details = [str(info[key]) for key in ("backend",) if info.get(key)]
    if info.get("output"):
        details.append("writing %s" % (info["output"],))
    return "reprotrace: cell markers on; an audit is listening" + (" (%s)" % ", ".join(details) if details else "")


# The Dask configuration variables reprotrace's client preload is set with
# (those `reprotrace run --dask` sets), when Dask was not imported yet.
_DASK_PRELOAD = "DASK_DISTRIBUTED__CLIENT__PRELOAD"
_DASK_PRELOAD_ARGV = "DASK_DISTRIBUTED__CLIENT__PRELOAD_ARGV"


def _join_dask(reports, preload):
    """Make this kernel's Dask clients, those it has and those it makes,
    take part in the audit, reporting to ``reports``. Imports nothing of
    Dask's that the kernel has not imported (that would be the kernel's
    software): before ``import dask``, Dask's own environment variables do it."""
    import json
    import os

    if not os.path.exists(preload):
        raise RuntimeError("reprotrace's Dask client preload %s is missing" % preload)
    if "distributed" in sys.modules:
        from . import dask as _dask

        _dask.join_kernel_clients(reports, preload)
        return
    if "dask" in sys.modules:
        import dask

        dask.config.set({"distributed.client.preload": [preload], "distributed.client.preload-argv": ["--reports", reports]})
        return
    os.environ[_DASK_PRELOAD] = json.dumps([preload])
    os.environ[_DASK_PRELOAD_ARGV] = json.dumps(["--reports", reports])


def forget_dask_variables():
    """Undo what :func:`_join_dask` set before Dask was imported: the
    variables and, if Dask read them since, its configuration (whose
    defaults are empty)."""
    import os

    for variable, key in ((_DASK_PRELOAD, "preload"), (_DASK_PRELOAD_ARGV, "preload-argv")):
        if os.environ.pop(variable, None) is not None and "dask" in sys.modules:
            import dask

            dask.config.set({"distributed.client." + key: []})


def collect_dask():
    """The audit ends: the kernel's clients that take part report their
    workers' audits now and stop taking part. Imports nothing of Dask's
    that the kernel has not imported."""
    if "distributed" in sys.modules:
        from . import dask as _dask

        _dask.collect_kernel_clients()
    else:
        forget_dask_variables()


def dask_status(current):
    """Ask the audit on ``current`` (or None) whether this kernel's Dask
    clients may take part, and make them if so; one phrase saying what came of it."""
    if current is None:
        return "Dask clients do not take part: no audit listens to bring their workers' audits back to"
    try:
        reply = current.request({"op": "dask"})
    except _channel.AuditRefused as err:
        return "Dask clients do not take part: %s" % (err,)
    except _channel.ChannelError as err:
        return "Dask clients do not take part: the audit did not answer (%s)" % (err,)
    reports, preload = reply.get("reports"), reply.get("preload")
    if not (isinstance(reports, str) and reports and isinstance(preload, str) and preload):
        return "Dask clients do not take part: the audit gave no place for their reports"
    try:
        _join_dask(reports, preload)
    except Exception as err:  # never break the load
        return "Dask clients do not take part: %s" % (err,)
    return "Dask clients take part"


def _reprotrace_magic(line):
    """Show what the audit knows of the cells run so far.

    %reprotrace [deps]   per cell (by execution count): files read and
                         written, names defined and used; then stale cells
    %reprotrace stale    only the stale cells, and why
    """
    what = line.strip() or "deps"
    if what not in ("deps", "stale"):
        print("usage: %reprotrace [deps|stale]")
        return
    current = None if _channel is None else _channel.discover()
    if current is None:
        print("reprotrace: " + _no_audit())
        return
    try:
        reply = current.cells()
    except _channel.ChannelError as err:
        print("reprotrace: %s" % (err,))
        return
    print(_channel.format_deps(reply) if what == "deps" else _channel.format_stale(reply))


def load_ipython_extension(ipython):
    """Register the cell-marker callbacks and the magic (once per shell), and
    say whether an audit is listening (unless :data:`_quiet_load`)."""
    global _quiet_load
    quiet, _quiet_load = _quiet_load, False
    if getattr(ipython, _SHELL_ATTR, None) is not None:
        return
    hooks = _CellMarkers(ipython)
    hooks.start_warm_up()
    ipython.events.register("pre_run_cell", hooks.pre_run_cell)
    ipython.events.register("post_run_cell", hooks.post_run_cell)
    ipython.register_magic_function(_reprotrace_magic, "line", MAGIC)
    setattr(ipython, _SHELL_ATTR, hooks)
    if not quiet:
        line = status_line()
        current = None if _channel is None else _channel.current()
        print(line + "; " + dask_status(current))


def unload_ipython_extension(ipython):
    """Unregister the cell-marker callbacks and the magic, if registered.

    The running cell (%unload_ext or %reload_ext) gets its END now: its
    post_run_cell would reach these callbacks no more.
    """
    hooks = getattr(ipython, _SHELL_ATTR, None)
    if hooks is None:
        return
    ipython.events.unregister("pre_run_cell", hooks.pre_run_cell)
    ipython.events.unregister("post_run_cell", hooks.post_run_cell)
    ipython.magics_manager.magics["line"].pop(MAGIC, None)
    delattr(ipython, _SHELL_ATTR)
    hooks.end_all()
