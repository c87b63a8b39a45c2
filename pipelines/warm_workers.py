"""SDK workers of the multi-process DirectRunner, ready before the runner asks for them.

The FnApiRunner (``direct_running_mode: multi_processing``) starts its SDK worker
processes at its first bundle, each with ``<python> -m
apache_beam.runners.worker.sdk_worker_main``, and each imports Beam (about 1 CPU s
on the machine of BENCHMARKS.md) before it takes work.  The whole job waits for that,
after the driver has spent as long importing Beam and building the pipeline with the
other cores idle (BENCHMARKS.md, "where the 100k wall goes").

So a job started as ``python -m pipelines.<job>`` or ``dataprep <job>`` whose command
line asks for that runner (``prestart_count``: ``--run_config`` or
``DATAPREP_RUN_CONFIG`` naming ``direct_multiprocess`` or a file with
``direct_running_mode: multi_processing``, and the flags that override it) starts its
workers first (``prestart``, from ``cli.run_job``): they are forked once the job's
modules (Beam's among them) are imported, so they import nothing again, each
waiting on an abstract Unix socket (Linux: no file anywhere, whatever ends the job;
a connection from another user is refused, ``SO_PEERCRED``).  While the job runs
(``handed_over``, around the DirectRunner's run in ``progress``) the worker command
in the pipeline proto the FnApiRunner is given is replaced by
``pipelines/_warm_launcher.py``, which hands a waiting worker the environment Beam
made for it and its stdin, stdout and stderr (SCM_RIGHTS: a run's log file, as Beam's
own worker would have), and lives as long as that worker does.  The worker runs Beam's
own worker main (``sdk_worker_main.main``) with them, its logging reset to a new
interpreter's: what runs is what Beam would have run, started earlier.

Nothing depends on it: a launcher that finds no worker waiting (fewer started than
the runner wants, a second pipeline in the same process, the pool closed) execs
Beam's command, and a warm worker refuses an environment that differs from the one it
started with in anything but what the runner and the run set afterwards
(``HANDED_KEYS``, read at call time, never at import; and what ``sh -c`` sets) or a
changed current folder:
the launcher then tries the next, and the cold command last.  Workers not taken are
ended when the run ends (``close_pool``), every one when it fails or is interrupted
(and ``progress.stop_children`` counts them as the run's), or when the driver exits
(also on Ctrl-C, which leaves by ``os._exit``); a worker whose driver is gone (killed)
ends itself.  Like Beam's own workers started
from ``progress``'s run thread, they start with SIGINT blocked: a terminal's Ctrl-C
is the driver's.

Measured in BENCHMARKS.md ("Warm workers").  The hook into Beam is
``FnApiRunner.run_via_runner_api`` (the proto's ``SUBPROCESS_SDK`` environment,
whose payload is the worker command): when a Beam release changes either, the
command is not found and the run starts its workers cold, as before.
"""
import contextlib
import json
import os
import shlex
import signal
import sys

BEAM_WORKER_MODULE = "apache_beam.runners.worker.sdk_worker_main"
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_warm_launcher.py")
# set by the FnApiRunner for each worker, or by the run (progress.run_temp_dir) after the
# warm workers started; nothing reads them at import time
HANDED_KEYS = frozenset({
    "CONTROL_API_SERVICE_DESCRIPTOR", "LOGGING_API_SERVICE_DESCRIPTOR",
    "STATUS_API_SERVICE_DESCRIPTOR", "PIPELINE_OPTIONS", "WORKER_ID",
    "TMPDIR", "DATAPREP_COMMIT_GATE",
    # what ``sh -c`` (bash as sh, dash) sets or drops on its way to the launcher
    "_", "SHLVL", "PWD", "OLDPWD", "PS1", "PS2", "PS4", "IFS", "OPTIND", "PPID"})
ACCEPTED = b"A"
TAKEN = b"T"
FDS_MARKER = b"F"
MAX_REQUEST = 64 << 20
POLL_S = 0.2
REQUEST_TIMEOUT_S = 2.0

_POOL: dict = {"name": None, "workers": [], "taken": False}
_REPORT: dict = {}


# ---------------------------------------------------------------- the command line

def _flags(argv) -> dict:
    """The last value of every ``--name value`` / ``--name=value`` in ``argv``."""
    found = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        if eq:
            found[name] = value
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            found[name] = argv[i + 1]
    return found


def _config_settings(config: str) -> dict:
    """The run config's settings (``run_config.load``: a path or a shipped name), {}
    when it cannot be read (the job itself reports that)."""
    from pipelines import run_config   # imported by the job already (prestart runs late)
    try:
        return {key: str(value) for key, value in run_config.load(config).items()}
    except (run_config.RunConfigError, OSError):
        return {}


def prestart_count(argv, environ=None) -> int:
    """How many SDK workers the multi-process DirectRunner of the job on this command
    line will start (``direct_num_workers``, 0 meaning one per core), 0 when the
    command line does not ask for that runner: its run config (``--run_config``, else
    ``$DATAPREP_RUN_CONFIG``), overridden by ``--runner``, ``--direct_running_mode``
    and ``--direct_num_workers`` as the job does.  A guess from the text alone: a
    wrong one costs idle processes or a cold start, never a different run."""
    environ = os.environ if environ is None else environ
    if any(arg in ("-h", "--help") for arg in argv):
        return 0
    flags = _flags(argv)
    config = flags.get("run_config") or environ.get("DATAPREP_RUN_CONFIG")
    settings = _config_settings(config) if config else {}
    settings.update(flags)
    runner = settings.get("runner", "DirectRunner").rsplit(".", 1)[-1]
    if runner not in ("DirectRunner", "SwitchingDirectRunner"):
        return 0
    if settings.get("direct_running_mode", "in_memory") != "multi_processing":
        return 0
    try:
        workers = int(settings.get("direct_num_workers", "1"))
    except ValueError:
        return 0
    return workers if workers > 0 else (os.cpu_count() or 1)


# ---------------------------------------------------------------- the driver

def prestart(count: int) -> int:
    """Fork ``count`` warm workers from this process (SIGINT blocked in them) -> how many
    were started: 0 when a pool exists already, another thread runs (a fork copies
    one thread), off Linux, or when no socket or process can be made."""
    import threading
    if (count < 1 or _POOL["name"] is not None or threading.active_count() != 1
            or not sys.platform.startswith("linux")):   # abstract sockets; fork after imports
        return 0
    import atexit
    import secrets
    import socket
    import warnings
    parent = os.getpid()
    # abstract Unix sockets (Linux): nothing in any folder, whatever ends the job
    name = f"dataprep-warm-{parent}-{secrets.token_hex(8)}"
    _POOL.update(name=name, workers=[], taken=False, owner=parent)
    atexit.register(close_pool)
    sys.stdout.flush()
    sys.stderr.flush()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for i in range(count):
            # bound here: a launcher that comes before the worker waits is in the backlog
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            taken_r, taken_w = os.pipe()   # the worker writes TAKEN into it when it is
            try:
                listener.bind(f"\0{name}-{i}")
                listener.listen(8)
                with warnings.catch_warnings():
                    # Python 3.12+ warns of a fork beside other threads: numpy's and
                    # pyarrow's native ones (they handle a fork: multiprocessing's default)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
                if pid == 0:   # the worker: never returns
                    os.close(taken_r)
                    _worker(listener, taken_w, parent)
            finally:
                listener.close()
                os.close(taken_w)
            os.set_blocking(taken_r, False)
            _POOL["workers"].append((pid, taken_r))
    except Exception:  # noqa: BLE001 - no socket or process: the run starts its workers cold
        close_pool()
        return 0
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return count


def pool_size() -> int:
    """Warm workers started and not yet handed to a run (0: none)."""
    return 0 if _POOL["taken"] or _POOL["name"] is None else len(_POOL["workers"])


def pool_pids() -> list[int]:
    """Process ids of the open pool's workers, taken or not ([] without a pool)."""
    return [pid for pid, _ in _POOL["workers"]] if _POOL["name"] is not None else []


def launcher_command(beam_command: str, name: str, count: int) -> str:
    """The shell command that starts a worker through ``LAUNCHER``."""
    return " ".join(shlex.quote(part) for part in (
        sys.executable, "-I", "-S", LAUNCHER, name, str(count), beam_command))


@contextlib.contextmanager
def handed_over():
    """While a DirectRunner pipeline runs in this block, its multi-process workers are
    the warm ones (module doc); the pool is closed when the block ends.  Without a
    pool, or on a Beam whose FnApiRunner is laid out otherwise, nothing changes."""
    count = pool_size()
    if not count:
        yield
        return
    try:
        from apache_beam.portability import python_urns
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        original = fn_runner.FnApiRunner.run_via_runner_api
    except (ImportError, AttributeError):  # pragma: no cover - another Beam layout
        yield
        close_pool()
        return
    beam_command = f"{sys.executable} -m {BEAM_WORKER_MODULE}".encode("utf-8")
    warm = launcher_command(beam_command.decode("utf-8"), _POOL["name"], count)

    def run_via_runner_api(self, pipeline_proto, options):
        if not _POOL["taken"]:
            for environment in pipeline_proto.components.environments.values():
                if (environment.urn == python_urns.SUBPROCESS_SDK
                        and environment.payload == beam_command):
                    environment.payload = warm.encode("utf-8")
                    _POOL["taken"] = True
        return original(self, pipeline_proto, options)

    fn_runner.FnApiRunner.run_via_runner_api = run_via_runner_api
    ended = False
    try:
        yield
        ended = True
    finally:
        fn_runner.FnApiRunner.run_via_runner_api = original
        # a run that failed or was interrupted: the workers it took end now, as Beam's
        # own (``progress.stop_children``) would
        close_pool(end_taken=not ended)


def close_pool(timeout: float = 5.0, end_taken: bool = False) -> None:
    """End the warm workers no run took (SIGTERM; ``end_taken``: every one, a run that
    ended by a failure or a Ctrl-C), and reap every one."""
    import time
    name, workers = _POOL["name"], _POOL["workers"]
    if name is None or os.getpid() != _POOL.get("owner", os.getpid()):
        return
    _POOL.update(name=None, workers=[], taken=True)
    taken, unused = [], []
    for pid, taken_r in workers:
        try:
            said = os.read(taken_r, 1)
        except OSError:   # nothing written: never taken
            said = b""
        finally:
            os.close(taken_r)
        (taken if said == TAKEN else unused).append(pid)
        if said != TAKEN or end_taken:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
    _REPORT.clear()
    _REPORT.update(started=[pid for pid, _ in workers], taken=taken, unused=unused)
    deadline = time.monotonic() + timeout
    for pid, _ in workers:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                break
            time.sleep(0.01)


def last_report() -> dict:
    """The last closed pool: ``{"started", "taken", "unused"}`` lists of process ids
    ({} before any)."""
    return dict(_REPORT)


# ---------------------------------------------------------------- the worker

def _receive(conn) -> "dict | None":
    """A launcher's request (``{"env": ..., "cwd": ...}``), None when it is not one."""
    header = _read_exactly(conn, 8)
    if header is None:
        return None
    size = int.from_bytes(header, "big")
    if size > MAX_REQUEST:
        return None
    body = _read_exactly(conn, size)
    try:
        request = json.loads(body) if body is not None else None
    except ValueError:
        return None
    if not (isinstance(request, dict) and isinstance(request.get("env"), dict)
            and isinstance(request.get("cwd"), str)):
        return None
    return request


def _receive_fds(conn) -> list[int]:
    """The launcher's stdin, stdout and stderr (SCM_RIGHTS), sent before its request."""
    import socket
    marker, fds, _, _ = socket.recv_fds(conn, 1, 3)
    if marker != FDS_MARKER:
        for fd in fds:
            os.close(fd)
        return []
    return fds


def _read_exactly(conn, size: int) -> "bytes | None":
    data = b""
    while len(data) < size:
        chunk = conn.recv(min(size - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return data


def foreign_keys(started: dict, handed: dict) -> list[str]:
    """Environment variables that differ between a warm worker's start and the
    environment a launcher hands it, other than ``HANDED_KEYS``: a worker refuses to
    run with any (they might have been read while it imported)."""
    keys = set(started) | set(handed)
    return sorted(k for k in keys - HANDED_KEYS if started.get(k) != handed.get(k))


def _worker(listener, taken_w: int, parent: int) -> None:
    """A forked warm worker's life; ends the process (``os._exit``), never returns."""
    import gc
    gc.freeze()   # the driver's objects, copied: never scanned (nor their pages written)
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)   # blocked, as Beam's
        signal.signal(signal.SIGTERM, signal.SIG_DFL)   # close_pool's, whatever the driver's
        _fresh_logging()
        status = serve(listener, taken_w, parent)
    except BaseException:  # noqa: BLE001 - reported as Beam's worker would, then its status
        import traceback
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def _fresh_logging() -> None:
    """Logging as a new interpreter has it (Beam's worker main sets up its own): the
    driver's handlers on the root logger (its stderr lines) and levels dropped."""
    import logging
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    logging.disable(logging.NOTSET)


def _same_user(conn) -> bool:
    """The peer of ``conn`` runs as this process's user (an abstract socket has no
    file mode: any local user could connect)."""
    import socket
    import struct
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1] == os.getuid()


def serve(listener, taken_w: int, parent: int) -> int:
    """Wait on ``listener`` for one launcher whose environment this process can take
    (writing ``TAKEN`` into ``taken_w`` then), and run Beam's worker main with it ->
    the exit status (0 when the driver went away first)."""
    import select
    from apache_beam.runners.worker import sdk_worker_main
    started_env, started_cwd = dict(os.environ), os.getcwd()
    conn = request = None
    while conn is None:
        if os.getppid() != parent:   # the driver is gone
            return 0
        if not select.select([listener], [], [], POLL_S)[0]:
            continue
        candidate, _ = listener.accept()
        fds = []
        try:
            candidate.settimeout(REQUEST_TIMEOUT_S)   # a launcher sends all at once
            if _same_user(candidate):
                fds = _receive_fds(candidate)
                request = _receive(candidate) if len(fds) == 3 else None
                if (request is not None and request["cwd"] == started_cwd
                        and not foreign_keys(started_env, request["env"])):
                    candidate.sendall(ACCEPTED)
                    conn = candidate
        except OSError:   # a launcher gone half-way: not taken, wait for the next
            conn = None
        if conn is None:
            for fd in fds:
                os.close(fd)
            candidate.close()
    listener.close()
    with contextlib.suppress(OSError):
        os.write(taken_w, TAKEN)
        os.close(taken_w)
    conn.settimeout(None)
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, given in zip((0, 1, 2), fds):   # the launcher's stdio: what Beam gave it
        os.dup2(given, fd)
        os.close(given)
    os.environ.clear()
    os.environ.update(request["env"])
    import tempfile
    tempfile.tempdir = None   # $TMPDIR is the run's now
    sys.argv = [sdk_worker_main.__file__]
    status = 0
    try:
        sdk_worker_main.main(sys.argv)
    except SystemExit as err:
        status = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported as Beam's worker would, then its status
        import traceback
        traceback.print_exc()
        status = 1
    with contextlib.suppress(OSError):
        conn.sendall(bytes([status & 0xFF]))
    return status
