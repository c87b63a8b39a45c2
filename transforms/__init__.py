"""Reusable beam-dataprep PTransforms and the pure functions behind them."""
from transforms.array_store import WriteArrayStore, load_array
from transforms.dedup import ExactDedup
from transforms.io import ReadJsonl
from transforms.partition import PartitionByField, RangePartition, StableHashPartition
from transforms.store import ReadStore, WriteStore, load_manifest, verify_store

__all__ = ["ExactDedup", "PartitionByField", "RangePartition", "ReadJsonl", "ReadStore",
           "StableHashPartition",
           "WriteArrayStore", "WriteStore", "load_array", "load_manifest", "verify_store"]
