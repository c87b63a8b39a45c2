"""Live counter totals of the SDK workers, for a progress display on any runner.

Beam's portable job servers for Flink and Spark answer ``GetJobMetrics`` only
once a batch job is done, and in batch both hand a worker one bundle per
partition of a stage, so even the counters they receive arrive per
partition.  The numbers a progress display needs are in the SDK workers
while their bundles run: every running ``BundleProcessor`` answers
``monitoring_infos()`` (as the harness does to answer a runner's
``ProcessBundleProgressRequest``).  Two ways to reach them:

- **In this process** (``environment_type: LOOPBACK``: flink_local,
  spark_local, prism): ``CounterTap.installed()`` around the run reads the
  workers' bundle processors directly.
- **In other processes, possibly on other hosts** (``EXTERNAL``, ``DOCKER``,
  ``PROCESS``: flink_cluster, spark_cluster): the driver opens a
  ``Receiver`` (a UDP socket) and puts its address in the job's config; the
  scan's DoFn calls ``send_to(address)`` in ``setup()``, which starts one
  daemon thread per worker process that sends that process's totals, a
  small JSON datagram, every ``SEND_INTERVAL`` seconds.  The driver sums the
  latest datagram of every worker process.  A worker that cannot reach the
  driver (a firewall between cluster and submitting host) sends into the
  void: the display then shows the job state only, and the run is
  unaffected.  Set ``DATAPREP_PROGRESS_HOST`` to the driver's address the
  workers can reach when the host name does not resolve to it.

Only display numbers travel this way; the run report's counters always come
from the finished ``PipelineResult``.  A worker process reused by a later
job reports from the moment that job's scan starts in it (its earlier
totals are subtracted).
"""
import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
import weakref
from dataclasses import dataclass

PREFIX = "dataprep."
SEND_INTERVAL = 0.5      # seconds between a worker's datagrams
MAX_DATAGRAM = 60_000    # bytes; our counters' totals take a few hundred


def counter_name(namespace: str, name: str) -> str | None:
    """``dataprep.read`` / ``records`` -> ``read/records``; None outside our namespaces."""
    return f"{namespace[len(PREFIX):]}/{name}" if namespace.startswith(PREFIX) else None


def user_counters(infos):
    """``(name, value, step)`` of our user counters among monitoring infos."""
    from apache_beam.metrics import monitoring_infos
    for info in infos:
        if info.urn != monitoring_infos.USER_COUNTER_URN:
            continue
        name = counter_name(info.labels.get("NAMESPACE", ""), info.labels.get("NAME", ""))
        if name:
            yield name, int(monitoring_infos.extract_counter_value(info)), \
                info.labels.get("PTRANSFORM", "")


class CounterTap:
    """Our user counters of every bundle an SDK harness in this process runs.

    Attached to the harness's ``BundleProcessorCache``s (one per harness): a
    finished bundle's counters are added up when the cache releases its
    processor (a wrapper around ``BundleProcessorCache.release``, the one
    place every successful bundle passes, before the processor is reset), and
    ``read()`` adds the counters of the bundles still running.  Both happen
    under one lock, so a bundle is never counted twice or not at all.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._finished: dict[str, int] = {}
        self._caches: list = []          # weak references
        self._stage_step: str | None = None
        self._last: dict[tuple, int] = {}

    # -- attaching ----------------------------------------------------------

    def attach(self, cache) -> None:
        with self._lock:
            if not any(ref() is cache for ref in self._caches):
                self._caches.append(weakref.ref(cache))

    def _on_release(self, cache, instruction_id, original):
        with self._lock:
            if not any(ref() is cache for ref in self._caches):
                self._caches.append(weakref.ref(cache))
            entry = cache.active_bundle_processors.get(instruction_id)
            if entry is not None:
                with contextlib.suppress(Exception):
                    for name, value, step in user_counters(entry[1].monitoring_infos()):
                        self._finished[name] = self._finished.get(name, 0) + value
                        if value and step:
                            self._stage_step = step
            return original(cache, instruction_id)

    def _hooks(self):
        from apache_beam.runners.worker import sdk_worker
        cls = sdk_worker.BundleProcessorCache
        tap = self
        original_init, original_release = cls.__init__, cls.release

        def __init__(cache, *args, **kwargs):
            original_init(cache, *args, **kwargs)
            tap.attach(cache)

        def release(cache, instruction_id):
            return tap._on_release(cache, instruction_id, original_release)

        return cls, (original_init, original_release), (__init__, release)

    @contextlib.contextmanager
    def installed(self):
        """The tap on every harness created or releasing a bundle in this process while
        the block runs (LOOPBACK: the runner's workers are started inside it)."""
        try:
            cls, originals, hooks = self._hooks()
        except (ImportError, AttributeError):  # pragma: no cover - another Beam layout
            yield self
            return
        cls.__init__, cls.release = hooks
        try:
            yield self
        finally:
            cls.__init__, cls.release = originals

    def install_for_process(self) -> None:
        """The tap for the rest of this process's life (an SDK worker process), attached
        to the harness whose bundle is running in the calling thread."""
        cls, _, hooks = self._hooks()
        cls.__init__, cls.release = hooks
        cache = _running_cache()
        if cache is not None:
            self.attach(cache)

    # -- reading ------------------------------------------------------------

    def read(self) -> tuple[dict[str, int], str | None]:
        """``(counter totals, step)``: finished bundles plus the running ones; the step
        is one whose running counters grew since the last read, else the step of
        the last finished bundle that counted something."""
        with self._lock:
            totals = dict(self._finished)
            moved, current = None, {}
            for ref in self._caches:
                cache = ref()
                if cache is None:
                    continue
                for instruction, (_, processor) in list(cache.active_bundle_processors.items()):
                    try:
                        infos = processor.monitoring_infos()
                    except Exception:  # noqa: BLE001 - a bundle processor mid-reset
                        continue
                    for name, value, step in user_counters(infos):
                        totals[name] = totals.get(name, 0) + value
                        key = (instruction, step, name)
                        current[key] = value
                        if value != self._last.get(key, 0) and step:
                            moved = step
            self._last = current
            return totals, moved or self._stage_step


def _running_cache():
    """The ``BundleProcessorCache`` of the SdkWorker whose ``process_bundle`` is on the
    calling thread's stack (a DoFn's ``setup`` runs inside it), else None."""
    try:
        from apache_beam.runners.worker import sdk_worker
    except ImportError:  # pragma: no cover
        return None
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, sdk_worker.SdkWorker):
            return owner.bundle_processor_cache
        if isinstance(owner, sdk_worker.BundleProcessorCache):
            return owner
        frame = frame.f_back
    return None


# ---------------------------------------------------------------- the wire


@dataclass(frozen=True)
class Datagram:
    """One worker process's totals: ``token`` names the run (the receiver drops other
    runs'), ``worker`` the process, ``seq`` orders its datagrams."""
    token: str
    worker: str
    seq: int
    totals: dict
    step: str | None

    def encode(self) -> bytes:
        return json.dumps({"token": self.token, "worker": self.worker, "seq": self.seq,
                           "totals": self.totals, "step": self.step},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> "Datagram | None":
        try:
            d = json.loads(data)
            totals = {str(k): int(v) for k, v in d["totals"].items()}
            return cls(str(d["token"]), str(d["worker"]), int(d["seq"]), totals,
                       d.get("step") if isinstance(d.get("step"), str) else None)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def _advertised_host() -> str:
    host = os.environ.get("DATAPREP_PROGRESS_HOST")
    if host:
        return host
    with contextlib.suppress(OSError):
        return socket.gethostbyname(socket.gethostname())
    return "127.0.0.1"


class Receiver:
    """The driver's end: a UDP socket on every interface, summing the latest datagram of
    every worker process of one run.  ``address`` (``host:port/token``) goes to the
    workers (``CorpusConfig.live_counters``); ``read()`` gives ``(totals, step)``."""

    def __init__(self, host: str | None = None):
        self.token = uuid.uuid4().hex
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("0.0.0.0", 0))
        self._sock.settimeout(0.2)
        self.address = f"{host or _advertised_host()}:{self._sock.getsockname()[1]}/{self.token}"
        self._lock = threading.Lock()
        self._latest: dict[str, Datagram] = {}
        self._step: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"{__name__}.Receiver",
                                        daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except (socket.timeout, OSError):
                continue
            self.take(data)

    def take(self, data: bytes) -> None:
        gram = Datagram.decode(data)
        if gram is None or gram.token != self.token:
            return
        with self._lock:
            old = self._latest.get(gram.worker)
            if old is not None and old.seq >= gram.seq:
                return   # UDP may reorder
            self._latest[gram.worker] = gram
            if gram.step and (old is None or old.step != gram.step or old.totals != gram.totals):
                self._step = gram.step

    def read(self) -> tuple[dict[str, int], str | None]:
        with self._lock:
            totals: dict[str, int] = {}
            for gram in self._latest.values():
                for name, value in gram.totals.items():
                    totals[name] = totals.get(name, 0) + value
            return totals, self._step

    @property
    def workers(self) -> int:
        with self._lock:
            return len(self._latest)

    def close(self):
        """Stop listening (again: nothing)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Sender:
    """A worker process's end: every ``SEND_INTERVAL`` s, its totals since it started
    (less what the process had counted before), when they changed or every 5 s."""

    def __init__(self, address: str, tap: CounterTap, base: dict | None = None):
        hostport, _, self.token = address.partition("/")
        host, _, port = hostport.rpartition(":")
        self.target = (host, int(port))
        self.tap = tap
        self.base = tap.read()[0] if base is None else base
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.seq = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        threading.Thread(target=self._loop, name=f"{__name__}.Sender", daemon=True).start()

    def _loop(self):
        last, sent_at = None, 0.0
        while True:
            time.sleep(SEND_INTERVAL)
            totals, step = self.tap.read()
            totals = {k: v - self.base.get(k, 0) for k, v in totals.items()}
            now = time.monotonic()
            if (totals, step) == last and now - sent_at < 5:
                continue
            self.seq += 1
            with contextlib.suppress(OSError):
                self.sock.sendto(Datagram(self.token, self.worker, self.seq, totals,
                                          step).encode(), self.target)
            last, sent_at = (totals, step), now


_process_lock = threading.Lock()
_process_tap: CounterTap | None = None
_senders: dict[str, _Sender] = {}


def send_to(address: str | None) -> None:
    """In an SDK worker: send this process's counter totals to the driver at
    ``address`` (``host:port/token``, from ``Receiver.address``) from now on.
    Idempotent and cheap; call it from a DoFn's ``setup``.  None: do nothing."""
    global _process_tap
    if not address:
        return
    with _process_lock:
        if address in _senders:
            return
        try:
            if _process_tap is None:
                tap = CounterTap()
                tap.install_for_process()
                _process_tap = tap
            else:
                cache = _running_cache()
                if cache is not None:
                    _process_tap.attach(cache)
            _senders[address] = _Sender(address, _process_tap)
        except Exception:  # noqa: BLE001 - a display aid must never fail the job
            _senders[address] = None
