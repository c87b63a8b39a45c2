"""Pytest wiring: which runner the pipeline tests use.

Pipeline tests take their Beam options from a run config named by
``--run_config`` (pytest option) or ``$DATAPREP_RUN_CONFIG``, default
``direct``; so the same tests run on every runner:

    python -m pytest tests --run_config run_configs/flink_local.yaml
"""
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines import run_config as run_configs


def pytest_addoption(parser):
    parser.addoption("--run_config", default=None,
                     help="run config (path or name in run_configs/) for pipeline tests")


@pytest.fixture(scope="session")
def run_config(request) -> str:
    """Path of the run config the pipeline tests use."""
    name = request.config.getoption("--run_config") or run_configs.env_config() or "direct"
    return run_configs.resolve(name)


@pytest.fixture(scope="session")
def beam_flags(run_config) -> list[str]:
    return run_configs.flags_from(run_config)


@pytest.fixture
def make_pipeline(beam_flags):
    """``make_pipeline()`` -> a TestPipeline on the configured runner."""
    return lambda: TestPipeline(options=PipelineOptions(beam_flags), blocking=True)
