"""Runnable beam-dataprep jobs: ``python -m pipelines`` lists them."""
