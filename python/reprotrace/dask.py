"""reprotrace for Dask: every worker audited, per task, and the audits brought
back to the run that submitted the tasks.

On a worker (``dask worker --preload reprotrace.dask``, or the plugin a run's
client registers on every worker):

- the worker's process tree is audited by ``reprotrace attach`` through the
  host's ``reprotrace daemon`` (``REPROTRACE_SOCKET``, else the default
  socket), from the nanny when there is one, so a restarted worker process is
  followed from its start; what the worker imported before the audit began is
  opened again once the audit runs, so it is seen;
- each task emits a BEGIN and an END marker from the pool thread that runs it
  (one failing ``openat`` each, see :func:`task_marker`), so reprotrace
  attributes the thread's work, and the processes it starts, to the task.

In the run, each graph a client sends its scheduler emits a submission marker
from the thread that sends it (:func:`submit_marker`), in the manager's own
traced process: the run sees it while the submitting notebook cell runs, on
its own clock. The scheduler plugin notes which keys each submission brought,
by the same id.

In the run (``reprotrace run --dask`` makes every ``distributed.Client`` of the
traced tree load this module as a client preload, see
``reprotrace_dask_client.py``): the client registers the worker plugin and a
scheduler plugin that notes which keys it submitted and when; when the client
closes, each worker's audit is finished and handed back, and the files land in
the directory reprotrace merges into the run's manifest.
"""
import asyncio
import ctypes
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

TASK_MARKER_DIRFD = -29301
PLUGIN_NAME = "reprotrace"
DEFAULT_SOCKET = "/run/reprotrace/daemon.sock"
# The kernel takes paths up to 4,096 bytes; the marker's own fields take < 60.
MAX_KEY_BYTES = 3000
MAX_ADDRESS_BYTES = 500
ATTACH_TIMEOUT = 60.0
# The distributed release the task markers are tested with (tests/src/lib.rs).
KNOWN_DISTRIBUTED = "2026.8.0"

_libc = ctypes.CDLL(None, use_errno=True)
_openat = _libc.openat
_openat.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
_openat.restype = ctypes.c_int


def key_text(key):
    """A Dask key as the manifest spells it: a string as it is, anything else
    (a tuple) as Python prints it."""
    return key if isinstance(key, str) else repr(key)


def task_marker(phase, key, worker_address=None):
    """Emit one task marker (``begin`` or ``end``) from the calling thread:
    ``openat(-29301, "reprotrace-task:2:<phase>:<unix_time_ns>:<n>:<worker_address>:<key>")``,
    ``n`` the address's length in bytes (0 when it is not known), which
    fails with EBADF after the kernel copied the path, touching no file."""
    text = key_text(key).replace("\0", "")
    encoded = text.encode("utf-8", "surrogateescape")[:MAX_KEY_BYTES]
    address = (worker_address or "").replace("\0", "").encode("utf-8", "surrogateescape")[:MAX_ADDRESS_BYTES]
    path = b"reprotrace-task:2:%s:%d:%d:%s:%s" % (phase.encode(), time.time_ns(), len(address), address, encoded)
    fd = _openat(TASK_MARKER_DIRFD, path, os.O_RDONLY)
    if fd >= 0:  # cannot happen on Linux; never leak a descriptor if it does
        os.close(fd)


def _running_worker_address(worker_module):
    """The address of the worker whose task the calling pool thread runs
    (its thread state's execution state names the worker), or None."""
    state = getattr(worker_module.thread_state, "execution_state", None)
    worker = state.get("worker") if isinstance(state, dict) else None
    address = getattr(worker, "address", None)
    return address if isinstance(address, str) else None


def submit_marker(submission_id):
    """Emit a submission marker from the calling thread, as a client sends
    its scheduler a graph: ``openat(-29301,
    "reprotrace-submit:1:<unix_time_ns>:<submission_id>")`` (the task markers'
    dirfd; it fails with EBADF, touching no file)."""
    encoded = submission_id.replace("\0", "").encode("utf-8", "surrogateescape")[:MAX_KEY_BYTES]
    path = b"reprotrace-submit:1:%d:%s" % (time.time_ns(), encoded)
    fd = _openat(TASK_MARKER_DIRFD, path, os.O_RDONLY)
    if fd >= 0:
        os.close(fd)


def mark_submissions(client):
    """Make every graph ``client`` sends its scheduler (an ``update-graph``
    message: ``submit``, ``map``, ``compute``, ``persist``, ``get``) carry an
    id (Dask's ``stimulus_id``, which the scheduler hands its plugins) and
    emit a submission marker with it, from the thread that sends it. Returns
    False when this ``distributed`` has no ``Client._send_to_scheduler`` to
    wrap: the run then matches cells by the scheduler's clock."""
    send = getattr(client, "_send_to_scheduler", None)
    if not callable(send):
        return False
    if getattr(send, "_reprotrace_marked", False):
        return True

    def marked(msg, *args, **kwargs):
        if isinstance(msg, dict) and msg.get("op") == "update-graph":
            submission = msg.get("stimulus_id")
            if not isinstance(submission, str) or not submission:
                submission = "update-graph-reprotrace-%s" % uuid.uuid4().hex
                msg = dict(msg, stimulus_id=submission)
            # Before the message leaves: the cell that sends it is running.
            submit_marker(submission)
        return send(msg, *args, **kwargs)

    marked._reprotrace_marked = True
    client._send_to_scheduler = marked
    return True


_markers_lock = threading.Lock()


def install_task_markers():
    """Make every task this worker process runs in its thread pool emit its
    markers, from the thread that runs it (once per process).

    The pool thread runs ``distributed.worker._run_task_simple`` inside the
    thread state that names the task's key; plugins' ``transition`` runs on
    the event loop thread instead, which would mix up concurrent tasks.
    Coroutine tasks run on the event loop and are not marked: their work is
    the worker's.

    ``_run_task_simple`` and ``thread_state`` are private to
    ``distributed``: a release without them raises a RuntimeError that says
    so, and the plugin reports the worker unaudited with it.
    """
    import distributed
    from distributed import worker as worker_module

    with _markers_lock:
        run = getattr(worker_module, "_run_task_simple", None)
        missing = [
            "distributed.worker." + name
            for name, present in (("_run_task_simple", callable(run)), ("thread_state", hasattr(worker_module, "thread_state")))
            if not present
        ]
        if missing:
            raise RuntimeError(
                "this distributed (%s) has no %s, which reprotrace needs to mark each task "
                "(it is known to work with distributed %s)"
                % (getattr(distributed, "__version__", "of unknown version"), " or ".join(missing), KNOWN_DISTRIBUTED)
            )
        if getattr(run, "_reprotrace_marked", False):
            return

        # Arguments passed through as given: a release that changes them
        # still runs its tasks.
        def marked(*args, **kwargs):
            key = getattr(worker_module.thread_state, "key", None)
            if key is None:
                return run(*args, **kwargs)
            # The address the worker has now: a worker its nanny restarted
            # has a new one, which its audit (started before) does not know.
            address = _running_worker_address(worker_module)
            task_marker("begin", key, address)
            try:
                return run(*args, **kwargs)
            finally:
                task_marker("end", key, address)

        marked._reprotrace_marked = True
        worker_module._run_task_simple = marked


def _ancestors(pid):
    """The pids above ``pid``, nearest first."""
    found = []
    while pid > 1:
        try:
            with open("/proc/%d/stat" % pid, "rb") as stat:
                # The command name may hold spaces and parentheses: the ppid
                # is the second field after the last ')'.
                pid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        found.append(pid)
    return found


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reprotrace_binary():
    binary = os.environ.get("REPROTRACE_BIN") or shutil.which("reprotrace")
    if not binary:
        raise RuntimeError("reprotrace is not installed on this host (not on PATH, and REPROTRACE_BIN is not set)")
    return binary


def _touch_loaded_files():
    """Open (and close) every file this process loaded before its audit
    began: the modules' sources and bytecode, and the files mapped in memory
    (shared libraries). The audit then sees them as it would have at import."""
    paths = set()
    for module in list(sys.modules.values()):
        for attribute in ("__file__", "__cached__"):
            path = getattr(module, attribute, None)
            if isinstance(path, str) and os.path.isabs(path):
                paths.add(path)
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) == 6 and fields[5].startswith("/"):
                    paths.add(fields[5].rstrip("\n").removesuffix(" (deleted)"))
    except OSError:
        pass
    for path in sorted(paths):
        try:
            with open(path, "rb"):
                pass
        except OSError:
            pass


def _private_dir(path):
    """``path``, a directory only this user can use, made if missing. In a
    shared /tmp another user could have made it first (or a symlink by
    that name): then it is refused, never used."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RuntimeError("%s is not a private directory of this user: remove it" % path)
    return path


class WorkerAudit:
    """The audit of one worker's process tree, by a ``reprotrace attach`` that
    runs beside it (in its own session, not followed by itself).

    Its state lives in a directory named after the audited process (the
    nanny, or the worker without one), so that a worker process the nanny
    restarted finds the audit already following it and adopts it.
    """

    def __init__(self, worker_address, worker_name, target_pid):
        self.address = worker_address
        self.name = worker_name
        self.target_pid = target_pid
        self.process = None  # our child, when we started it
        self.unaudited = None  # why there is no audit
        self.base = os.path.join(tempfile.gettempdir(), "reprotrace-dask-%d" % os.getuid())
        self.state_dir = os.path.join(self.base, str(target_pid))
        self.manifest = os.path.join(self.state_dir, "manifest.json")
        self.log = os.path.join(self.state_dir, "attach.log")
        self.state = os.path.join(self.state_dir, "audit.json")

    def _running_pid(self):
        """The pid of the attach auditing the target now, if one runs."""
        try:
            with open(self.state) as state:
                pid = json.load(state)["pid"]
        except (OSError, ValueError, KeyError):
            return None
        return pid if _pid_alive(pid) else None

    def start(self):
        """Start auditing (or adopt the audit already running); replay what
        was loaded before. Never raises: a failure is kept as the reason."""
        self.unaudited = None
        try:
            _private_dir(self.base)
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            if self._running_pid() is not None:
                _touch_loaded_files()
                return
            self._start_attach()
        except Exception as error:  # any failure leaves the worker running, unaudited
            self.unaudited = str(error)
            return
        _touch_loaded_files()

    def _start_attach(self):
        binary = _reprotrace_binary()
        socket_path = os.environ.get("REPROTRACE_SOCKET", DEFAULT_SOCKET)
        if not os.path.exists(socket_path):
            raise RuntimeError(
                "no reprotrace daemon on this host (%s is missing): start `reprotrace daemon --allow-users`"
                % socket_path
            )
        for stale in (self.manifest, self.state):
            if os.path.exists(stale):
                os.remove(stale)
        command = [
            binary, "attach", "--socket", socket_path, "--pid", str(self.target_pid),
            "--dask-worker", self.address, "-o", self.manifest,
        ]
        if self.name is not None:
            command += ["--dask-worker-name", str(self.name)]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while time.monotonic() < deadline:
            text = self._log_text()
            if "attached to" in text:
                with open(self.state, "w") as state:
                    json.dump({"pid": self.process.pid}, state)
                return
            if self.process.poll() is not None:
                raise RuntimeError(self._failure(text))
            time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        raise RuntimeError("reprotrace attach did not attach within %d s: %s" % (ATTACH_TIMEOUT, self._failure(self._log_text())))

    def _log_text(self):
        try:
            with open(self.log, errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    @staticmethod
    def _failure(text):
        errors = [line for line in text.splitlines() if "error" in line]
        return (errors or text.splitlines() or ["reprotrace attach failed without a message"])[-1].strip()

    def finish(self):
        """End the running audit and return its manifest (text), or raise."""
        pid = self._running_pid()
        if pid is None:
            raise RuntimeError(self.unaudited or "this worker's audit ended before it was collected")
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + ATTACH_TIMEOUT
        if self.process is not None and self.process.pid == pid:
            self.process.wait(timeout=ATTACH_TIMEOUT)
            self.process = None
        else:
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        os.remove(self.state)
        try:
            with open(self.manifest) as manifest:
                return manifest.read()
        except OSError as error:
            raise RuntimeError("the worker's audit wrote no manifest: %s; %s" % (error, self._failure(self._log_text())))


# One audit per worker process, whichever plugin instance asks.
_audit = None
_audit_lock = threading.Lock()


def _worker_audit(worker, manager_pid=None):
    """This process's worker audit, started on first use; ``None`` when the
    worker is a process of the run's own tree (a LocalCluster the run
    started): the run's audit already follows it."""
    global _audit
    with _audit_lock:
        if _audit is None:
            if manager_pid is not None and manager_pid in _ancestors(os.getpid()):
                return None
            # With a nanny, the worker process is the nanny's child: audit
            # from the nanny, so that the worker it restarts is followed.
            target = os.getppid() if getattr(worker, "nanny", None) else os.getpid()
            _audit = WorkerAudit(worker.address, worker.name, target)
            _audit.start()
        return _audit


class ReprotraceWorkerPlugin(WorkerPlugin):
    """Installed on every worker: task markers, and the worker's audit."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self, manager_pid=None):
        self.manager_pid = manager_pid
        self.audit = None
        self.setup_failure = None  # why this worker could not take part

    async def setup(self, worker):
        # A failure here is kept and reported as the worker's reason, never
        # raised: raised, it would leave the plugin installed with no audit,
        # and the worker silently absent from the run.
        self.setup_failure = None
        try:
            install_task_markers()
            loop = asyncio.get_running_loop()
            # Starting an audit waits for it to attach: not on the event loop.
            self.audit = await loop.run_in_executor(None, _worker_audit, worker, self.manager_pid)
        except Exception as error:
            self.setup_failure = "reprotrace's plugin could not be set up: %s" % error
            _warn("%s (worker %s)" % (self.setup_failure, worker.address))

    def report(self, worker):
        """What this worker sends the run when its client closes: its audit's
        manifest (the audit then starts again, for what comes next), the
        reason it has none, or nothing when the run followed it itself."""
        identity = _identity(worker)
        if self.setup_failure is not None:
            return dict(identity, reason=self.setup_failure)
        if self.audit is None:
            return None
        if self.audit.unaudited is not None:
            return dict(identity, reason=self.audit.unaudited)
        try:
            manifest = self.audit.finish()
        except Exception as error:
            return dict(identity, reason=str(error))
        finally:
            # Audited again for whatever comes next, without holding up the
            # closing client.
            threading.Thread(target=self.audit.start, daemon=True).start()
        return dict(identity, manifest=manifest)


def _identity(worker):
    """A worker as its reports name it; a name is text (a LocalCluster's
    workers are named by numbers)."""
    name = None if worker.name is None else str(worker.name)
    return {"host": socket.gethostname(), "address": worker.address, "name": name}


async def _collect(dask_worker):
    """Run on each worker by the closing client (``Client.run``)."""
    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    if plugin is None:
        return dict(_identity(dask_worker), reason="reprotrace's plugin is not installed on this worker")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, plugin.report, dask_worker)


# Tests only: nanoseconds added to the scheduler plugin's clock, as on a
# scheduler host whose clock is off (read where the client makes the plugin).
_TEST_CLOCK_SKEW = "REPROTRACE_TEST_SCHEDULER_CLOCK_SKEW_NS"


class SubmittedKeys(SchedulerPlugin):
    """On the scheduler: the keys each client submitted, when (the
    scheduler's clock: the run's fallback) and in which submission (the id
    its submission marker names in the run); and which of them a worker ran
    to the end, so that the run knows which tasks must have a record (one
    that never ran, its dependency failed or it was cancelled, has none)."""

    name = PLUGIN_NAME + "-submitted"
    idempotent = True

    def __init__(self):
        self.by_client = {}
        self.ran_by_client = {}
        self.submission_by_client = {}
        try:
            self.clock_skew_ns = int(os.environ.get(_TEST_CLOCK_SKEW, "0"))
        except ValueError:
            self.clock_skew_ns = 0

    def update_graph(self, scheduler, *, client, keys, tasks, stimulus_id=None, **kwargs):
        now = time.time_ns() + getattr(self, "clock_skew_ns", 0)
        submitted = self.by_client.setdefault(client, {})
        submissions = self.submission_by_client.setdefault(client, {})
        for key in list(tasks) + list(keys):
            text = key_text(key)
            submitted.setdefault(text, now)
            if stimulus_id:
                submissions.setdefault(text, stimulus_id)

    def transition(self, key, start, finish, *args, **kwargs):
        # From processing, a task ends in memory or erred once a worker ran it.
        if start != "processing" or finish not in ("memory", "erred"):
            return
        text = key_text(key)
        for client, submitted in self.by_client.items():
            if text in submitted:
                self.ran_by_client.setdefault(client, set()).add(text)

    def remove_client(self, scheduler, client):
        self.by_client.pop(client, None)
        self.ran_by_client.pop(client, None)
        self.submission_by_client.pop(client, None)


def _submitted(dask_scheduler, client_id):
    plugin = dask_scheduler.plugins.get(SubmittedKeys.name)
    if plugin is None:
        return None
    keys = plugin.by_client.pop(client_id, {})
    ran = plugin.ran_by_client.pop(client_id, set())
    submissions = getattr(plugin, "submission_by_client", {}).pop(client_id, {})
    return {"keys": keys, "ran": sorted(ran), "submissions": submissions}


def _write_json(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w") as out:
        json.dump(value, out)
    os.replace(temporary, path)


def _client_note(client, problems):
    """What ``TAG.joined.json`` and ``TAG.reported.json`` say (merge.rs
    ``ClientNote``)."""
    return {"client": client.id, "pid": os.getpid(), "problems": problems}


def _client_tag(client):
    return "%d-%s" % (os.getpid(), client.id)


async def setup_client(client, reports):
    """A run's client: every worker audited, every submission noted. It
    leaves ``TAG.joined.json`` in the reports directory, so that the run
    knows a client that never reports lost its workers' audits."""
    client._reprotrace_reports = reports
    problems = []
    if not mark_submissions(client):
        _warn(
            "this distributed has no Client._send_to_scheduler to mark submissions with: "
            "tasks are matched to notebook cells by the scheduler's clock"
        )
    for plugin in (SubmittedKeys(), ReprotraceWorkerPlugin(manager_pid=os.getpid())):
        try:
            await client.register_plugin(plugin)
        except Exception as error:
            message = "could not register %s on the cluster: %s" % (plugin.name, error)
            _warn(message)
            # Without the scheduler plugin only the tasks' submitters are
            # unknown (docs/dask.md); without the worker plugin, their audits.
            if isinstance(plugin, ReprotraceWorkerPlugin):
                problems.append(message)
    try:
        _write_json(os.path.join(reports, "%s.joined.json" % _client_tag(client)), _client_note(client, problems))
    except OSError as error:
        _warn("could not tell the run this client takes part: %s" % error)


async def teardown_client(client):
    """The run's client closes: collect every worker's audit into the
    reports directory, then leave ``TAG.reported.json`` (with what could not
    be collected)."""
    reports = getattr(client, "_reprotrace_reports", None)
    if reports is None:
        return
    tag = _client_tag(client)
    problems = []
    try:
        submitted = await client.run_on_scheduler(_submitted, client_id=client.id)
    except Exception as error:
        _warn("could not ask the scheduler which keys this client submitted: %s" % error)
        submitted = None
    if submitted is not None:
        if not (isinstance(submitted.get("keys"), dict) and isinstance(submitted.get("ran"), list)):
            # An older package on the scheduler: the keys only, which ran unknown.
            submitted = {"keys": submitted}
        _write_json(os.path.join(reports, "%s.submitted.json" % tag), submitted)
    try:
        results = await client.run(_collect)
    except Exception as error:
        message = "could not collect the workers' audits: %s" % error
        _warn(message)
        problems.append(message)
        results = {}
    _write_reports(reports, tag, results)
    _write_json(os.path.join(reports, "%s.reported.json" % tag), _client_note(client, problems))


def _write_reports(reports, tag, results):
    """The workers' answers to ``_collect``: a manifest or a reason each."""
    for index, (address, result) in enumerate(sorted(results.items())):
        if result is None:
            continue
        name = "%s-%d" % (tag, index)
        if "manifest" in result:
            with open(os.path.join(reports, name + ".manifest.json.tmp"), "w") as out:
                out.write(result["manifest"])
            os.replace(os.path.join(reports, name + ".manifest.json.tmp"), os.path.join(reports, name + ".manifest.json"))
        else:
            _write_json(os.path.join(reports, name + ".unaudited.json"), result)


def _live_clients():
    from distributed import client as client_module

    return [client for client in list(client_module._global_clients.values()) if client.status == "running"]


# The kernel's Dask preload settings before an attach changed them.
_kernel_config = None


def join_kernel_clients(reports, preload=None):
    """``reprotrace attach --kernel … --dask`` (or ``%load_ext reprotrace``
    under an audit): this kernel's Dask clients, those it has and those it
    makes, take part in the audit, with the client ``preload`` the audit
    gave (else the one beside this package)."""
    global _kernel_config
    import dask

    if preload is None:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        preload = os.path.join(here, "reprotrace_dask_client.py")
    keys = ("distributed.client.preload", "distributed.client.preload-argv")
    if _kernel_config is None:
        _kernel_config = {key: dask.config.get(key) for key in keys}
    dask.config.set({keys[0]: [preload], keys[1]: ["--reports", reports]})
    for client in _live_clients():
        if getattr(client, "_reprotrace_reports", None) is None:
            client.sync(setup_client, client, reports)


def collect_kernel_clients():
    """The attach ends: every client that takes part reports its workers'
    audits now and stops taking part; the kernel's settings are restored."""
    global _kernel_config
    import dask

    for client in _live_clients():
        if getattr(client, "_reprotrace_reports", None) is not None:
            client.sync(teardown_client, client)
            client._reprotrace_reports = None
    if _kernel_config is not None:
        dask.config.set(_kernel_config)
        _kernel_config = None
    import reprotrace

    if hasattr(reprotrace, "forget_dask_variables"):
        reprotrace.forget_dask_variables()


def _warn(message):
    print("reprotrace: warning: %s" % message, file=sys.stderr)


async def dask_setup(server):
    """``dask worker --preload reprotrace.dask``: the worker audits itself
    (from its nanny, when it has one) before it connects to the scheduler."""
    from distributed import Worker

    if not isinstance(server, Worker):
        _warn("reprotrace.dask is a worker preload (--preload), not a %s one" % type(server).__name__.lower())
        return
    await server.plugin_add(ReprotraceWorkerPlugin(), name=PLUGIN_NAME)
