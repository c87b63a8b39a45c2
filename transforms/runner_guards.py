"""Workarounds for runner bugs that lose data without an error.

**The DirectRunner's multi-process mode drops bundle input (Beam 2.77).** In
``direct_running_mode: multi_processing`` the FnApiRunner sends every bundle's
input to its worker processes over gRPC, through the stream that
``BeamFnDataServicer(DATA_BUFFER_TIME_LIMIT_MS=1000)`` builds: a
``TimeBasedBufferingClosableOutputStream``, flushed every second by a thread of
its own.  ``BundleManager._send_input_to_worker`` writes a materialized input
(a ``ListBuffer``, e.g. the ``Flatten`` in a ``CoGroupByKey`` whose inputs
come from different stages) chunk by chunk into that stream.  The flush thread takes the
buffer (``get()``), hands it to the send queue, which blocks once 100 MB are
queued, and then clears the buffer (``_clear()``); a chunk written meanwhile is
cleared without being sent.  The chunks hold whole elements, so the worker
decodes what arrives without an error, and the join downstream silently misses
values.  On 100k documents 4 runs in 12 went wrong; in one, the runner sent
402.7 of the 413.9 MB of near-dedup's join of documents and component roots,
and the run kept 9,734 near-duplicates and lost 2,554 documents it should have
kept (``tests/test_runner_guards.py`` shows the race on the stream itself).
The in-memory mode has no gRPC stream, so it never loses anything.

``guard_direct_runner_data_plane`` turns that timer off (limit 0: the runner
then builds size-based streams with no thread of their own).  The timer only
lowers latency for streaming pipelines; batch output is the same without it.
Call it before the pipeline runs; it is idempotent and does nothing to other
runners.
"""
from apache_beam.runners.portability.fn_api_runner import worker_handlers


def guard_direct_runner_data_plane() -> None:
    """Send bundle input to DirectRunner worker processes without the racing flush timer."""
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0
