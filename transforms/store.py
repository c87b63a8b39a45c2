"""Replicated sharded store: size-bounded shards on R of N roots, manifest last.

Layout (one dataset written to N roots)::

    <root>/<dataset>/shard-00000-of-00008.jsonl.zst   (on R of the N roots)
    <root>/<dataset>/manifest.json                    (on every root, written last)

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
import math
import posixpath
import uuid

import apache_beam as beam
import orjson
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.codecs import CodecError, bytes_codec, decode_array
from transforms.hashing import checksum, shard_of
from transforms.placement import Root, place

NAMESPACE = "dataprep.store"
MANIFEST = "manifest.json"
FORMAT = "beam-dataprep-store"
FORMAT_VERSION = 1
TEXT_SUFFIX = ".jsonl.zst"
ARRAY_SUFFIX = ".bdparr"


class StoreError(RuntimeError):
    """A store cannot be read or verified (missing manifest, no good replica...)."""


# ---------------------------------------------------------------- paths and files

def join(base: str, *parts: str) -> str:
    """Join path parts for local paths and URIs alike."""
    if "://" in base:
        return posixpath.join(base, *parts)
    return FileSystems.join(base, *parts)


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


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


# ---------------------------------------------------------------- shards

def pack_text_shard(docs) -> bytes:
    """``(id, line)`` documents -> JSON Lines bytes, sorted by id (then line)."""
    lines = [line for _, line in sorted(docs)]
    return b"".join(line + b"\n" for line in lines)


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
        block = decode_array(stored, max_bytes=shard["raw_bytes"])
        if block.shape[:1] != (shard["records"],) or block.nbytes != shard["raw_bytes"]:
            raise StoreError(f"block holds {block.shape} ({block.nbytes} bytes); manifest "
                             f"says {shard['records']} rows, {shard['raw_bytes']} bytes")
        return block
    return bytes_codec(manifest["codec"]).decode(stored, shard["raw_bytes"])


def shard_count(total_raw_bytes: int, target_shard_bytes: int) -> int:
    return max(1, math.ceil(total_raw_bytes / target_shard_bytes))


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
    return manifest


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

class _WriteShard(beam.DoFn):
    """(shard index, docs) -> shard written to its R roots -> shard entry."""

    def __init__(self, dataset, roots, replication, codec):
        self.dataset = dataset
        self.roots = roots
        self.replication = replication
        self.codec = codec
        self.shards = Metrics.counter(NAMESPACE, "shards")
        self.records = Metrics.counter(NAMESPACE, "records")
        self.raw = Metrics.counter(NAMESPACE, "raw_bytes")
        self.stored = Metrics.counter(NAMESPACE, "stored_bytes")
        self.replicas = Metrics.counter(NAMESPACE, "replicas_written")

    def process(self, keyed, num_shards):
        index, docs = keyed
        docs = [d for d in docs if d is not None]  # None marks a shard that must exist
        raw = pack_text_shard(docs)
        stored = self.codec.encode(raw)
        name = shard_name(index, num_shards, text_suffix(self.codec))
        replicas = place(f"{self.dataset}/{name}", self.roots, self.replication)
        for root in replicas:
            write_atomically(join(dataset_dir(root, self.dataset), name), stored)
            self.replicas.inc()
        self.shards.inc()
        self.records.inc(len(docs))
        self.raw.inc(len(raw))
        self.stored.inc(len(stored))
        yield {
            "name": name,
            "index": index,
            "records": len(docs),
            "raw_bytes": len(raw),
            "stored_bytes": len(stored),
            "checksum": checksum(stored),
            "replicas": replicas,
        }


class _WriteManifest(beam.DoFn):
    """All shard entries -> manifest.json on every root, after the preconditions pass."""

    def __init__(self, dataset, roots, replication, codec, extra):
        self.dataset = dataset
        self.roots = roots
        self.replication = replication
        self.codec = codec
        self.extra = extra

    def process(self, shards, failures):
        problems = [f for f in failures if f]
        if problems:
            raise RuntimeError(
                "not writing the manifest: " + " | ".join(sorted(problems)))
        manifest = build_manifest(
            self.dataset, [r.uri for r in self.roots], self.replication,
            self.codec, shards, self.extra)
        data = manifest_bytes(manifest)
        for root in self.roots:
            write_atomically(join(dataset_dir(root.uri, self.dataset), MANIFEST), data)
        yield manifest


class WriteStore(beam.PTransform):
    """``(id, line)`` documents -> a replicated sharded store; outputs the manifest.

    ``num_shards`` fixes the shard count; otherwise it is the measured raw size
    over ``target_shard_bytes``.  Each shard's records are sorted by id and
    assigned by a stable hash of the id.  ``codec`` is a bytes codec or its spec
    (``transforms.codecs``; default ``zstd:level=<zstd_level>``).  ``preconditions`` are PCollections of
    strings (empty means fine); any non-empty string stops the manifest from
    being written and fails the run with that message.
    """

    def __init__(self, roots: list[Root], dataset: str, replication: int = 1, *,
                 num_shards: int | None = None, target_shard_bytes: int = 64 << 20,
                 zstd_level: int = 3, manifest_extra: dict | None = None,
                 preconditions=(), codec=None):
        super().__init__()
        if not dataset or "/" in dataset or dataset in (".", ".."):
            raise ValueError(f"dataset must be a plain folder name, got {dataset!r}")
        if num_shards is not None and num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        if target_shard_bytes < 1:
            raise ValueError(f"target_shard_bytes must be >= 1, got {target_shard_bytes}")
        self.roots = [Root(normalise_root(r.uri), r.weight) for r in roots]
        place("probe", self.roots, replication)  # R > N fails here, before anything runs
        self.dataset = dataset
        self.replication = replication
        self.num_shards = num_shards
        self.target_shard_bytes = target_shard_bytes
        self.codec = bytes_codec(codec if codec is not None else f"zstd:level={zstd_level}")
        self.manifest_extra = manifest_extra or {}
        self.preconditions = list(preconditions)

    def expand(self, docs):
        pipeline = docs.pipeline
        if self.num_shards is not None:
            count = pipeline | "FixedShardCount" >> beam.Create([self.num_shards])
        else:
            target = self.target_shard_bytes
            count = (
                docs
                | "RawSize" >> beam.Map(lambda d: len(d[1]) + 1)
                | "TotalRawSize" >> beam.CombineGlobally(sum)
                | "ShardCount" >> beam.Map(shard_count, target))
        num_shards = beam.pvalue.AsSingleton(count)
        every_shard = count | "EveryShard" >> beam.FlatMap(lambda n: [(i, None) for i in range(n)])
        keyed = docs | "AssignShard" >> beam.Map(lambda d, n: (shard_of(d[0], n), d), num_shards)
        shards = (
            (keyed, every_shard)
            | "WithEmptyShards" >> beam.Flatten()
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(
                _WriteShard(self.dataset, self.roots, self.replication, self.codec),
                num_shards)
            | "ShardList" >> beam.combiners.ToList())
        failures = (
            [pipeline | "NoPreconditions" >> beam.Create([""])] + self.preconditions
            | "Preconditions" >> beam.Flatten())
        codec = self.codec.describe()
        return shards | "WriteManifest" >> beam.ParDo(
            _WriteManifest(self.dataset, self.roots, self.replication, codec, self.manifest_extra),
            beam.pvalue.AsList(failures))


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
    """

    def __init__(self, store_path: str, parse: bool = True):
        super().__init__()
        self.store_path = store_path
        self.manifest = load_manifest(store_path)
        self.parse = parse

    def expand(self, pbegin):
        return (
            pbegin
            | "ListShards" >> beam.Create(self.manifest["shards"])
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
