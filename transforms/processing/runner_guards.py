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

**Where it is applied.**  Explicitly, never at import: ``guard_pipeline``
is called by every job before it runs (``pipelines.progress.run_pipeline``)
and by the ``PrepareCorpus`` composite when it is expanded, and does something
only when the pipeline's options select the DirectRunner in
``multi_processing`` mode.  Your own pipeline that runs in that mode should
call ``guard_pipeline(options)`` (or ``guard_direct_runner_data_plane()``)
before ``run()``.

**When it can go.**  When ``TimeBasedBufferingClosableOutputStream`` in
``apache_beam/runners/worker/data_plane.py`` holds its lock across
``get()``/``_clear()`` (Beam issue "data plane flush thread races with
writers"; not fixed in 2.77): then ``tests/test_runner_guards.py::
test_beams_timed_flush_drops_chunks_written_while_it_sends`` stops losing chunks on the unguarded
stream, and this module, its calls and that test can be deleted.

**The DirectRunner tries PrismRunner first, downloading it (Beam 2.77).**
``SwitchingDirectRunner.run_pipeline`` runs every pipeline its Prism visitor accepts
(ours among them) on ``PrismRunner``, with the stock binary of GitHub's release page,
downloaded into ``~/.apache_beam/cache/prism/bin`` unless already there (``urlopen``
with no timeout); only if
that raises does it fall back to the FnApiRunner.  So ``--run_config direct`` or
``direct_multiprocess`` would, on a machine that can reach GitHub, run on a
downloaded, unpatched Prism in loopback mode (one process: ``direct_running_mode``
and ``direct_num_workers`` ignored; ``scripts/build_prism.sh`` says what our patch
fixes), and on one behind a firewall that drops packets, hang in the download;
offline (as in CI) it costs a worker-pool server left running and a failed look-up
on every run.  ``keep_direct_runner_local(pipeline)`` calls the runner's
``is_interactive()``, the switch Beam's InteractiveRunner uses to keep the
DirectRunner off Prism (its only effect in ``direct_runner.py``), so the job runs
where its run config says.  Our jobs (``pipelines.progress.run_pipeline``) and the
``PrepareCorpus`` composite apply it beside the data-plane guard.  **When it can
go:** when ``SwitchingDirectRunner`` no longer picks Prism by itself (check
``_PrismRunnerSupportVisitor`` in ``apache_beam/runners/direct/direct_runner.py``)
or takes an option to choose: ``tests/test_runner_guards.py::
test_beams_direct_runner_tries_prism_first`` shows what Beam does without it, and fails
once Beam stops.
"""
from apache_beam.runners.portability.fn_api_runner import worker_handlers


def guard_direct_runner_data_plane() -> None:
    """Send bundle input to DirectRunner worker processes without the racing flush timer.

    Idempotent; harmless for other runners (the constant is only read by the
    FnApiRunner's worker handlers)."""
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


def uses_multiprocess_direct_runner(options) -> bool:
    """Whether ``options`` (Beam ``PipelineOptions``) run on the DirectRunner in
    ``multi_processing`` mode, the mode the race loses data in."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) or runner is None else type(runner).__name__
    if name not in (None, "DirectRunner", "direct", "BundleBasedDirectRunner"):
        return False
    return options.view_as(DirectOptions).direct_running_mode == "multi_processing"


def guard_pipeline(options) -> bool:
    """Apply ``guard_direct_runner_data_plane`` when ``options`` select the
    multi-process DirectRunner; returns whether it did."""
    if uses_multiprocess_direct_runner(options):
        guard_direct_runner_data_plane()
        return True
    return False


def keep_direct_runner_local(pipeline) -> bool:
    """Keep ``pipeline`` (a ``beam.Pipeline`` not yet run) on the FnApiRunner when its
    runner is Beam's DirectRunner, instead of the PrismRunner Beam 2.77 tries first
    (downloading its binary; see the module doc).  Returns whether the runner is a
    DirectRunner (and so was switched); any other runner is left alone."""
    from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner
    runner = pipeline.runner
    if not isinstance(runner, SwitchingDirectRunner):
        return False
    runner.is_interactive()   # its one effect: Prism's support visitor answers no
    return True
