"""Run configs: YAML files of Beam PipelineOptions, turned into command-line flags.

A run config is a mapping ``option: value`` where every key is a flag that
Beam's PipelineOptions knows (``runner``, ``direct_num_workers``,
``flink_master``...).  Values become flags placed *before* the user's own
flags, so anything on the command line overrides the file.  A path starting
with ``~/`` is under the user's home (``prism_location: ~/.apache_beam/...``),
also inside a value after ``=`` or ``:`` (``-Dspark.executor.extraClassPath=~/a:~/b``
in ``job_server_jvm_properties``), so one config works for every user.
"""
import os
import re

import yaml
from apache_beam.options.pipeline_options import PipelineOptions

ENV_VAR = "DATAPREP_RUN_CONFIG"
# Shipped run configs are package data (pipelines/run_configs/; the checkout's top-level
# run_configs/ is a link to it), so names resolve from any folder after a wheel install.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_configs")


class RunConfigError(ValueError):
    pass


def known_beam_options() -> set[str]:
    return set(PipelineOptions([]).get_all_options(drop_default=False).keys())


def resolve(path: str) -> str:
    """A path as given, or a bare name (``flink_local``) looked up in run_configs/."""
    if os.path.exists(path):
        return path
    for candidate in (os.path.join(CONFIG_DIR, path), os.path.join(CONFIG_DIR, f"{path}.yaml")):
        if os.path.exists(candidate):
            return candidate
    raise RunConfigError(f"run config not found: {path} (a YAML file, or one of the shipped "
                         f"{', '.join(shipped())})")


def shipped() -> list[str]:
    """Names of the run configs in the package (``direct``, ``flink_local``, ...)."""
    return sorted(n[:-5] for n in os.listdir(CONFIG_DIR) if n.endswith(".yaml"))


def load(path: str) -> dict:
    path = resolve(path)
    with open(path, encoding="utf-8") as f:
        try:
            config = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise RunConfigError(f"run config {path} is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise RunConfigError(f"run config {path} must be a mapping of option: value")
    unknown = sorted(set(config) - known_beam_options())
    if unknown:
        raise RunConfigError(
            f"run config {path} has unknown option(s) {unknown}; keys must be Beam "
            "PipelineOptions flags without the leading '--'")
    return config


_HOME_PATH = re.compile(r"(^|[=:])~/")


def _expand(value):
    if not isinstance(value, str):
        return value
    home = os.path.expanduser("~")
    return _HOME_PATH.sub(lambda m: f"{m.group(1)}{home}/", value)


def to_flags(config: dict) -> list[str]:
    flags = []
    for key, value in config.items():
        value = [_expand(v) for v in value] if isinstance(value, (list, tuple)) else _expand(value)
        if value is None or value is False:
            continue
        if value is True:
            flags.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            flags.extend(f"--{key}={item}" for item in value)
        else:
            flags.append(f"--{key}={value}")
    return flags


def env_config() -> str | None:
    return os.environ.get(ENV_VAR) or None


def flags_from(path: str) -> list[str]:
    return to_flags(load(path))


def write(config: dict, path: str) -> str:
    """Save ``config`` as a run config file (e.g. one with a shared job server added)."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path

