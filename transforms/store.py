"""Replicated sharded store: size-bounded shards on R of N roots, manifest last.

Layout (one dataset written to N roots)::

    <root>/<dataset>/shard-00000-of-00008.jsonl.zst   (on R of the N roots)
    <root>/<dataset>/manifest.json                    (on every root, written last)

A partitioned store (by field value or key range, see ``transforms.partition``)
puts each partition's shards in a folder named by the partition's safe name::

    <root>/<dataset>/<partition>/shard-00000-of-00004.jsonl.zst

and its one manifest also records the scheme, the boundaries or values, the
placement rules and, per partition, its counts and shards, so a reader opens
one partition without listing storage.

What a shard holds is the store's *payload*, named by the manifest's ``kind``:
``text`` shards are sorted JSON Lines compressed by a bytes codec (``.jsonl.zst``,
``.jsonl.gz``, ``.jsonl.lz4`` or ``.jsonl``); ``array`` shards are one encoded
array block each (``.bdparr``, the container of ``transforms.codecs``; written
by ``transforms.array_store``).

Every file is written to a temporary name and renamed into place through
Beam's FileSystems, so a reader never sees a partial file and ``gs://``,
``s3://`` or ``hdfs://`` roots work like local ones.  The manifest lists every
shard with its record count, raw and stored sizes, the xxh3-128 checksum of
the stored bytes and the roots holding its replicas; it is written only after
every replica of every shard is committed, so a store with a manifest is
complete.  Nothing time- or machine-dependent goes into shards or manifest:
a rerun with the same inputs and options is byte-identical.
"""
import bisect
import uuid

import apache_beam as beam
import orjson
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.codecs import CodecError, bytes_codec, decode_array
from transforms.hashing import checksum
from transforms.ids import id_order_key
from transforms.io import join, read_bytes
from transforms.partition import range_name
from transforms.partition_names import MISSING, OTHER, encode_value, is_safe_name
from transforms.placement import Placement, Root, place
from transforms.refs import delete_spill, ref_size, run_docs
from transforms.sharding import AssignBalancedShards, hash_order, line_size

NAMESPACE = "dataprep.store"
MANIFEST = "manifest.json"
FORMAT = "beam-dataprep-store"
FORMAT_VERSION = 1
TEXT_SUFFIX = ".jsonl.zst"
ARRAY_SUFFIX = ".bdparr"


class StoreError(RuntimeError):
    """A store cannot be read or verified (missing manifest, no good replica...)."""


# ---------------------------------------------------------------- paths and files

def normalise_root(uri: str) -> str:
    """Local roots become absolute (a manifest must work from any cwd); URIs stay."""
    if "://" in uri:
        return uri.rstrip("/")
    import os
    return os.path.abspath(uri)


def dataset_dir(root: str, dataset: str) -> str:
    return join(root, dataset)


def shard_name(index: int, count: int, suffix: str = TEXT_SUFFIX) -> str:
    return f"shard-{index:05d}-of-{count:05d}{suffix}"


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary sibling and rename it to ``path``."""
    directory, name = path.rsplit("/", 1) if "/" in path else ("", path)
    tmp = join(directory, f".tmp-{uuid.uuid4().hex}-{name}") if directory else f".tmp-{name}"
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as out:
        out.write(data)
    try:
        FileSystems.rename([tmp], [path])
    except Exception:
        _delete_quietly(tmp)
        raise


def _delete_quietly(path: str) -> None:
    try:
        FileSystems.delete([path])
    except Exception:  # noqa: BLE001 - best effort clean-up of a temp file
        pass


# ---------------------------------------------------------------- shards

def pack_text_shard(docs) -> bytes:
    """``(id, line)`` documents -> JSON Lines bytes, sorted by id (``transforms.ids``
    order: integers numerically, then strings), then line."""
    lines = [line for _, line in sorted(docs, key=lambda d: (id_order_key(d[0]), d[1]))]
    return b"\n".join(lines) + b"\n" if lines else b""


def compress_zstd(raw: bytes, level: int) -> bytes:
    # Single-threaded with the content size in the frame header: deterministic
    # output, and readers can check the declared size before allocating.
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(raw)


def decompress_zstd(stored: bytes, expected_size: int) -> bytes:
    """Decompress, refusing to produce more than ``expected_size`` bytes."""
    params = zstandard.get_frame_parameters(stored)
    if params.content_size != expected_size:
        raise StoreError(
            f"frame declares {params.content_size} bytes, manifest says {expected_size}")
    raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=expected_size)
    if len(raw) != expected_size:
        raise StoreError(f"decompressed to {len(raw)} bytes, manifest says {expected_size}")
    return raw


def text_suffix(codec) -> str:
    """``.jsonl`` plus the codec's own suffix, so standard tools recognise the file."""
    return ".jsonl" + codec.suffix


def decode_payload(manifest: dict, shard: dict, stored: bytes):
    """Verified stored bytes of a shard -> its content: JSONL bytes, or an array block."""
    if manifest.get("kind") == "array":
        # The replica's xxh3-128 was checked against the manifest: no need to re-hash parts.
        block = decode_array(stored, max_bytes=shard["raw_bytes"], verify_parts=False)
        if block.shape[:1] != (shard["records"],) or block.nbytes != shard["raw_bytes"]:
            raise StoreError(f"block holds {block.shape} ({block.nbytes} bytes); manifest "
                             f"says {shard['records']} rows, {shard['raw_bytes']} bytes")
        return block
    return bytes_codec(manifest["codec"]).decode(stored, shard["raw_bytes"])


# ---------------------------------------------------------------- manifest

def manifest_bytes(manifest: dict) -> bytes:
    """Canonical serialisation: sorted keys, so equal content is equal bytes."""
    return orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def build_manifest(dataset: str, roots: list[str], replication: int, codec: dict,
                   shards: list[dict], extra: dict | None = None) -> dict:
    shards = sorted(shards, key=lambda s: s["name"])
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "roots": list(roots),
        "replication": replication,
        "codec": codec,
        "num_shards": len(shards),
        "records": sum(s["records"] for s in shards),
        "raw_bytes": sum(s["raw_bytes"] for s in shards),
        "stored_bytes": sum(s["stored_bytes"] for s in shards),
        "checksum_algorithm": "xxh3_128",
        "shards": shards,
    }
    manifest.update(extra or {})
    return manifest


def load_manifest(store_path: str) -> dict:
    path = join(store_path, MANIFEST)
    try:
        data = read_bytes(path)
    except Exception as err:  # noqa: BLE001 - any IO failure means the same to the user
        raise StoreError(f"no readable manifest at {path}: {err}") from err
    try:
        manifest = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise StoreError(f"manifest at {path} is not valid JSON: {err}") from err
    if manifest.get("format") != FORMAT:
        raise StoreError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise StoreError(
            f"{path} has format version {manifest['format_version']}; "
            f"this reader understands up to {FORMAT_VERSION}")
    for shard in manifest.get("shards", []):
        if not is_safe_relative(shard.get("name", "")):
            raise StoreError(f"{path} names an unsafe shard path {shard.get('name')!r}")
    return manifest


def is_safe_relative(name: str) -> bool:
    """A shard name stays inside its dataset folder: ``[partition/]file``, safe parts."""
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(is_safe_name(p) for p in parts)


def select_shards(manifest: dict, partitions=None) -> list[dict]:
    """The shard entries of the named partitions (all shards when None)."""
    if partitions is None:
        return manifest["shards"]
    known = {p["name"] for p in manifest.get("partitions", [])}
    unknown = sorted(set(partitions) - known)
    if unknown:
        raise StoreError(f"no partition(s) {unknown} in store; it has {sorted(known)}")
    wanted = set(partitions)
    return [s for s in manifest["shards"] if s.get("partition") in wanted]


def partition_for(manifest: dict, value) -> str:
    """The partition that holds records with this field value (or range key), from
    the manifest alone.  A value past ``max_partitions`` is in ``_other``."""
    scheme = manifest.get("partitioning")
    if not scheme:
        raise StoreError("the store is not partitioned")
    names = {p["name"] for p in manifest["partitions"]}
    if scheme["scheme"] == "range":
        name = MISSING if value is None else range_name(
            bisect.bisect_right(scheme["boundaries"], value))
    else:
        name = encode_value(value)
        if name not in names and value is not None and OTHER in names:
            name = OTHER
    if name not in names:
        raise StoreError(f"no partition holds {value!r} (it would be {name!r})")
    return name


def shard_path(name: str, partition: str = "") -> str:
    return f"{partition}/{name}" if partition else name




def replica_paths(manifest: dict, store_path: str, shard: dict) -> list[tuple[str, str]]:
    """``(root, path)`` candidates for a shard: the opened store first, then its replicas."""
    dataset = manifest["dataset"]
    candidates = []
    opened = join(store_path, shard["name"])
    for root in shard["replicas"]:
        path = join(dataset_dir(root, dataset), shard["name"])
        candidates.append((root, path))
    candidates.sort(key=lambda c: c[1] != opened)  # stable: the opened root first
    return candidates


def check_replica(path: str, shard: dict) -> tuple[str, bytes | None]:
    """``(status, stored bytes)``; status is ok, missing, size_mismatch or corrupt."""
    try:
        data = read_bytes(path)
    except Exception:  # noqa: BLE001 - not found and unreadable are both "missing"
        return "missing", None
    if len(data) != shard["stored_bytes"]:
        return "size_mismatch", None
    if checksum(data) != shard["checksum"]:
        return "corrupt", None
    return "ok", data


def read_shard_verified(manifest: dict, store_path: str, shard: dict, on_failure=None):
    """A shard's decoded content (``decode_payload``) from the first good replica."""
    problems = []
    for root, path in replica_paths(manifest, store_path, shard):
        status, data = check_replica(path, shard)
        if status == "ok":
            try:
                return decode_payload(manifest, shard, data)
            except (StoreError, CodecError) as err:
                status = f"corrupt ({err})"
        problems.append(f"{root}: {status}")
        if on_failure:
            on_failure()
    raise StoreError(f"shard {shard['name']}: no good replica ({'; '.join(problems)})")


# ---------------------------------------------------------------- writing

def commit_replicas(stored: bytes, dataset: str, name: str, replicas: list[str]) -> dict:
    """Write a shard's stored bytes to each replica root (atomically) -> the
    manifest fields every shard entry has about its bytes."""
    for root in replicas:
        write_atomically(join(dataset_dir(root, dataset), name), stored)
    return {"stored_bytes": len(stored), "checksum": checksum(stored), "replicas": replicas}


def publish_manifest(manifest: dict, dataset: str, roots: list[str]) -> None:
    """Write the manifest to every root, last (each copy atomically)."""
    data = manifest_bytes(manifest)
    for root in roots:
        write_atomically(join(dataset_dir(root, dataset), MANIFEST), data)


def _docs_of(part):
    """``(id, line)`` documents of a run ``(ids, lines)`` or of a list of records."""
    if isinstance(part, tuple):
        return run_docs(part)
    return ((r[2], r[3]) for r in part)


class _WriteShard(beam.DoFn):
    """((partition, index, count), records) -> shard on its R roots -> shard entry."""

    def __init__(self, dataset, placement, codec, sort_by_order):
        self.dataset = dataset
        self.placement = placement
        self.codec = codec
        self.sort_by_order = sort_by_order
        self.shards = Metrics.counter(NAMESPACE, "shards")
        self.records = Metrics.counter(NAMESPACE, "records")
        self.raw = Metrics.counter(NAMESPACE, "raw_bytes")
        self.stored = Metrics.counter(NAMESPACE, "stored_bytes")
        self.replicas = Metrics.counter(NAMESPACE, "replicas_written")

    def process(self, keyed, info):
        (partition, index, num_shards), parts = keyed
        # None marks a shard that must exist; a tuple is a run from ResolveRuns
        # ``(ids, lines)``; a list holds ``(partition, order, id, line)`` records.
        parts = [part for part in parts if part is not None]
        if self.sort_by_order:
            records = [r for part in parts for r in part]
            raw = b"".join(r[3] + b"\n" for r in sorted(
                records, key=lambda r: (r[1], id_order_key(r[2]), r[3])))
            count = len(records)
        else:
            docs = [doc for part in parts for doc in _docs_of(part)]
            raw = pack_text_shard(docs)
            count = len(docs)
        stored = self.codec.encode(raw)
        name = shard_path(shard_name(index, num_shards, text_suffix(self.codec)), partition)
        value = (info or {}).get("partitions", {}).get(partition, {}).get("value_text")
        replicas = self.placement.place(f"{self.dataset}/{name}", partition, value)
        entry = {"name": name, "index": index, "records": count, "raw_bytes": len(raw),
                 **commit_replicas(stored, self.dataset, name, replicas)}
        self.replicas.inc(len(replicas))
        self.shards.inc()
        self.records.inc(count)
        self.raw.inc(len(raw))
        self.stored.inc(len(stored))
        if partition:
            entry["partition"] = partition
        yield entry


def partition_entries(shards: list[dict], info: dict, placement: Placement) -> list[dict]:
    """Per partition: its value or bounds, counts, shard count and allowed roots."""
    entries = {}
    for shard in shards:
        name = shard["partition"]
        meta = {k: v for k, v in info["partitions"].get(name, {}).items()
                if k not in ("records", "value_text")}
        entry = entries.setdefault(name, {
            "name": name, **meta, "records": 0, "raw_bytes": 0, "stored_bytes": 0,
            "num_shards": 0,
            "roots": [r.uri for r in placement.roots_for(
                name, info["partitions"].get(name, {}).get("value_text"))]})
        entry["records"] += shard["records"]
        entry["raw_bytes"] += shard["raw_bytes"]
        entry["stored_bytes"] += shard["stored_bytes"]
        entry["num_shards"] += 1
    return [entries[n] for n in sorted(entries)]


class _WriteManifest(beam.DoFn):
    """All shard entries -> manifest.json on every root, after the preconditions pass."""

    def __init__(self, dataset, placement, codec, extra, partitioning):
        self.dataset = dataset
        self.placement = placement
        self.codec = codec
        self.extra = extra
        self.partitioning = partitioning

    def process(self, shards, failures, info):
        problems = [f for f in failures if f]
        if problems:
            raise RuntimeError(
                "not writing the manifest: " + " | ".join(sorted(problems)))
        extra = dict(self.extra)
        if self.placement.rules:
            extra["placement"] = self.placement.describe()
        if self.partitioning is not None:
            scheme = {k: v for k, v in info.items() if k != "partitions"}
            extra["partitioning"] = {**self.partitioning, **scheme}
            extra["partitions"] = partition_entries(shards, info, self.placement)
        roots = self.placement.roots
        uris = [r.uri for r in roots]
        manifest = build_manifest(self.dataset, uris, self.placement.replication,
                                  self.codec, shards, extra)
        publish_manifest(manifest, self.dataset, uris)
        yield manifest


class WriteStore(beam.PTransform):
    """Documents -> a replicated sharded store; outputs the manifest.

    Unpartitioned (``partitioning=None``): ``(id, line)`` documents; or, with
    ``resolve`` (a ``transforms.refs.ResolveRuns``), lists of ``(id, ref)``:
    the fast path, where shards are planned on refs and each kept line is read
    back from its source file once, into its shard's run.
    Partitioned: ``(partition name, order, (id, line))`` where ``order`` is
    None (shards follow the id hash, records sorted by id) or a range order
    key from RangePartition (shards and records follow the key);
    ``partitioning`` is the scheme recorded in the manifest and
    ``partition_info`` the partitioner's info PCollection (values, bounds).

    Shards are size-balanced (``transforms.sharding``): each partition is cut
    into ``num_shards`` or ``ceil(bytes / target_shard_bytes)`` shards of about
    equal raw size.  ``codec`` is a bytes codec or its spec (``transforms.codecs``;
    default ``zstd:level=<zstd_level>``).  ``placement`` (a Placement) may pin partitions to roots;
    by default every root may hold any shard.  ``preconditions`` are
    PCollections of strings (empty means fine); any non-empty string stops the
    manifest from being written and fails the run with that message.
    """

    def __init__(self, roots: list[Root], dataset: str, replication: int = 1, *,
                 num_shards: int | None = None, target_shard_bytes: int = 64 << 20,
                 zstd_level: int = 3, manifest_extra: dict | None = None,
                 preconditions=(), codec=None, partitioning: dict | None = None,
                 partition_info=None, placement: Placement | None = None,
                 resolve=None):
        super().__init__()
        if resolve is not None and partitioning is not None:
            raise ValueError("refs (resolve=...) are for unpartitioned stores")
        self.resolve = resolve
        if not dataset or "/" in dataset or dataset in (".", ".."):
            raise ValueError(f"dataset must be a plain folder name, got {dataset!r}")
        if num_shards is not None and num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        if target_shard_bytes < 1:
            raise ValueError(f"target_shard_bytes must be >= 1, got {target_shard_bytes}")
        if (partitioning is None) != (partition_info is None):
            raise ValueError("partitioning and partition_info go together")
        self.roots = [Root(normalise_root(r.uri), r.weight) for r in roots]
        place("probe", self.roots, replication)  # R > N fails here, before anything runs
        if placement is None:
            placement = Placement(self.roots, replication)
        elif [r.uri for r in placement.roots] != [r.uri for r in self.roots]:
            raise ValueError("placement must be built over the same (normalised) roots")
        self.placement = placement
        self.dataset = dataset
        self.replication = replication
        self.num_shards = num_shards
        self.target_shard_bytes = target_shard_bytes
        self.codec = bytes_codec(codec if codec is not None else f"zstd:level={zstd_level}")
        self.manifest_extra = manifest_extra or {}
        self.preconditions = list(preconditions)
        self.partitioning = partitioning
        self.partition_info = partition_info

    def expand(self, docs):
        pipeline = docs.pipeline
        size_of = line_size
        if self.resolve is not None:
            records = docs | "AsRecords" >> beam.Map(
                lambda batch: [("", hash_order(i), i, ref) for i, ref in batch])
            size_of = ref_size
            info = pipeline | "NoPartitionInfo" >> beam.Create([{}])
        elif self.partitioning is None:
            records = docs | "AsRecords" >> beam.Map(
                lambda d: [("", hash_order(d[0]), d[0], d[1])])
            info = pipeline | "NoPartitionInfo" >> beam.Create([{}])
        else:
            records = docs | "AsRecords" >> beam.MapTuple(
                lambda name, order, d: [(name, hash_order(d[0]) if order is None else order,
                                         d[0], d[1])])
            info = self.partition_info
        info = beam.pvalue.AsSingleton(info)
        sort_by_order = (self.partitioning or {}).get("scheme") == "range"
        assigned = records | "BalancedShards" >> AssignBalancedShards(
            self.target_shard_bytes, self.num_shards,
            required_partitions=[""] if self.partitioning is None else [], size_of=size_of)
        if self.resolve is not None:
            assigned = assigned | "ResolveRuns" >> self.resolve
        shards = (
            assigned
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(
                _WriteShard(self.dataset, self.placement, self.codec, sort_by_order), info)
            | "ShardList" >> beam.combiners.ToList())
        failures = (
            [pipeline | "NoPreconditions" >> beam.Create([""])] + self.preconditions
            | "Preconditions" >> beam.Flatten())
        codec = self.codec.describe()
        manifest = shards | "WriteManifest" >> beam.ParDo(
            _WriteManifest(self.dataset, self.placement, codec, self.manifest_extra,
                           self.partitioning),
            beam.pvalue.AsList(failures), info)
        if self.resolve is not None:
            manifest | "DeleteRuns" >> beam.Map(
                lambda _, spill_dir: delete_spill(spill_dir), self.resolve.spill_dir)
        return manifest


# ---------------------------------------------------------------- reading

class _ReadShard(beam.DoFn):
    def __init__(self, manifest, store_path, parse):
        self.manifest = manifest
        self.store_path = store_path
        self.parse = parse
        self.failovers = Metrics.counter(NAMESPACE, "read_replica_failovers")
        self.records = Metrics.counter(NAMESPACE, "read_records")

    def process(self, shard):
        raw = read_shard_verified(self.manifest, self.store_path, shard, self.failovers.inc)
        if self.manifest.get("kind") == "array":
            self.records.inc(shard["records"])
            yield shard["row_start"], raw
            return
        lines = raw.split(b"\n")[:-1]
        self.records.inc(len(lines))
        for line in lines:
            yield orjson.loads(line) if self.parse else line


class ReadStore(beam.PTransform):
    """Records of a store, via its manifest: one verified replica per shard.

    A missing or corrupt replica (size or xxh3-128 mismatch) is skipped for the
    next one; a shard with no good replica fails with a message naming it.
    Text stores yield dicts (``parse=True``) or the stored JSON lines as bytes;
    array stores yield ``(first row, block ndarray)`` per block.
    ``partitions`` (names) reads only those partitions of a partitioned store.
    """

    def __init__(self, store_path: str, parse: bool = True, partitions=None):
        super().__init__()
        self.store_path = store_path
        self.manifest = load_manifest(store_path)
        self.parse = parse
        self.shards = select_shards(self.manifest, partitions)

    def expand(self, pbegin):
        return (
            pbegin
            | "ListShards" >> beam.Create(self.shards)
            | "ReadShards" >> beam.ParDo(_ReadShard(self.manifest, self.store_path, self.parse)))


# ---------------------------------------------------------------- verify and repair

def verify_store(store_path: str) -> list[dict]:
    """One row per (shard, replica root) with its status, plus manifest rows per root."""
    manifest = load_manifest(store_path)
    rows = []
    for root in manifest["roots"]:
        path = join(dataset_dir(root, manifest["dataset"]), MANIFEST)
        try:
            status = "ok" if orjson.loads(read_bytes(path)) == manifest else "differs"
        except Exception:  # noqa: BLE001
            status = "missing"
        rows.append({"shard": MANIFEST, "root": root, "status": status, "path": path})
    for shard in manifest["shards"]:
        for root, path in replica_paths(manifest, store_path, shard):
            status, _ = check_replica(path, shard)
            rows.append({"shard": shard["name"], "root": root, "status": status, "path": path})
    return rows


def repair_store(store_path: str) -> list[dict]:
    """Rewrite every bad replica (and manifest copy) from a good one; rows of what was done."""
    manifest = load_manifest(store_path)
    done = []
    for row in verify_store(store_path):
        if row["status"] == "ok":
            continue
        if row["shard"] == MANIFEST:
            write_atomically(row["path"], manifest_bytes(manifest))
            done.append({**row, "action": "rewritten from manifest"})
            continue
        shard = next(s for s in manifest["shards"] if s["name"] == row["shard"])
        good = None
        for root, path in replica_paths(manifest, store_path, shard):
            status, data = check_replica(path, shard)
            if status == "ok":
                good = (root, data)
                break
        if good is None:
            done.append({**row, "action": "unrecoverable: no good replica"})
            continue
        write_atomically(row["path"], good[1])
        done.append({**row, "action": f"copied from {good[0]}"})
    return done
