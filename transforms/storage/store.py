"""Replicated sharded store: size-bounded shards on R of N roots, manifest last.

Layout (one dataset written to N roots)::

    <root>/<dataset>/shard-00000-of-00008.jsonl.zst   (on R of the N roots)
    <root>/<dataset>/manifest.json                    (on every root, written last)

A partitioned store (by field value or key range, see ``transforms.processing.partition``)
puts each partition's shards in a folder named by the partition's safe name::

    <root>/<dataset>/<partition>/shard-00000-of-00004.jsonl.zst

and its one manifest also records the scheme, the boundaries or values, the
placement rules and, per partition, its counts and shards, so a reader opens
one partition without listing storage.

What a shard holds is the store's *payload*, named by the manifest's ``kind``:
``text`` shards are sorted JSON Lines compressed by a bytes codec (``.jsonl.zst``,
``.jsonl.gz``, ``.jsonl.lz4`` or ``.jsonl``); ``array`` shards are one encoded
array block each (``.bdparr``, the container of ``transforms.core.codecs``; written
by ``transforms.storage.array_store``).

Every file is written to a temporary name and renamed into place through
Beam's FileSystems (on ``s3://`` one PUT in place: ``commit.write_atomically``),
so a reader never sees a partial file and ``gs://``,
``s3://`` or ``hdfs://`` roots work like local ones.  The manifest lists every
shard with its record count, raw and stored sizes, the xxh3-128 checksum of
the stored bytes and the roots holding its replicas; it is written only after
every replica of every shard is committed, so a store with a manifest is
complete.  Nothing time- or machine-dependent goes into shards or manifest:
a rerun with the same inputs and options is byte-identical.

How a run replaces a committed dataset without ever damaging it (content-named
shards, generations, compare-and-swap, collection after the commit, the lock)
is in ``transforms.storage.commit``; reading, verifying and repairing take the newest
valid generation on any root (``choose_generation``).
"""
import bisect
import os

import apache_beam as beam
import zstandard
from apache_beam.metrics import Metrics

from transforms.core import exact_json
from transforms.core.codecs import CodecError, bytes_codec, decode_array
from transforms.storage.commit import (  # noqa: F401 - re-exported: the store's file layer
    AUDIT_DIR, FORMAT, FORMAT_VERSION, LOCK, MANIFEST, ConcurrentWriteError, DatasetLock,
    DatasetLocked, NoStore, StoreError, basename, check_dataset_name, collect_garbage,
    commit_generation, committed_digest, delete_quietly, discard_uncommitted, file_kind,
    find_strays, for_root, is_local, is_safe_relative, manifest_bytes, newest, parent,
    read_lock, read_manifest_copy, replace_with_file, write_atomically)
from transforms.core.hashing import checksum
from transforms.core.worker_gc import tune_gc
from transforms.core.ids import id_order_key
from transforms.storage.files import file_size, join, read_bytes
from transforms.core.partition_names import MISSING, OTHER, encode_value, is_safe_name, range_name
from transforms.storage import parquet_shards
from transforms.storage.placement import Placement, Root, place
from transforms.storage.spill import (delete_runs, delete_spill, read_sidecar, run_docs,
                                      runs_digest, runs_present, shard_lines, write_written,
                                      written_path)
from transforms.storage.sharding import AssignBalancedShards, ref_size

NAMESPACE = "dataprep.store"
TEXT_SUFFIX = ".jsonl.zst"
SHARD_FORMATS = ("jsonl", "parquet")   # text shards: JSON Lines under a codec, or Parquet
PARQUET_CODEC = {"name": "parquet", "compression": "zstd", "compression_level": 3}
ARRAY_SUFFIX = ".bdparr"


# ---------------------------------------------------------------- paths and files

def normalise_root(uri: str) -> str:
    """Local roots become absolute (a manifest must work from any cwd); URIs stay."""
    if "://" in uri:
        return uri.rstrip("/")
    return os.path.abspath(uri)


def physical_location(uri: str) -> str:
    """Where a root really is: symlinks, ``.`` and ``..`` resolved, case folded
    (two roots differing only in case are one folder on a case-insensitive file
    system, so they are never both accepted)."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme.lower()}://{'/'.join(p for p in rest.split('/') if p)}".casefold()
    return os.path.realpath(uri).casefold()


GLOB_CHARACTERS = "[]*?"


def check_roots(uris: list[str], dataset: str) -> None:
    """Roots must be distinct physical folders, no root's dataset folder may hold
    another root, and no root's path may hold a glob character (``[ ] * ?``: Beam's
    file sinks list a write's temporary files through ``FileSystems.match``, which
    reads such a path as a pattern, and the run would fail after doing the work).
    Raises ValueError naming them (before anything is written)."""
    for uri in uris:
        odd = sorted({c for c in uri if c in GLOB_CHARACTERS})
        if odd:
            raise ValueError(f"root {uri} holds the glob character(s) {' '.join(odd)}: Beam's "
                             "file writes read such a path as a pattern; choose a root "
                             "without them")
    seen = {}
    for uri in uris:
        location = physical_location(uri)
        if location in seen:
            raise ValueError(f"--output_roots {seen[location]} and {uri} are the same folder "
                             f"({location}); every root must be a distinct location")
        seen[location] = uri
    folders = {physical_location(join(u, dataset)): u for u in uris}
    for location, uri in seen.items():
        for folder, owner in folders.items():
            if owner != uri and (location + "/").startswith(folder + "/"):
                raise ValueError(f"root {uri} lies inside the dataset folder of root {owner}")


def dataset_dir(root: str, dataset: str) -> str:
    return join(root, dataset)


def shard_name(index: int, count: int, suffix: str = TEXT_SUFFIX,
               digest: str | None = None) -> str:
    """``shard-00003-of-00012[-<16 hex>]<suffix>``; the digest (the first 16 hex
    digits of the stored bytes' xxh3-128) makes names content-derived, so a new
    generation's file never lands on a live file with other bytes."""
    tail = f"-{digest[:16]}" if digest else ""
    return f"shard-{index:05d}-of-{count:05d}{tail}{suffix}"


# ---------------------------------------------------------------- shards

def pack_text_shard(docs) -> bytes:
    """``(id, line)`` documents -> JSON Lines bytes, sorted by id (``transforms.core.ids``
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
    """Verified stored bytes of a shard -> its content: JSONL bytes (a Parquet shard's
    rows as JSON lines, ``parquet_shards.shard_lines``), or an array block."""
    if manifest.get("kind") == "array":
        # The replica's xxh3-128 was checked against the manifest: no need to re-hash parts.
        block = decode_array(stored, max_bytes=shard["raw_bytes"], verify_parts=False)
        if block.shape[:1] != (shard["records"],) or block.nbytes != shard["raw_bytes"]:
            raise StoreError(f"block holds {block.shape} ({block.nbytes} bytes); manifest "
                             f"says {shard['records']} rows, {shard['raw_bytes']} bytes")
        return block
    if manifest.get("shard_format") == "parquet":
        try:
            return parquet_shards.shard_lines(stored, manifest["parquet"]["json_columns"])
        except Exception as err:  # noqa: BLE001 - pyarrow's errors on a bad file
            raise StoreError(f"not a readable Parquet shard: {err}") from None
    return bytes_codec(manifest["codec"]).decode(stored, shard["raw_bytes"])


# ---------------------------------------------------------------- manifest

def build_manifest(dataset: str, roots: list[str], replication: int, codec: dict,
                   shards: list[dict], extra: dict | None = None) -> dict:
    """The manifest body (unsealed: ``transforms.storage.commit.seal`` adds generation,
    previous and digest).  Shard ``replicas`` are indices into ``roots``."""
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


def parse_root_map(spec) -> dict[str, str]:
    """``OLD=NEW[,OLD=NEW...]`` (or a dict) -> normalised ``{recorded root: where it is now}``."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        pairs = spec.items()
    else:
        pairs = []
        for part in (p.strip() for p in spec.split(",")):
            if part:
                old, sep, new = part.partition("=")
                if not sep or not old or not new:
                    raise ValueError(f"--root_map wants OLD=NEW, got {part!r}")
                pairs.append((old, new))
    return {normalise_root(o): normalise_root(n) for o, n in pairs}


def _upgrade_v1(manifest: dict) -> dict:
    """A version-1 manifest (replicas as root URIs) in today's shape."""
    if manifest.get("format_version", 0) >= 2:
        return manifest
    roots = list(manifest.get("roots", []))
    shards = []
    for s in manifest.get("shards", []):
        reps = []
        for r in s.get("replicas", []):
            if isinstance(r, str) and r not in roots:
                roots.append(r)
            reps.append(roots.index(r) if isinstance(r, str) else r)
        shards.append({**s, "replicas": reps})
    return {**manifest, "roots": roots, "shards": shards}


def _hint_roots(store_path: str, own) -> list[str] | None:
    """The roots of a store opened through ``store_path``: from its manifest (even
    a damaged one, as a hint), else from the run report in ``_audit``."""
    source = own.manifest or own.hint
    if isinstance(source, dict) and isinstance(source.get("roots"), list) and all(
            isinstance(r, str) for r in source["roots"]):
        return _upgrade_v1(source)["roots"] if own.manifest else list(source["roots"])
    for report in (join(store_path, AUDIT_DIR, "run_report.json"),
                   join(store_path, "run_report.json")):
        try:
            dirs = exact_json.loads(read_bytes(report))["store"]
            return [parent(d) for d in dirs]
        except Exception:  # noqa: BLE001 - no hint there
            continue
    return None


def survey_store(store_path: str, root_map=None):
    """Every root's manifest copy for a store opened at ``store_path``.

    -> ``(copies, paths, opened index, dataset)``: ``paths[i]`` is where root i
    is now (the opened root for its own index, ``root_map`` for the others).
    """
    store_path = normalise_root(store_path)
    root, dataset = parent(store_path), basename(store_path)
    mapping = parse_root_map(root_map)
    own = read_manifest_copy(join(store_path, MANIFEST), None, root)
    if own.manifest is not None:
        own.manifest = _upgrade_v1(own.manifest)
    recorded = _hint_roots(store_path, own)
    if recorded is None:
        return [own], [root], None, dataset
    paths = [mapping.get(normalise_root(r), normalise_root(r)) for r in recorded]
    index = paths.index(root) if root in paths else None
    if index is None:
        source = own.manifest or own.hint or {}
        hinted = source.get("root_index")
        if isinstance(hinted, int) and 0 <= hinted < len(paths):
            index = hinted
    if index is not None:
        paths[index] = root
    own.index = index
    copies = [own]
    for j, path in enumerate(paths):
        if j != index:
            copy = read_manifest_copy(join(path, dataset, MANIFEST), j, path)
            if copy.manifest is not None:
                copy.manifest = _upgrade_v1(copy.manifest)
            copies.append(copy)
    copies.sort(key=lambda c: (c.index is None, c.index or 0))
    return copies, paths, index, dataset


def _shards_available(manifest, store_path, root_map, deep) -> bool:
    """Every shard has a replica of the right size (``deep``: and checksum)."""
    for shard in manifest["shards"]:
        for _, path in replica_paths(manifest, store_path, shard, root_map):
            if deep:
                if check_replica(path, shard)[0] == "ok":
                    break
            elif file_kind(path) == "file" and (
                    not is_local(path) or os.path.getsize(path) == shard["stored_bytes"]):
                break
        else:
            return False
    return True


def _absent(store_path: str) -> str:
    """Why a path holds no store, in a few words: ``not found``, ``not a folder``,
    or ``no manifest.json in it`` (a folder, or a remote path, without one)."""
    if is_local(store_path):
        if not os.path.lexists(store_path):
            return "not found"
        if not os.path.isdir(store_path):
            return "not a folder"
    return f"no {MANIFEST} in it"


def datasets_in(folder: str, depths=("*", "*/*")) -> list[str]:
    """Dataset folders under ``folder`` (holding a manifest), as paths relative to it,
    sorted (``["corpus"]``; ``["a/corpus", "b/corpus"]``): those one level down, else
    two (a folder of roots); none on any error."""
    folder = folder.rstrip("/") or "/"
    for depth in depths:
        pattern = join(folder, depth, MANIFEST)
        try:
            if is_local(folder):
                import glob
                found = glob.glob(pattern)
            else:
                from apache_beam.io.filesystems import FileSystems
                found = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        except Exception:  # noqa: BLE001 - an unreadable place suggests nothing
            found = []
        prefix = folder.rstrip("/") + "/"
        names = sorted({p[len(prefix):-len("/" + MANIFEST)] for p in found
                        if p.startswith(prefix)})
        names = [n for n in names if not any(part.startswith(("_", "."))
                                             for part in n.split("/"))]
        if names:
            return names
    return []


def stores_near(store_path: str) -> tuple[str, list[str]]:
    """Where the stores are near a path that holds none (a root given for its
    dataset, a path inside a dataset folder, a misspelt dataset name) ->
    ``(what, [store paths])``, paths built on ``store_path`` as typed; ``("", [])``
    when there is none.  In this order:

    - the folder holds dataset folders (a manifest one level down, else two):
      ``("out/a holds the dataset(s) corpus", ["out/a/corpus"])``;
    - the path is inside a dataset folder (up to three levels):
      ``("out/a/corpus/_audit is inside the dataset out/a/corpus", ["out/a/corpus"])``;
    - its parent folder holds dataset folders (a misspelt name): those, the name
      closest to the one typed first.

    Local paths and URIs (Beam's FileSystems); a place that cannot be listed
    suggests nothing."""
    import difflib
    path = store_path.rstrip("/") or store_path
    names = datasets_in(path)
    if names:
        return (f"{path} holds the dataset(s) {', '.join(names)}",
                [join(path, n) for n in names])
    above = path
    for _ in range(3):
        if "/" not in above.rstrip("/") or above.endswith("://"):
            break
        above = parent(above)
        if file_kind(join(above, MANIFEST)) == "file":
            return f"{path} is inside the dataset {above}", [above]
    if "/" in path:
        up = parent(path)
        names = [n for n in datasets_in(up, ("*",)) if n != basename(path)]
        if names:
            typed = basename(path)
            names.sort(key=lambda n: -difflib.SequenceMatcher(None, typed, n).ratio())
            return (f"{up} holds the dataset(s) {', '.join(names)}",
                    [join(up, n) for n in names])
    return "", []


def choose_generation(store_path: str, root_map=None, deep: bool = False):
    """-> ``(manifest, copies, paths)``: the newest valid generation whose shards are
    all available (``deep``: verified by checksum), with ``root_index`` set to
    the opened root's index; when none has them all, the newest valid one
    (verify then names what is missing).  Raises NoStore when no root holds a
    manifest file at all, StoreError when none holds a valid one."""
    copies, paths, index, _ = survey_store(store_path, root_map)
    candidates = newest(copies)
    if not candidates:
        if all(c.status == "missing" for c in copies):
            raise NoStore(f"no store at {store_path} ({_absent(store_path)})")
        detail = "; ".join(f"{c.path}: {c.detail}" for c in copies)
        raise StoreError(f"no readable manifest for {store_path}: {detail}")
    for manifest in candidates:
        chosen = {**manifest, "root_index": index}
        if len(candidates) == 1:   # the answer either way: nothing to choose between
            return chosen, copies, paths
        if _shards_available(chosen, store_path, root_map, deep):
            return chosen, copies, paths
    return {**candidates[0], "root_index": index}, copies, paths


def load_manifest(store_path: str, root_map=None) -> dict:
    """The manifest a reader of ``store_path`` uses: the newest valid generation on
    any root of the store (a crash between manifest copies never rolls a reader
    back), with ``root_index`` = the opened root's index.  ``root_map``
    (``OLD=NEW,...`` or a dict) says where recorded roots are now."""
    manifest, _, _ = choose_generation(store_path, root_map)
    return manifest


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




def root_paths(manifest: dict, store_path: str, root_map=None) -> list[str]:
    """Where each root of the manifest is now: the opened root for ``root_index``,
    ``root_map`` or the recorded URI for the others."""
    mapping = parse_root_map(root_map)
    paths = [mapping.get(r, r) for r in manifest["roots"]]
    index = manifest.get("root_index")
    if index is not None:
        paths[index] = parent(normalise_root(store_path))
    return paths


def replica_roots(manifest: dict, shard: dict) -> list[str]:
    """The recorded root URIs holding a shard's replicas."""
    return [manifest["roots"][i] for i in shard["replicas"]]


def replica_paths(manifest: dict, store_path: str, shard: dict,
                  root_map=None) -> list[tuple[str, str]]:
    """``(root, path)`` candidates for a shard: the opened root first, then the others."""
    paths = root_paths(manifest, store_path, root_map)
    dataset = basename(normalise_root(store_path))
    opened = manifest.get("root_index")
    order = sorted(shard["replicas"], key=lambda i: i != opened)
    return [(paths[i], join(paths[i], dataset, shard["name"])) for i in order]


def check_replica(path: str, shard: dict) -> tuple[str, bytes | None]:
    """``(status, stored bytes)``; status is ok, missing, symlink, not_a_file,
    unreadable, size_mismatch or corrupt.  A symlink is never followed (it could
    lead outside the root), even when its target holds the right bytes."""
    status, data, _ = inspect_replica(path, shard)
    return status, data


def inspect_replica(path: str, shard: dict) -> tuple[str, bytes | None, int]:
    """``check_replica`` plus the number of bytes actually read from storage: the
    file's length when it was read (also a wrong-sized or corrupt one), 0 when
    nothing was (missing, a symlink, not a regular file, a read that failed)."""
    kind = file_kind(path)
    if kind == "missing":
        return "missing", None, 0
    if kind == "symlink":
        return "symlink", None, 0
    if kind != "file":
        return "not_a_file", None, 0
    try:
        data = read_bytes(path)
    except Exception:  # noqa: BLE001 - EIO and friends
        return "unreadable", None, 0
    if len(data) != shard["stored_bytes"]:
        return "size_mismatch", None, len(data)
    if checksum(data) != shard["checksum"]:
        return "corrupt", None, len(data)
    return "ok", data, len(data)


def read_shard_verified(manifest: dict, store_path: str, shard: dict, on_failure=None,
                        root_map=None):
    """A shard's decoded content (``decode_payload``) from the first good replica."""
    problems = []
    for root, path in replica_paths(manifest, store_path, shard, root_map):
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

def write_replica(path: str, stored: bytes, digest: str) -> bool:
    """Put a shard's stored bytes at ``path``; -> False when an identical file was
    already there (a rerun, or a shard both generations hold: never rewritten)."""
    if file_kind(path) == "file" and check_replica(
            path, {"stored_bytes": len(stored), "checksum": digest})[0] == "ok":
        return False
    replace_with_file(path, stored)
    return True


def commit_replicas(stored: bytes, dataset: str, name: str, replicas: list[str],
                    roots: list[str]) -> dict:
    """Write a shard's stored bytes to each replica root (atomically) -> the
    manifest fields every shard entry has about its bytes (replicas as root indices)."""
    digest = checksum(stored)
    for root in replicas:
        write_replica(join(dataset_dir(root, dataset), name), stored, digest)
    return {"stored_bytes": len(stored), "checksum": digest,
            "replicas": [roots.index(r) for r in replicas]}


class _WriteShard(beam.DoFn):
    """((partition, index, count), runs) -> shard on its R roots -> shard entry.

    With ``spill_dir`` (the folder of the runs), once a shard is committed to its
    replicas its entry is recorded in a sidecar there (``spill.write_written``) and
    its runs are deleted, so the spill never holds a written shard's lines (peak disk
    ~max(runs, store), not their sum).  A retried bundle finds the sidecar: when it
    records these very runs (``spill.runs_digest``) and every replica file exists with
    the entry's stored size, the entry is yielded (counters as on a first write)
    without reading the runs.  A sidecar of other runs (an earlier run of the same
    transform object), an unreadable one, or one whose replicas are gone is ignored
    while the runs are all still there (the shard is written again); with the runs
    gone it is a ``StoreError`` naming the shard and the file (the run fails, nothing
    is committed)."""

    def __init__(self, dataset, placement, codec, shard_format="jsonl", first_columns=(),
                 spill_dir=None):
        self.dataset = dataset
        self.placement = placement
        self.codec = codec
        self.shard_format = shard_format
        self.first_columns = first_columns
        self.spill_dir = spill_dir
        self.shards = Metrics.counter(NAMESPACE, "shards")
        self.records = Metrics.counter(NAMESPACE, "records")
        self.raw = Metrics.counter(NAMESPACE, "raw_bytes")
        self.stored = Metrics.counter(NAMESPACE, "stored_bytes")
        self.replicas = Metrics.counter(NAMESPACE, "replicas_written")

    def setup(self):
        tune_gc()

    def process(self, keyed, info, fields=None):
        shard, runs = keyed
        runs = list(runs)
        if self.spill_dir is not None:
            entry = self._written(shard, runs)
            if entry is not None:   # a retried bundle: the shard is written already
                delete_runs(runs)   # the first attempt may have stopped before it did
                self._count(entry)
                yield entry
                return
        entry = self._write(shard, runs, info, fields)
        if self.spill_dir is not None:
            write_written(self.spill_dir, shard, entry, runs)
            delete_runs(runs)
        self._count(entry)
        yield entry

    def _write(self, shard, runs, info, fields) -> dict:
        partition, index, num_shards = shard
        # None marks a shard that must exist; a Run (transforms.processing.refs) holds lines
        # of the shard from one input file, sorted; merged in the store's order
        # (``shard_lines``: range key, then ids in the id order of ``transforms.core.ids``).
        lines = shard_lines(runs)
        count = len(lines)
        if lines:
            lines.append(b"")   # the last newline, joined in (no copy of the whole shard)
        raw = b"\n".join(lines)
        if self.shard_format == "parquet":
            schema = parquet_shards.store_schema(fields, self.first_columns)
            stored = parquet_shards.shard_bytes(lines[:-1], schema, len(raw))
            suffix = parquet_shards.SUFFIX
        else:
            stored = self.codec.encode(raw)
            suffix = text_suffix(self.codec)
        # placement follows the name without the digest (stable across contents)
        plain = shard_path(shard_name(index, num_shards, suffix), partition)
        name = shard_path(shard_name(index, num_shards, suffix, checksum(stored)), partition)
        value = (info or {}).get("partitions", {}).get(partition, {}).get("value_text")
        replicas = self.placement.place(f"{self.dataset}/{plain}", partition, value)
        entry = {"name": name, "index": index, "records": count, "raw_bytes": len(raw),
                 **commit_replicas(stored, self.dataset, name, replicas,
                                   [r.uri for r in self.placement.roots])}
        if partition:
            entry["partition"] = partition
        return entry

    def _written(self, shard, runs) -> "dict | None":
        """The entry of ``shard`` if a writer of these very runs (``spill.runs_digest``)
        committed it already and every replica is still a file of its stored size; None
        when the shard is to be written from its runs: no sidecar, or one of other runs
        (an earlier run of the same transform, whose spill folder this is), or one that
        cannot be read or whose replicas are gone while the runs are all still here.
        ``StoreError`` naming the shard when it is neither: the runs are gone."""
        try:
            recorded = read_sidecar(self.spill_dir, shard)
        except ValueError as err:
            recorded, problem = None, str(err)
        else:
            if recorded is None:
                return None
            entry, digest = recorded
            problem = (self._replica_problem(entry) if digest == runs_digest(runs)
                       else f"{written_path(self.spill_dir, shard)}: records other runs "
                            "than this shard's")
            if not problem:
                return entry
        if runs_present(runs):
            return None
        raise StoreError(f"{problem}, and the shard's runs are already deleted; "
                         "the run fails (nothing is committed): run the job again")

    def _replica_problem(self, entry: dict) -> str:
        """'' when every replica of a recorded shard is a file of its stored size."""
        uris = [r.uri for r in self.placement.roots]
        for i in entry["replicas"]:
            path = join(dataset_dir(uris[i], self.dataset), entry["name"])
            kind = file_kind(path)
            size = file_size(path) if kind == "file" else None
            if size != entry["stored_bytes"]:
                found = kind if size is None else f"{size} bytes"
                return (f"shard {entry['name']}: its replica {path} is {found}, expected "
                        f"{entry['stored_bytes']} bytes")
        return ""

    def _count(self, entry: dict) -> None:
        self.replicas.inc(len(entry["replicas"]))
        self.shards.inc()
        self.records.inc(entry["records"])
        self.raw.inc(entry["raw_bytes"])
        self.stored.inc(entry["stored_bytes"])


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

    def __init__(self, dataset, placement, codec, extra, partitioning, base):
        self.dataset = dataset
        self.placement = placement
        self.codec = codec
        self.extra = extra
        self.partitioning = partitioning
        self.base = base

    def process(self, shards, failures, info, fields=None):
        problems = [f for f in failures if f]
        uris = [r.uri for r in self.placement.roots]
        if problems:
            discard_uncommitted(shards, self.dataset, uris)
            raise RuntimeError(
                "not writing the manifest: " + " | ".join(sorted(problems)))
        extra = dict(self.extra)
        if fields is not None:   # a Parquet store: its one schema
            first = (self.extra.get("id_field", "id"), self.extra.get("text_field", "text"))
            extra["shard_format"] = "parquet"
            extra["parquet"] = {**parquet_shards.store_schema(fields, first),
                                "created_by": parquet_shards.created_by(),
                                "row_group_bytes": parquet_shards.ROW_GROUP_BYTES}
        if self.placement.rules:
            extra["placement"] = self.placement.describe()
        if self.partitioning is not None:
            scheme = {k: v for k, v in info.items() if k != "partitions"}
            extra["partitioning"] = {**self.partitioning, **scheme}
            extra["partitions"] = partition_entries(shards, info, self.placement)
        manifest = build_manifest(self.dataset, uris, self.placement.replication,
                                  self.codec, shards, extra)
        try:
            yield commit_generation(manifest, self.dataset, uris, self.base)
        except ConcurrentWriteError:
            discard_uncommitted(shards, self.dataset, uris)
            raise


class _MergeSchemas(beam.CombineFn):
    """``{field: type}`` dicts -> their merge (``parquet_shards.merge``; order-free)."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, fields):
        return parquet_shards.merge_schemas(accumulator, fields)

    def merge_accumulators(self, accumulators):
        out = {}
        for fields in accumulators:
            out = parquet_shards.merge_schemas(out, fields)
        return out

    def extract_output(self, accumulator):
        return accumulator


class WriteStore(beam.PTransform):
    """Documents -> a replicated sharded store; outputs the manifest.

    Input: batches (lists, or ``transforms.core.records.Packed`` lists) of
    ``transforms.storage.sharding.ShardRecord`` whose payload
    is a ``transforms.processing.refs.DocRef``: shards are planned on refs, and ``lines``
    (a ``transforms.processing.refs.ResolveRuns``) reads each kept line back from its
    source file once, into its shard's run.  For records in memory, the payload
    is the JSON line and ``lines`` a ``transforms.storage.write_records.RunsFromLines``
    (``WriteRecords`` does both; ``lines.size_of``, when present, sizes the
    payloads, else ``ref_size``).  Unpartitioned
    (``partitioning=None``): partition ``""``, order ``hash_order(id)``.
    Partitioned: the partition's safe name and either ``hash_order(id)``
    (shards follow the id hash, records sorted by id) or a range order key
    from RangePartition (shards and records follow the key; ``lines`` must
    then sort by order); ``partitioning`` is the scheme recorded in the
    manifest and ``partition_info`` the partitioner's info PCollection.
    ``shard_format``: ``"jsonl"`` (default: JSON Lines under ``codec``) or
    ``"parquet"`` (``transforms.storage.parquet_shards``: one schema inferred from
    every kept record, recorded in the manifest's ``parquet`` section; zstd inside;
    ``codec`` is then not used).

    Shards are size-balanced (``transforms.storage.sharding``): each partition is cut
    into ``num_shards`` or ``ceil(bytes / target_shard_bytes)`` shards of about
    equal raw size.  ``codec`` is a bytes codec or its spec (``transforms.core.codecs``;
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
                 lines=None, shard_format: str = "jsonl"):
        super().__init__()
        if shard_format not in SHARD_FORMATS:
            raise ValueError(f"shard_format must be one of {SHARD_FORMATS}, got "
                             f"{shard_format!r}")
        self.shard_format = shard_format
        if lines is None:
            raise ValueError("WriteStore needs lines= (a transforms.processing.refs.ResolveRuns)")
        self.lines = lines
        check_dataset_name(dataset)
        if num_shards is not None and num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        if target_shard_bytes < 1:
            raise ValueError(f"target_shard_bytes must be >= 1, got {target_shard_bytes}")
        if (partitioning is None) != (partition_info is None):
            raise ValueError("partitioning and partition_info go together")
        self.roots = [Root(normalise_root(r.uri), r.weight) for r in roots]
        check_roots([r.uri for r in self.roots], dataset)
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
        # the generation this run replaces: the commit is a compare-and-swap on it
        self.base = committed_digest([r.uri for r in self.roots], dataset)

    def expand(self, records):
        pipeline = records.pipeline
        if self.partitioning is None:
            info = pipeline | "NoPartitionInfo" >> beam.Create([{}])
        else:
            info = self.partition_info
        info = beam.pvalue.AsSingleton(info)
        assigned = records | "BalancedShards" >> AssignBalancedShards(
            self.target_shard_bytes, self.num_shards,
            required_partitions=[""] if self.partitioning is None else [],
            size_of=getattr(self.lines, "size_of", ref_size))
        runs = assigned | "ResolveRuns" >> self.lines
        first = (self.manifest_extra.get("id_field", "id"),
                 self.manifest_extra.get("text_field", "text"))
        side = []
        codec = self.codec.describe()
        if self.shard_format == "parquet":   # one schema for every shard, before any
            side = [beam.pvalue.AsSingleton(
                runs
                | "RunSchemas" >> beam.MapTuple(
                    lambda _, run: parquet_shards.run_schema(
                        doc[-1] for doc in run_docs(run)) if run is not None else {})
                | "StoreSchema" >> beam.CombineGlobally(_MergeSchemas()))]
            codec = PARQUET_CODEC
        shards = (
            runs
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(
                _WriteShard(self.dataset, self.placement, self.codec, self.shard_format,
                            first, spill_dir=self.lines.spill_dir), info, *side)
            | "ShardList" >> beam.combiners.ToList())
        failures = (
            [pipeline | "NoPreconditions" >> beam.Create([""])] + self.preconditions
            | "Preconditions" >> beam.Flatten())
        manifest = shards | "WriteManifest" >> beam.ParDo(
            _WriteManifest(self.dataset, self.placement, codec, self.manifest_extra,
                           self.partitioning, self.base),
            beam.pvalue.AsList(failures), info, *side)
        manifest | "DeleteRuns" >> beam.Map(
            lambda _, spill_dir: delete_spill(spill_dir), self.lines.spill_dir)
        return manifest


# ---------------------------------------------------------------- reading

class _ReadShard(beam.DoFn):
    def __init__(self, manifest, store_path, parse, root_map=None):
        self.manifest = manifest
        self.store_path = store_path
        self.parse = parse
        self.root_map = root_map
        self.failovers = Metrics.counter(NAMESPACE, "read_replica_failovers")
        self.records = Metrics.counter(NAMESPACE, "read_records")

    def process(self, shard):
        raw = read_shard_verified(self.manifest, self.store_path, shard, self.failovers.inc,
                                  self.root_map)
        if self.manifest.get("kind") == "array":
            self.records.inc(shard["records"])
            yield shard["row_start"], raw
            return
        lines = raw.split(b"\n")[:-1]
        self.records.inc(len(lines))
        for line in lines:
            yield exact_json.loads(line) if self.parse else line


class ReadStore(beam.PTransform):
    """Records of a store, via its manifest: one verified replica per shard.

    A missing or corrupt replica (size or xxh3-128 mismatch) is skipped for the
    next one; a shard with no good replica fails with a message naming it.
    Text stores yield dicts (``parse=True``) or the stored JSON lines as bytes;
    array stores yield ``(first row, block ndarray)`` per block.
    ``partitions`` (names) reads only those partitions of a partitioned store.
    The manifest is the newest valid generation on any root (``load_manifest``);
    ``root_map`` (``OLD=NEW,...``) says where recorded roots are now, for a store
    whose roots moved (the opened root is always found where it was opened).
    """

    def __init__(self, store_path: str, parse: bool = True, partitions=None, root_map=None):
        super().__init__()
        self.store_path = store_path
        self.root_map = parse_root_map(root_map)
        self.manifest = load_manifest(store_path, self.root_map)
        self.parse = parse
        self.shards = select_shards(self.manifest, partitions)

    def expand(self, pbegin):
        return (
            pbegin
            | "ListShards" >> beam.Create(self.shards)
            | "ReadShards" >> beam.ParDo(
                _ReadShard(self.manifest, self.store_path, self.parse, self.root_map)))


# ---------------------------------------------------------------- verify and repair

def _manifest_rows(copies, chosen) -> list[dict]:
    rows = []
    for c in copies:
        status, detail = c.status, c.detail
        if c.status == "ok":
            m = c.manifest
            if m.get("digest") == chosen.get("digest") or (
                    "digest" not in chosen and m.get("shards") == chosen.get("shards")):
                status = "ok"
            elif m.get("generation", 0) < chosen.get("generation", 0):
                status, detail = "older_generation", (
                    f"generation {m.get('generation')}; newest is {chosen.get('generation')}")
            elif m.get("generation", 0) > chosen.get("generation", 0):
                status, detail = "newer_unavailable", (
                    f"generation {m.get('generation')} has shards with no good replica")
            else:
                status, detail = "conflicting", (
                    f"generation {m.get('generation')} with another digest")
        rows.append({"shard": MANIFEST, "root": c.root, "status": status, "path": c.path,
                     "detail": detail, "index": c.index})
    return rows


# What a verify row's status means for the committed generation (``severity``).
PROBLEM, WARNING, INFO, OK = "problem", "warning", "info", "ok"
STRAY_PREFIX = "stray:"
IN_PROGRESS = "in_progress"   # a working file of the run holding the dataset's lock
LOCKED = "locked"             # the lock of a run in progress
STALE_LOCK = STRAY_PREFIX + "stale_lock"   # the lock of a run whose process is gone
# A working file of a running writer: its spill folders and temporary files, the
# shards it has written but not committed yet, the old generation's files it is
# about to collect, partition folders it emptied.
_WORKING_KINDS = ("temp", "stale", "empty_directory")


def severity(row: dict) -> str:
    """ok; problem: the committed generation is damaged (a manifest copy or a
    replica is not ok); warning: a stray file or a stale lock, beside intact
    data (not corruption: ``verify-store`` exits 0 unless ``--strict``);
    info: a run in progress (its lock and working files)."""
    status = row["status"]
    if status == "ok":
        return OK
    if status in (IN_PROGRESS, LOCKED):
        return INFO
    if status.startswith(STRAY_PREFIX):
        return WARNING
    return PROBLEM


def verify_store(store_path: str, root_map=None, progress=None) -> list[dict]:
    """One row per manifest copy, per (shard, replica root), per stray file, and per
    dataset lock.

    The generation checked is the newest valid one whose shards are all
    available (``choose_generation``).  Manifest rows: ok, missing, invalid
    (truncated, not JSON, digest mismatch...), older_generation,
    newer_unavailable, conflicting.  Replica rows: see ``check_replica``.
    Stray rows (``status`` ``stray:<kind>``, ``find_strays``): stale, temp,
    symlink, special, directory, empty_directory, unknown; ``collectable``
    says whether repair deletes it.  While a run holds the dataset's lock
    (its process alive, or on another host), the lock is a ``locked`` row and
    that run's working files (stale, temp, empty_directory strays) are
    ``in_progress`` rows, not strays; a lock whose process is gone is a
    ``stray:stale_lock`` row.  Every row has shard, root, status, path and
    detail; ``severity`` says what a status means.  ``progress``: called as
    ``progress(bytes_read, status, stored_bytes)`` after each replica is checked
    (``bytes_read``: what was actually read from storage, 0 for a missing
    replica, ``inspect_replica``; ``stored_bytes``: its size in the manifest),
    e.g. to drive a display (``replica_bytes`` is the total), or None.
    """
    manifest, copies, paths = choose_generation(store_path, root_map, deep=True)
    rows = _manifest_rows(copies, manifest)
    for shard in manifest["shards"]:
        for root, path in replica_paths(manifest, store_path, shard, root_map):
            status, _, nbytes = inspect_replica(path, shard)
            rows.append({"shard": shard["name"], "root": root, "status": status, "path": path,
                         "detail": None})
            if progress is not None:
                progress(nbytes, status, shard["stored_bytes"])
    dataset = basename(normalise_root(store_path))
    for index, root in enumerate(root_paths(manifest, store_path, root_map)):
        directory = join(root, dataset)
        holder = read_lock(join(directory, LOCK))
        running = holder is not None and holder.alive is not False
        if holder is not None:
            rows.append({
                "shard": LOCK, "root": root, "status": LOCKED if running else STALE_LOCK,
                "path": holder.path, "collectable": not running,
                "detail": (holder.describe()
                           + (" (its host is not this one: cannot tell whether it still "
                              "runs)" if holder.alive is None else "")) if running else
                          (f"left by {holder.describe()}, a process that is gone; "
                           "--repair --break_lock removes it")})
        for stray in find_strays(root, directory, manifest, index):
            row = {"shard": stray.name, "root": root, "path": stray.path,
                   "collectable": stray.collectable}
            if running and stray.collectable and stray.kind in _WORKING_KINDS:
                rows.append({**row, "status": IN_PROGRESS,
                             "detail": f"run in progress ({stray.name})"})
            else:
                rows.append({**row, "status": f"{STRAY_PREFIX}{stray.kind}",
                             "detail": "not in the manifest; --repair deletes it"
                             if stray.collectable else
                             "not in the manifest; not ours: --repair leaves it"})
    return rows


def _reachable(root: str) -> bool:
    return not is_local(root) or os.path.isdir(root)


def replica_bytes(manifest: dict) -> int:
    """Bytes of every replica of every shard that ``manifest`` lists (what verifying
    the store reads)."""
    return sum(s["stored_bytes"] * len(s["replicas"]) for s in manifest["shards"])


def repair_store(store_path: str, root_map=None, break_lock: bool = False,
                 progress=None) -> list[dict]:
    """Make every reachable root hold the newest good generation, completely.

    Picks the newest valid generation whose shards all verify somewhere (never
    an older one over a newer valid manifest, never a manifest failing its own
    checks), rewrites each bad replica (missing, corrupt, a symlink, directory
    or special file in its place) from a verified one, writes that manifest to
    roots whose copy is missing, invalid or older, then deletes stale and
    temporary files (unknown files are reported, never deleted).  Writes only
    ``<root>/<dataset>/<shard name>`` and manifests; a root folder that does not
    exist is reported, not created.  Takes the dataset's lock (``break_lock``
    removes a stale one).  One failure does not stop the others.  ``progress``:
    as ``verify_store``'s, after each replica is checked.
    -> rows: shard, root, status, path, action.
    """
    manifest, copies, paths = choose_generation(store_path, root_map, deep=True)
    dataset = basename(normalise_root(store_path))
    paths = root_paths(manifest, store_path, root_map)
    reachable = [i for i, p in enumerate(paths) if _reachable(p)]
    done = [{"shard": "(root)", "root": paths[i], "status": "unreachable", "path": paths[i],
             "action": "skipped: root folder not found (use --root_map)"}
            for i in range(len(paths)) if i not in reachable]
    with DatasetLock([join(paths[i], dataset) for i in reachable], job="repair",
                     break_lock=break_lock) as lock:
        for path, why in lock.broken:   # stale locks removed: (path, "<holder>; <why>")
            root = next((p for p in paths if path == join(p, dataset, LOCK)), "?")
            done.append({"shard": LOCK, "root": root, "status": f"stale lock ({why})",
                         "path": path, "action": "removed (--break_lock)"})
        for shard in manifest["shards"]:
            good = None
            bad = []
            for index in shard["replicas"]:
                path = join(paths[index], dataset, shard["name"])
                status, data, nbytes = inspect_replica(path, shard)
                if progress is not None:
                    progress(nbytes, status, shard["stored_bytes"])
                if status == "ok":
                    good = good or (paths[index], data)
                elif index in reachable:
                    bad.append((index, path, status))
            for index, path, status in bad:
                row = {"shard": shard["name"], "root": paths[index], "status": status,
                       "path": path}
                if good is None:
                    done.append({**row, "action": "unrecoverable: no good replica"})
                    continue
                try:
                    replaced = replace_with_file(path, good[1])
                    how = "" if replaced in ("file", "missing") else f" (replaced a {replaced})"
                    done.append({**row, "action": f"copied from {good[0]}{how}"})
                except Exception as err:  # noqa: BLE001 - go on with the next fault
                    done.append({**row, "action": f"failed: {err}"})
        newer = False
        for row in _manifest_rows(copies, manifest):
            if row["status"] == "ok" or row["index"] not in reachable:
                continue
            if row["status"] == "newer_unavailable":
                newer = True
                done.append({**row, "action": "left in place: a newer generation is never "
                             "rolled back"})
                continue
            try:
                replaced = replace_with_file(row["path"],
                                             manifest_bytes(for_root(manifest, row["index"])))
                done.append({**row, "action": f"wrote generation {manifest.get('generation')}"
                             + ("" if replaced in ("file", "missing") else
                                f" (replaced a {replaced})")})
            except Exception as err:  # noqa: BLE001
                done.append({**row, "action": f"failed: {err}"})
        if newer or len(reachable) < len(paths):
            return done   # files of a newer generation (or on an unseen root) may be live
        for index in reachable:
            directory = join(paths[index], dataset)
            for stray in find_strays(paths[index], directory, manifest, index):
                row = {"shard": stray.name, "root": paths[index], "status": f"stray:{stray.kind}",
                       "path": stray.path}
                if not stray.collectable:
                    done.append({**row, "action": "left in place (not ours to delete)"})
                    continue
                try:
                    delete_quietly(stray.path)
                    done.append({**row, "action": "deleted"})
                except Exception as err:  # noqa: BLE001
                    done.append({**row, "action": f"failed: {err}"})
    return done
