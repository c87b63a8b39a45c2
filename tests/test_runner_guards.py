"""The multi-process DirectRunner's data plane: the race that dropped bundle input, and its guard.

The FnApiRunner writes a bundle's materialized input chunk by chunk into the
stream that ``_GrpcDataChannel.output_stream`` returns; these tests drive that
same stream while its send queue is full (a put that blocks), which is what
happened when a 200 MB join input met the runner's 100 MB send queue.
"""
import inspect
import subprocess
import sys
import time

from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.runners.worker import data_plane

from transforms.runner_guards import guard_direct_runner_data_plane

CHUNK = 64 * 1024
CHUNKS = 150


def _bytes_sent_while_queue_is_full(time_limit_ms: int) -> tuple[int, object]:
    """Write CHUNKS chunks of one bundle input as ``BundleManager._send_input_to_worker``
    does; every send blocks 50 ms -> (bytes that reached the send queue, the stream)."""
    channel = data_plane._GrpcDataChannel(time_limit_ms)
    sent = []

    def full_send_queue(element):
        sent.append(len(element.data))
        time.sleep(0.05)

    channel._enqueue_to_send = full_send_queue
    stream = channel.output_stream("bundle_1", "JoinRoots/Flatten/Read")
    for _ in range(CHUNKS):
        stream.write(b"x" * CHUNK)
        time.sleep(0.002)
    stream.close()
    return sum(sent), stream


def test_beams_timed_flush_drops_chunks_written_while_it_sends():
    """The bug (Beam 2.77): the flush thread clears chunks it never sent.  If this
    ever fails after a Beam upgrade, the race is fixed upstream and the guard can go."""
    sent, stream = _bytes_sent_while_queue_is_full(time_limit_ms=20)
    assert isinstance(stream, data_plane.TimeBasedBufferingClosableOutputStream)
    assert sent < CHUNK * CHUNKS


def test_guard_leaves_the_runner_stream_without_a_flush_thread_and_loses_nothing():
    guard_direct_runner_data_plane()
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 0
    sent, stream = _bytes_sent_while_queue_is_full(worker_handlers.DATA_BUFFER_TIME_LIMIT_MS)
    assert not isinstance(stream, data_plane.TimeBasedBufferingClosableOutputStream)
    assert sent == CHUNK * CHUNKS


def test_the_runner_reads_the_guarded_limit_when_it_starts_its_data_server():
    """The guard sets a module constant; it works only while the runner reads it late."""
    source = inspect.getsource(worker_handlers.GrpcServer.__init__)
    assert "BeamFnDataServicer(\n        DATA_BUFFER_TIME_LIMIT_MS)" in source


def test_every_job_gets_the_guard_not_only_near_dedup():
    """compress_arrays sends array blocks, the largest bundle inputs of all."""
    code = ("import pipelines.compress_arrays; "
            "from apache_beam.runners.portability.fn_api_runner import worker_handlers; "
            "print(worker_handlers.DATA_BUFFER_TIME_LIMIT_MS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split()[-1] == "0"
