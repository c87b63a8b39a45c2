"""Where a DirectRunner job's wall time goes, stage by stage, in one run.

    python -m benchmarks.stage_timeline pipelines.prepare_corpus --input ... --run_config direct_multiprocess

Runs the job module (``python -m <module> <flags>``) in this process with the
FnApiRunner's ``_execute_bundle`` timed, and prints to stderr, in seconds since the
interpreter started: marks (Beam imported, the runner called, its stages begun, the
runner returned, exit) and one line per bundle (start, end, seconds, the fused stage's
name).  The first stage's time includes starting the worker processes (they start
with the first bundle); the gaps between stages are the runner's own.  The DirectRunner
only (the FnApiRunner); nothing here changes what the job does.
"""
import atexit
import runpy
import sys
import time

import psutil

_T0 = psutil.Process().create_time()


def _now() -> float:
    return time.time() - _T0


def main() -> None:
    marks = [("interpreter started", 0.0), ("stage_timeline running", _now())]
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    marks.append(("Beam imported", _now()))
    runner = fn_runner.FnApiRunner
    bundles = []
    execute, run_pipeline, run_stages = (
        runner._execute_bundle, runner.run_pipeline, runner.run_stages)

    def timed_execute(self, context, manager, bundle_input):
        started = _now()
        try:
            return execute(self, context, manager, bundle_input)
        finally:
            bundles.append((manager.stage.name, started, _now()))

    def timed_run_pipeline(self, *args, **kwargs):
        marks.append(("FnApiRunner.run_pipeline called", _now()))
        try:
            return run_pipeline(self, *args, **kwargs)
        finally:
            marks.append(("FnApiRunner.run_pipeline returned", _now()))

    def timed_run_stages(self, *args, **kwargs):
        marks.append(("stages begin", _now()))
        return run_stages(self, *args, **kwargs)

    runner._execute_bundle = timed_execute
    runner.run_pipeline = timed_run_pipeline
    runner.run_stages = timed_run_stages

    def report():
        marks.append(("exit", _now()))
        for name, at in marks:
            print(f"mark  {at:7.2f}  {name}", file=sys.stderr)
        for name, started, ended in bundles:
            print(f"stage {started:7.2f} {ended:7.2f} {ended - started:6.2f}  {name[:100]}",
                  file=sys.stderr)
        busy = sum(e - s for _, s, e in bundles)
        print(f"bundles {len(bundles)}, {busy:.2f} s in them", file=sys.stderr)
    atexit.register(report)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    if module.startswith("pipelines."):   # run as ``python -m pipelines.<job>`` is
        import pipelines
        from pipelines import warm_workers
        pipelines.started_as_command = lambda: True   # so its workers start warm
        prestart = warm_workers.prestart

        def timed_prestart(count):
            forked = prestart(count)
            marks.append((f"{forked} warm workers forked", _now()))
            return forked
        warm_workers.prestart = timed_prestart
    runpy.run_module(module, run_name="__main__")


if __name__ == "__main__":
    main()
