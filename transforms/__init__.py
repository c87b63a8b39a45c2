"""Reusable beam-dataprep PTransforms and the pure functions behind them.

Importing any of them guards the multi-process DirectRunner against a Beam
data-plane race that silently drops bundle input (``transforms.runner_guards``):
every pipeline built from these transforms gets the guard, not only near-dedup.
"""
from transforms.runner_guards import guard_direct_runner_data_plane

guard_direct_runner_data_plane()

from transforms.array_store import WriteArrayStore, load_array
from transforms.dedup import ExactDedup
from transforms.io import ReadJsonl
from transforms.partition import PartitionByField, RangePartition, StableHashPartition
from transforms.store import ReadStore, WriteStore, load_manifest, verify_store

__all__ = ["ExactDedup", "PartitionByField", "RangePartition", "ReadJsonl", "ReadStore",
           "StableHashPartition",
           "WriteArrayStore", "WriteStore", "load_array", "load_manifest", "verify_store"]
