"""Pytest wiring: which runner the pipeline tests use.

Pipeline tests take their Beam options from a run config named by
``--run_config`` (pytest option) or ``$DATAPREP_RUN_CONFIG``, default
``direct``; so the same tests run on every runner:

    python -m pytest tests --run_config run_configs/flink_local.yaml

The services the config needs (a Flink or Spark job server, an EXTERNAL worker
pool) start once per test session and every test's jobs share them: the
``run_config`` fixture is then a copy of the config with ``job_endpoint``
added.  A service that cannot start fails the tests; nothing is skipped.
"""
import os

import pytest
from hypothesis import settings
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines import run_config as run_configs
from pipelines.job_services import RunnerServices
from transforms.processing.runner_guards import keep_direct_runner_local


_RUN_CONFIG_SHOWN: dict = {}   # the session's --run_config, for pytest_runtest_logreport


def pytest_configure(config):
    _RUN_CONFIG_SHOWN["name"] = (config.getoption("--run_config") or run_configs.env_config()
                                 or "direct")
    config.addinivalue_line(
        "markers", "cross_runner: runs on every runner in CI (scripts/test_runners.sh); the "
        "rest of the pipeline suite runs on direct and the runners in $FULL_SUITE_ON")
    config.addinivalue_line(
        "markers", "standalone_cluster: of the cross_runner tests, those CI runs on the "
        "standalone Flink and Spark clusters (scripts/test_runners.sh): the identity of "
        "the jobs' stores, failures, read-back and progress; the other cross_runner tests "
        "run on the embedded configs (flink_local, spark_local): each once per engine")


def pytest_xdist_auto_num_workers(config) -> int:
    """``pytest -n auto`` (pytest-xdist): one worker per core and one more, at most 6.

    Much of the suite waits rather than computes: the CLI tests start Python and
    Beam in a subprocess, the runner tests wait on a job server, the Ctrl-C tests
    on a moment of the run; a worker more than the cores keeps the cores busy.
    At most 6: each worker's jobs may start two SDK worker processes.
    """
    return min((os.cpu_count() or 1) + 1, 6)


# Tests never time themselves (speed is measured in benchmarks/): no Hypothesis deadline,
# which a loaded machine (CI beside its runner builds) would turn into failures.
settings.register_profile("dataprep", deadline=None)
settings.load_profile("dataprep")


@pytest.fixture(autouse=True)
def _sigint_as_at_start():
    """Each test starts as a process does: SIGINT's default handler, no Ctrl-C held or
    being handled (``pipelines.progress``'s hold state).  A test that ran a job's pieces
    to a Ctrl-C in this process may leave either, and under pytest-xdist any later test
    of that worker would start with it."""
    import signal
    import threading

    from pipelines import progress
    progress._HOLD.update(depth=0, pending=False, previous=None, late=False, handling=False)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(autouse=True)
def _commit_gate_open():
    """Each test starts with this process's commit gate open: a test that ran a job's
    pieces (``progress.run_pipeline``) to a failure or a Ctrl-C in-process closed it,
    and under pytest-xdist any later test of that worker may commit."""
    from transforms.storage.commit import open_commit_gate
    open_commit_gate()
    yield


def pytest_collectreport(report):
    """A test module that cannot be collected (an import error): listed as a failure too."""
    pytest_runtest_logreport(report)


def pytest_runtest_logreport(report):
    """A failed test's id and first error line, appended to ``$DATAPREP_FAILED_TESTS``
    when set (scripts/steps.sh sets it: CI repeats the lines after its table of
    steps, where the end of a long log shows them).  Written by the controller only
    under pytest-xdist (it receives every worker's reports)."""
    path = os.environ.get("DATAPREP_FAILED_TESTS")
    if not path or not report.failed or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    message = (getattr(crash, "message", "") or str(report.longrepr or "")).strip()
    first = message.splitlines()[0][:300] if message else ""
    runner = _RUN_CONFIG_SHOWN.get("name", "direct")
    when = getattr(report, "when", "collect")   # a CollectReport has none
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"FAILED [{runner}] {report.nodeid} ({when}) - {first}\n")


def pytest_addoption(parser):
    parser.addoption("--run_config", default=None,
                     help="run config (path or name in run_configs/) for pipeline tests")


@pytest.fixture(scope="session")
def runner_services(request, tmp_path_factory):
    """The job server / worker pool of the configured runner, started on first use."""
    name = request.config.getoption("--run_config") or run_configs.env_config() or "direct"
    path = run_configs.resolve(name)
    services = RunnerServices(run_configs.flags_from(path),
                              log_dir=str(tmp_path_factory.mktemp("runner-services")))
    services.config_path = path
    with services:
        yield services


@pytest.fixture(scope="session")
def run_config(runner_services, tmp_path_factory) -> str:
    """Path of the run config the pipeline tests use (with shared services filled in)."""
    if not runner_services.extra_options:
        return runner_services.config_path
    config = {**run_configs.load(runner_services.config_path), **runner_services.extra_options}
    return run_configs.write(config, str(tmp_path_factory.mktemp("run-config") / "shared.yaml"))


@pytest.fixture(scope="session")
def beam_flags(run_config) -> list[str]:
    return run_configs.flags_from(run_config)


@pytest.fixture
def make_pipeline(beam_flags):
    """``make_pipeline()`` -> a TestPipeline on the configured runner (a DirectRunner kept
    on the FnApiRunner, as our jobs keep it: ``runner_guards.keep_direct_runner_local``)."""
    def make():
        pipeline = TestPipeline(options=PipelineOptions(beam_flags), blocking=True)
        keep_direct_runner_local(pipeline)
        return pipeline
    return make


RUNNER_FIXTURES = {"run_config", "beam_flags", "make_pipeline", "runner_services"}


def pytest_collection_modifyitems(config, items):
    """On a runner other than the default, run only the tests that use the runner.

    Pure-function tests give the same result whatever ``--run_config`` says;
    CI runs them once (on the default direct config) and the pipeline tests on
    every runner.  Deselected tests are counted in pytest's summary line.
    """
    name = config.getoption("--run_config") or run_configs.env_config()
    if not name or run_configs.resolve(name) == run_configs.resolve("direct"):
        return
    keep, drop = [], []
    for item in items:
        uses_runner = RUNNER_FIXTURES & set(getattr(item, "fixturenames", ()))
        (keep if uses_runner else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
