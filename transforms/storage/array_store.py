"""Array stores: row blocks of one array, encoded, as shards of the replicated store.

Each shard is one block: ``shard-00003-of-00010.bdparr`` holds the encoded
rows ``[row_start, row_start + records)`` in the self-describing container of
``transforms.core.codecs`` (its header names dtype, shape and codec, so a user
without this package can read it).  The manifest (``kind: "array"``) records
the array's dtype and shape, the block layout, the codec with its parameters
and the error measured on a sample of every block (exact for lossless codecs).

``load_array(store_path)`` gives the array back (same dtype and shape, rows in
order, bit-exact for lossless codecs), reading every block from a verified
replica; ``ReadStore`` yields ``(first row, block)`` pairs of such a store.
"""
import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from transforms.core.codecs import array_codec, combine_metrics
from transforms.storage.placement import Root, place
from transforms.core.hashing import checksum
from transforms.storage.store import (
    ARRAY_SUFFIX, NAMESPACE, ConcurrentWriteError, StoreError, build_manifest, check_dataset_name, check_roots,
    commit_generation, commit_replicas, committed_digest, discard_uncommitted, load_manifest,
    normalise_root, parse_root_map, read_shard_verified, shard_name)

ARRAY_NAMESPACE = "dataprep.arrays"


class _EncodeAndWriteBlock(beam.DoFn):
    """(index, first row, block) -> encoded, measured, written to R roots -> shard entry."""

    def __init__(self, dataset, roots, replication, codec_spec, num_blocks):
        self.dataset = dataset
        self.roots = roots
        self.replication = replication
        self.codec_spec = codec_spec
        self.num_blocks = num_blocks
        self.shards = Metrics.counter(NAMESPACE, "shards")
        self.replicas = Metrics.counter(NAMESPACE, "replicas_written")
        self.rows = Metrics.counter(ARRAY_NAMESPACE, "rows_stored")
        self.raw = Metrics.counter(ARRAY_NAMESPACE, "raw_bytes")
        self.stored = Metrics.counter(ARRAY_NAMESPACE, "stored_bytes")

    def setup(self):
        self.codec = array_codec(self.codec_spec)

    def process(self, element):
        index, row_start, block = element
        stored = self.codec.encode(block)
        plain = shard_name(index, self.num_blocks, ARRAY_SUFFIX)
        name = shard_name(index, self.num_blocks, ARRAY_SUFFIX, checksum(stored))
        replicas = place(f"{self.dataset}/{plain}", self.roots, self.replication)
        entry = {"name": name, "index": index, "row_start": row_start,
                 "records": int(block.shape[0]), "raw_bytes": int(block.nbytes),
                 **commit_replicas(stored, self.dataset, name, replicas,
                                   [r.uri for r in self.roots]),
                 "dtype": block.dtype.str, "trailing": list(block.shape[1:])}
        self.replicas.inc(len(replicas))
        self.shards.inc()
        self.rows.inc(block.shape[0])
        self.raw.inc(block.nbytes)
        self.stored.inc(len(stored))
        if not self.codec.lossless:
            entry["error"] = self.codec.measure(block)
        yield entry


def array_manifest_fields(shards: list[dict], block_rows: int) -> tuple[list[dict], dict]:
    """Shard entries without per-block dtype/shape, and the array's description.

    Every block must agree on dtype and trailing shape (a ``--map`` function
    could break that); blocks must tile the rows without gaps.
    """
    shards = sorted(shards, key=lambda s: s["index"])
    kinds = {(s["dtype"], tuple(s["trailing"])) for s in shards}
    if len(kinds) != 1:
        examples = sorted(f"{s['name']}: {s['dtype']} x {tuple(s['trailing'])}" for s in shards)
        raise ValueError("blocks disagree on dtype or trailing shape (after --map?): "
                         + "; ".join(examples[:6]))
    expected = 0
    for s in shards:
        if s["row_start"] != expected:
            raise ValueError(f"block {s['name']} starts at row {s['row_start']}, expected "
                             f"{expected}")
        expected += s["records"]
    (dtype, trailing), = kinds
    array = {"dtype": dtype, "shape": [expected, *trailing], "order": "C",
             "block_rows": block_rows, "blocks": len(shards)}
    errors = [s.get("error") for s in shards]
    cleaned = [{k: v for k, v in s.items() if k not in ("dtype", "trailing")} for s in shards]
    return cleaned, {"array": array, "error": combine_metrics(errors)}


class _WriteArrayManifest(beam.DoFn):
    def __init__(self, dataset, roots, replication, codec, block_rows, extra, base):
        self.base = base
        self.dataset = dataset
        self.roots = roots
        self.replication = replication
        self.codec = codec
        self.block_rows = block_rows
        self.extra = extra

    def process(self, shards):
        uris = [r.uri for r in self.roots]
        try:
            cleaned, fields = array_manifest_fields(shards, self.block_rows)
        except ValueError as err:
            discard_uncommitted(shards, self.dataset, uris)
            raise RuntimeError(f"not writing the manifest: {err}") from None
        extra = {"kind": "array", **fields, **self.extra}
        manifest = build_manifest(self.dataset, uris, self.replication, self.codec, cleaned,
                                  extra)
        try:
            yield commit_generation(manifest, self.dataset, uris, self.base)
        except ConcurrentWriteError:
            discard_uncommitted(shards, self.dataset, uris)
            raise


class WriteArrayStore(beam.PTransform):
    """``(block index, first row, ndarray)`` -> an array store; outputs the manifest.

    ``num_blocks`` is the number of blocks that will arrive (it is in every
    shard name); ``codec`` is an array codec spec (``transforms.core.codecs``).
    """

    def __init__(self, roots: list[Root], dataset: str, replication: int, codec: str,
                 num_blocks: int, block_rows: int, manifest_extra: dict | None = None):
        super().__init__()
        check_dataset_name(dataset)
        self.roots = [Root(normalise_root(r.uri), r.weight) for r in roots]
        check_roots([r.uri for r in self.roots], dataset)
        place("probe", self.roots, replication)
        # the generation this run replaces: the commit is a compare-and-swap on it
        self.base = committed_digest([r.uri for r in self.roots], dataset)
        self.dataset = dataset
        self.replication = replication
        self.codec = array_codec(codec)
        self.num_blocks = num_blocks
        self.block_rows = block_rows
        self.manifest_extra = manifest_extra or {}

    def expand(self, blocks):
        return (
            blocks
            | "EncodeAndWrite" >> beam.ParDo(_EncodeAndWriteBlock(
                self.dataset, self.roots, self.replication, self.codec.spec, self.num_blocks))
            | "BlockList" >> beam.combiners.ToList()
            | "WriteManifest" >> beam.ParDo(_WriteArrayManifest(
                self.dataset, self.roots, self.replication, self.codec.describe(),
                self.block_rows, self.manifest_extra, self.base)))


def load_array(store_path: str, root_map=None) -> np.ndarray:
    """The array of an array store: same dtype and shape, rows in order.

    Every block comes from a replica whose size and xxh3-128 checksum match the
    manifest (failing over to the next replica); lossless codecs are bit-exact.
    The manifest is the newest valid generation on any root; ``root_map``
    (``OLD=NEW,...``) says where moved roots are now.
    """
    root_map = parse_root_map(root_map)
    manifest = load_manifest(store_path, root_map)
    if manifest.get("kind") != "array":
        raise StoreError(f"{store_path} is a {manifest.get('kind', 'text')!r} store, "
                         "not an array store")
    info = manifest["array"]
    dtype, shape = np.dtype(info["dtype"]), tuple(info["shape"])
    out = np.empty(shape, dtype=dtype)
    for shard in sorted(manifest["shards"], key=lambda s: s["row_start"]):
        block = read_shard_verified(manifest, store_path, shard, root_map=root_map)
        if block.dtype != dtype or block.shape[1:] != shape[1:]:
            raise StoreError(f"shard {shard['name']} holds {block.dtype}{block.shape}; the "
                             f"manifest says {dtype} rows of {shape[1:]}")
        out[shard["row_start"]:shard["row_start"] + shard["records"]] = block
    return out
