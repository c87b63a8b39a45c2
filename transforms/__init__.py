"""Reusable beam-dataprep PTransforms and the pure functions behind them.

The package is layered by concern (``tests/test_layering.py`` enforces it):

* ``transforms.core``: pure, importable without Beam (hashing, ids, records, codecs);
* ``transforms.storage``: the replicated sharded store (imports only ``core``);
* ``transforms.processing``: reading, the scan into refs, partitioning, components;
* ``transforms.reduction``: exact and near dedup, filters, codec choice;
* ``transforms.prepare``: the ``PrepareCorpus`` composite (the whole job).

The names below are the public API, imported lazily (``import transforms`` loads
no Beam).  Pipelines run on the multi-process DirectRunner should call
``guard_pipeline(options)`` first (see ``transforms.processing.runner_guards``).
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
    "load_array": "transforms.storage.array_store",
    "load_manifest": "transforms.storage.store",
    "verify_store": "transforms.storage.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'transforms' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
