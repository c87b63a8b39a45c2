"""Runnable beam-dataprep jobs: ``python -m pipelines`` (or ``dataprep``) lists them."""

from transforms import __version__  # noqa: F401 - written once, in transforms/__init__.py
# (importing transforms also drops Beam's "apitools not found" import warning)
