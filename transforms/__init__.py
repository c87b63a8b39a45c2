"""Reusable beam-dataprep PTransforms and the pure functions behind them.

The package is layered by concern (``tests/test_layering.py`` enforces it):

* ``transforms.core``: pure, importable without Beam (hashing, ids, records, codecs);
* ``transforms.storage``: the replicated sharded store (imports only ``core``);
* ``transforms.processing``: reading, the scan into refs, partitioning, components;
* ``transforms.reduction``: exact and near dedup, filters, codec choice;
* ``transforms.prepare``: the ``PrepareCorpus`` composite (the whole job).

The names below are the public API, imported lazily (``import transforms`` loads
no Beam).  Pipelines run on the multi-process DirectRunner should call
``guard_pipeline(options)`` first, and on any DirectRunner
``keep_direct_runner_local(pipeline)`` (see ``transforms.processing.runner_guards``).
"""
import importlib

# The one place the version is written: pyproject.toml reads it (dynamic version),
# `dataprep --version` and the run report print it.
__version__ = "0.2.0"

_EXPORTS = {
    "CorpusConfig": "transforms.prepare",
    "DedupRecords": "transforms.reduction.record_dedup",
    "ExactDedup": "transforms.reduction.dedup",
    "NearDedupRecords": "transforms.reduction.record_dedup",
    "PartitionByField": "transforms.processing.partition",
    "PrepareCorpus": "transforms.prepare",
    "RangePartition": "transforms.processing.partition",
    "ReadJsonl": "transforms.processing.io",
    "ReadStore": "transforms.storage.store",
    "RemoveNearDuplicates": "transforms.reduction.near_dedup",
    "StableHashPartition": "transforms.processing.partition",
    "WriteArrayStore": "transforms.storage.array_store",
    "WriteRecords": "transforms.storage.write_records",
    "WriteStore": "transforms.storage.store",
    "guard_pipeline": "transforms.processing.runner_guards",
    "keep_direct_runner_local": "transforms.processing.runner_guards",
    "load_array": "transforms.storage.array_store",
    "load_manifest": "transforms.storage.store",
    "verify_store": "transforms.storage.store",
}

__all__ = sorted(_EXPORTS)


def _quiet_beam_import_warnings() -> None:
    """Drop the one warning Beam logs on import for an extra we do not use.

    apache_beam.io.gcp logs "apitools not found, and bigquery client libraries
    are not available..." through the root logger whenever the ``gcp`` extra is
    absent; it opened every command and every ``from transforms import ...``.
    Only that message is filtered; installed here (no Beam import) so that both
    the jobs and users' own pipelines get it.
    """
    import logging

    class _DropApitools(logging.Filter):
        def filter(self, record):
            return not str(record.msg).startswith("apitools not found")

    logging.getLogger().addFilter(_DropApitools())


_quiet_beam_import_warnings()


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'transforms' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
