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

import pytest

from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.runners.worker import data_plane

from transforms.processing.runner_guards import guard_direct_runner_data_plane

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


def _limit_after_a_job(mode: str) -> int:
    """Run a tiny pipeline through the jobs' runner (``progress.run_pipeline``) in a
    fresh interpreter -> the data-plane time limit the runner then used."""
    code = (
        "import apache_beam as beam\n"
        "from apache_beam.options.pipeline_options import PipelineOptions\n"
        "from apache_beam.runners.portability.fn_api_runner import worker_handlers\n"
        "import pipelines.compress_arrays, pipelines.prepare_corpus\n"
        "from pipelines import progress\n"
        "before = worker_handlers.DATA_BUFFER_TIME_LIMIT_MS\n"
        "p = beam.Pipeline(options=PipelineOptions(['--runner=DirectRunner',"
        f" '--direct_running_mode={mode}', '--direct_num_workers=1']))\n"
        "_ = p | beam.Create([1, 2]) | beam.Map(lambda x: x)\n"
        "progress.run_pipeline(p, job='t', stream=open('/dev/null', 'w'))\n"
        "print(before, worker_handlers.DATA_BUFFER_TIME_LIMIT_MS)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    before, after = map(int, out.split()[-2:])
    assert before == 1000, "importing the jobs must not change the runner"
    return after


def test_every_job_run_in_multi_processing_mode_gets_the_guard():
    assert _limit_after_a_job("multi_processing") == 0


def test_the_guard_is_not_applied_where_the_race_cannot_happen():
    assert _limit_after_a_job("in_memory") == 1000


def test_guard_pipeline_reads_the_runner_and_mode_from_the_options():
    from apache_beam.options.pipeline_options import PipelineOptions

    from transforms.processing.runner_guards import uses_multiprocess_direct_runner
    assert uses_multiprocess_direct_runner(PipelineOptions(
        ["--direct_running_mode=multi_processing"]))
    assert uses_multiprocess_direct_runner(PipelineOptions(
        ["--runner=DirectRunner", "--direct_running_mode=multi_processing"]))
    assert not uses_multiprocess_direct_runner(PipelineOptions(
        ["--runner=DirectRunner", "--direct_running_mode=in_memory"]))
    assert not uses_multiprocess_direct_runner(PipelineOptions(
        ["--runner=PortableRunner", "--direct_running_mode=multi_processing"]))


class _PrismTried(Exception):
    pass


def _record_prism_attempts(monkeypatch) -> list:
    """PrismRunner.run_pipeline replaced by one that records the attempt and raises
    (as Beam's download does offline, so the DirectRunner falls back)."""
    from apache_beam.runners.portability import prism_runner
    tried = []

    def refuse(self, pipeline, options):
        tried.append(type(self).__name__)
        raise _PrismTried("no Prism here")
    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", refuse)
    return tried


def _tiny_pipeline(out, mode="in_memory"):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    p = beam.Pipeline(options=PipelineOptions(
        ["--runner=DirectRunner", f"--direct_running_mode={mode}", "--direct_num_workers=1"]))
    _ = (p | beam.Create(["a", "b"]) | beam.Map(str.upper)
         | beam.io.WriteToText(str(out), shard_name_template=""))
    return p


def test_beams_direct_runner_tries_prism_first(tmp_path, monkeypatch):
    """What Beam 2.77 does without the guard: if this fails after a Beam upgrade, the
    DirectRunner no longer picks Prism by itself and keep_direct_runner_local can go."""
    tried = _record_prism_attempts(monkeypatch)
    _tiny_pipeline(tmp_path / "out.txt").run().wait_until_finish()
    assert tried == ["PrismRunner"]
    assert (tmp_path / "out.txt").read_text().split() == ["A", "B"]   # after falling back


@pytest.mark.parametrize("mode", ["in_memory", "multi_processing"])
def test_a_job_on_the_direct_runner_never_tries_prism(tmp_path, monkeypatch, mode):
    import io

    from pipelines import progress
    tried = _record_prism_attempts(monkeypatch)
    p = _tiny_pipeline(tmp_path / "out.txt", mode)
    progress.run_pipeline(p, job="t", stream=io.StringIO())
    assert tried == []
    assert (tmp_path / "out.txt").read_text().split() == ["A", "B"]


def test_keep_direct_runner_local_leaves_other_runners_alone():
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.processing.runner_guards import keep_direct_runner_local
    direct = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
    assert keep_direct_runner_local(direct)
    assert keep_direct_runner_local(beam.Pipeline(options=PipelineOptions([])))  # the default
    assert not keep_direct_runner_local(beam.Pipeline(runner=FnApiRunner()))
