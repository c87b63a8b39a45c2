"""The services a run config needs, started once and shared by many pipelines.

FlinkRunner and SparkRunner start a job server (a JVM, 5-15 s) for every
pipeline, and PrismRunner one Prism process per Python process, unless ``--job_endpoint`` names one that runs already; a config with
``environment_type: EXTERNAL`` needs a Python worker pool at
``environment_config``; a config naming a standalone cluster needs it up.
``RunnerServices`` starts the first two the way Beam would (same jar, same
arguments), checks the third, and gives the flags that point jobs at them:

    with RunnerServices(flags) as services:
        for job in jobs:
            job.run(services.flags)    # flags + --job_endpoint=localhost:<port>

Nothing here changes what a pipeline computes; it only saves start-ups.
"""
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions, PipelineOptions, PortableOptions, SparkRunnerOptions, StandardOptions)
from apache_beam.runners.portability.flink_runner import MAGIC_HOST_NAMES, FlinkJarJobServer
from apache_beam.runners.portability.prism_runner import PrismJobServer
from apache_beam.runners.portability.spark_runner import SparkJarJobServer

from pipelines.run_config import to_flags

JOB_SERVERS = {"FlinkRunner": FlinkJarJobServer, "SparkRunner": SparkJarJobServer,
               "PrismRunner": PrismJobServer}


class ServiceError(RuntimeError):
    """A service the run config needs cannot be started or reached."""


def runner_name(options: PipelineOptions) -> str:
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    return runner if isinstance(runner, str) else type(runner).__name__


def _port_open(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "localhost", int(port)


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _die_with_parent():
    """In the child: get SIGTERM when the parent dies, so no service outlives a killed run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: stop() still ends the services


class _Process:
    """A child process with its output in a log file, stopped with its process group."""

    def __init__(self, name: str, cmd: list[str], log_dir: str, env=None):
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                     preexec_fn=_die_with_parent)

    def check_alive(self):
        if self.proc.poll() is not None:
            raise ServiceError(f"{self.name} exited with code {self.proc.returncode}; "
                               f"last lines of {self.log_path}:\n{_tail(self.log_path)}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class RunnerServices:
    """Job server, worker pool and cluster check for one set of Beam flags."""

    def __init__(self, flags: list[str], log_dir: str | None = None, startup_timeout: float = 180):
        self.base_flags = list(flags)
        self.extra_options: dict = {}  # e.g. job_endpoint of the shared job server
        self.startup_timeout = startup_timeout
        self.startup_seconds = 0.0
        self._log_dir = log_dir
        self._tmp_dirs: list[str] = []
        self._processes: list[_Process] = []

    @property
    def flags(self) -> list[str]:
        return self.base_flags + to_flags(self.extra_options)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        t0 = time.monotonic()
        options = PipelineOptions(self.base_flags)
        try:
            self._check_cluster(options)
            self._start_worker_pool(options)
            self._start_job_server(options)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def stop(self):
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        for path in self._tmp_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._tmp_dirs.clear()

    # ------------------------------------------------------------ pieces

    def _log_directory(self) -> str:
        if self._log_dir is None:
            self._log_dir = tempfile.mkdtemp(prefix="dataprep-services-")
        os.makedirs(self._log_dir, exist_ok=True)
        return self._log_dir

    def _check_cluster(self, options):
        runner = runner_name(options)
        if runner == "FlinkRunner":
            master = options.view_as(FlinkRunnerOptions).flink_master
            if master not in MAGIC_HOST_NAMES:
                url = master if "://" in master else f"http://{master}"
                try:
                    urllib.request.urlopen(f"{url}/overview", timeout=5).read()
                except OSError as err:
                    raise ServiceError(
                        f"no Flink cluster answers at {url} ({err}); start one with "
                        "scripts/flink_cluster.sh start") from err
        elif runner == "SparkRunner":
            master = options.view_as(SparkRunnerOptions).spark_master_url
            if master.startswith("spark://"):
                host, port = _split_host_port(master[len("spark://"):])
                if not _port_open(host, port):
                    raise ServiceError(f"no Spark master at {master}; start one with "
                                       "scripts/spark_cluster.sh start")

    def _start_worker_pool(self, options):
        portable = options.view_as(PortableOptions)
        if (portable.environment_type or "").upper() != "EXTERNAL":
            return
        host, port = _split_host_port(portable.environment_config or "")
        if _port_open(host, port):
            return  # a pool somebody else runs (e.g. next to their cluster)
        if host not in ("localhost", "127.0.0.1"):
            raise ServiceError(f"no SDK worker pool at {host}:{port}")
        # The pool starts each SDK worker as plain `python`: make that this interpreter.
        env = {**os.environ,
               "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
        pool = _Process(
            "worker_pool",
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
             f"--service_port={port}"],
            self._log_directory(), env=env)
        self._processes.append(pool)
        self._wait(pool, lambda: _port_open(host, port), f"worker pool on port {port}")

    def _start_job_server(self, options):
        server_class = JOB_SERVERS.get(runner_name(options))
        if server_class is None or options.view_as(PortableOptions).job_endpoint:
            return
        server = server_class(options)
        cmd, endpoint = server.subprocess_cmd_and_endpoint()  # the jar and arguments Beam uses
        if server._local_temp_root:  # noqa: SLF001 - Beam's artifact dir, ours to clean up
            self._tmp_dirs.append(server._local_temp_root)  # noqa: SLF001
        job_server = _Process("job_server", [str(c) for c in cmd], self._log_directory())
        self._processes.append(job_server)

        def ready():
            try:
                grpc.channel_ready_future(grpc.insecure_channel(endpoint)).result(timeout=2)
                return True
            except grpc.FutureTimeoutError:
                return False

        self._wait(job_server, ready, f"job server at {endpoint}")
        self.extra_options["job_endpoint"] = endpoint

    def _wait(self, process: _Process, ready, what: str):
        deadline = time.monotonic() + self.startup_timeout
        while not ready():
            process.check_alive()
            if time.monotonic() > deadline:
                raise ServiceError(f"{what} not up after {self.startup_timeout:.0f} s; see "
                                   f"{process.log_path}:\n{_tail(process.log_path)}")
            time.sleep(0.5)
