"""Commit by generation: how a store changes without ever being damaged.

The manifest is the one commit point on each root.  A run writes its shard
files under names derived from their content (``shard-00000-of-00004-<16 hex
of the xxh3-128>.jsonl.zst``), so a new file can never land on a file that a
committed manifest references with other bytes, and a rerun with the same
inputs writes the same names and bytes.  The manifest carries

- ``generation``: 1 for the first commit, +1 for each commit that changes the
  dataset (a rerun that produces the same dataset keeps its generation, so
  reruns stay byte-identical);
- ``previous``: the digest of the generation it replaced (None for the first);
- ``digest``: xxh3-128 of the canonical manifest without ``digest`` and
  ``root_index``: the manifest's own check (one changed digit fails it) and
  the generation's id;
- ``root_index``: which of ``roots`` this copy lives on (the only field that
  differs between copies); replicas are recorded as root indices, so a copied
  or moved root still reads and verifies (``root_map`` remaps the others).

Commit (``commit_generation``): check that the newest committed generation is
still the one the run started from (compare-and-swap), write the new manifest
to every root (each copy atomically), and only then collect the files no
manifest references (``collect_garbage``).  A crash before the first manifest
copy leaves the old dataset; between copies each root holds a complete old or
new dataset (no file of either was deleted); readers and repair take the
newest valid generation (``transforms.storage.store.open_store``).

Audit outputs (dead letters, removed records, run reports) live in
``<dataset>/_audit/``, temporary files start with ``.tmp-`` and end ``.tmp``,
and the lock is ``<dataset>/.lock``: globs ``shard-*``, ``*.jsonl.zst``,
``*.bdparr`` (and ``*/shard-*`` for partitioned stores) over the dataset
folder match data shards only.
"""
import contextlib
import datetime
import errno
import json
import os
import platform
import re
import shutil
import stat
import threading
import uuid
from dataclasses import dataclass, field

import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.core import exact_json
from transforms.core.hashing import checksum
from transforms.storage.files import join, read_bytes, share_s3_clients
from transforms.core.partition_names import is_safe_name

MANIFEST = "manifest.json"
FORMAT = "beam-dataprep-store"
FORMAT_VERSION = 2
AUDIT_DIR = "_audit"
LOCK = ".lock"
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".tmp"
SPILL_PREFIX = ".runs-"   # transforms.processing.refs' spill folders of the by-reference path
SEAL_FIELDS = ("generation", "previous", "digest", "root_index")
KILL_ENV = "DATAPREP_KILL_AT"   # fault injection: SIGKILL this process at the Nth write step

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_SHARD_FILE = re.compile(r"^shard-\d{5}-of-\d{5}(-[0-9a-f]{16})?\.(jsonl(\.[a-z0-9]+)?|bdparr)$")


class StoreError(RuntimeError):
    """A store cannot be read or verified (missing manifest, no good replica...)."""


class NoStore(StoreError):
    """No root holds a manifest file for this dataset at all: the path names no
    store (a typo, an unmounted disk), unlike a store whose manifests are all
    damaged (a plain StoreError)."""


class ConcurrentWriteError(StoreError):
    """Another writer committed (or holds the lock) while this run was writing."""


def not_a_folder(directory: str) -> str | None:
    """Why a local folder cannot be made: the first part of its path that exists and
    is not a folder (a file, or a link to nothing); None if there is none."""
    path = os.path.abspath(directory)
    while path != os.path.dirname(path):
        if os.path.islink(path) and not os.path.exists(path):
            return f"{path} is a link to {os.readlink(path)}, which does not exist"
        if os.path.exists(path) and not os.path.isdir(path):
            return f"{path} is a file, not a folder"
        path = os.path.dirname(path)
    return None


class RootNotWritable(OSError):
    """An output root where the dataset's lock cannot be written (read-only, missing
    parent that cannot be made): the run stops before writing anything."""


class DatasetLocked(StoreError):
    """The dataset's lock is held by another writer (or was left by a killed run).
    ``hint``: what to do, by whether the holder still runs (``DatasetLock``)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


# ---------------------------------------------------------------- names and paths

def check_dataset_name(name: str) -> str:
    """A dataset is a plain folder name: ``[A-Za-z0-9][A-Za-z0-9._-]*``, at most
    200 characters (so never ``.``, ``..``, a path, hidden or ``_audit``).
    Raises ValueError naming it."""
    if not isinstance(name, str) or not _DATASET_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"dataset must be a plain folder name ([A-Za-z0-9][A-Za-z0-9._-]*), "
                         f"got {name!r}")
    return name


def is_local(path: str) -> bool:
    return "://" not in path


def parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] if "/" in path.rstrip("/") else "."


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def is_shard_file(name: str) -> bool:
    """True for a file name a store writer gives shards (with or without digest)."""
    return bool(_SHARD_FILE.match(name))


def temp_name(name: str) -> str:
    return f"{TEMP_PREFIX}{name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"


# ---------------------------------------------------------------- fault injection

_steps = {"count": 0}


def fault_point(what: str, name: str = "") -> None:
    """Count a write step of the file called ``name``; with ``$DATAPREP_KILL_AT=N``
    the Nth step SIGKILLs the process (the fault-injection suite's kill -9 at each
    commit point); with ``$DATAPREP_KILL_AT=N@NAME`` the Nth step of a file called
    NAME does (``2@manifest.json``: the second manifest copy's first step, i.e.
    just after the first copy was committed)."""
    limit = os.environ.get(KILL_ENV)
    if not limit:
        return
    count, _, only = limit.partition("@")
    if only and only != name:
        return
    _steps["count"] += 1
    if _steps["count"] == int(count):
        os.kill(os.getpid(), 9)


# ---------------------------------------------------------------- object stores

# On s3:// a rename is a copy and a delete (two requests, not atomic), but one PUT
# is atomic: a reader sees the old object or the whole new one, never a part.  So
# s3:// files are PUT in place, and the lock and the manifests use S3's
# conditional writes (If-None-Match: * creates only if absent; If-Match: ETag
# replaces only the object that was read), which AWS S3 (since 2024), SeaweedFS,
# MinIO and Ceph implement.  gs:// and hdfs:// keep temp-and-rename.
S3_SINGLE_PUT_MAX = 4 << 30    # above this, boto3's multipart upload (atomic on completion)


class ConditionalWriteFailed(Exception):
    """An S3 conditional write was refused: the object is not as the writer last saw it."""


class ConditionalWritesUnsupported(Exception):
    """The S3 server rejects conditional writes (HTTP 501 NotImplemented)."""


def s3_location(path: str):
    """``(boto3 client, bucket, key)`` for an ``s3://`` path, None for any other.

    The client is Beam's own (``boto3_client.Client``, shared per options by
    ``files.share_s3_clients``), built from the S3Options that ``FileSystems``
    holds (``--s3_endpoint_url``, keys, region, ...: the run config or the
    command line; workers get them from the pipeline options), so our requests
    go where Beam's do."""
    if not path.startswith("s3://"):
        return None
    share_s3_clients()
    from apache_beam.io.aws.clients.s3 import boto3_client
    from apache_beam.options.pipeline_options import PipelineOptions
    options = getattr(FileSystems.get_filesystem(path), "_options", None) or PipelineOptions([])
    bucket, _, name = path[len("s3://"):].partition("/")
    return boto3_client.Client(options=options).client, bucket, name


def _s3_error(err) -> tuple[int, str]:
    response = getattr(err, "response", None) or {}
    return (response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0),
            response.get("Error", {}).get("Code", ""))


def s3_put(path: str, data: bytes, if_none_match: bool = False,
           if_match: str | None = None) -> str:
    """PUT ``data`` at an ``s3://`` path in one request -> the new ETag.  With
    ``if_none_match`` only if no object is there; with ``if_match`` only if the
    object's ETag is still that one.  A refused condition (412, or 409 for a
    concurrent conditional write) is ConditionalWriteFailed; a server without
    conditional writes (501) is ConditionalWritesUnsupported."""
    client, bucket, key = s3_location(path)
    conditions = {}
    if if_none_match:
        conditions["IfNoneMatch"] = "*"
    if if_match:
        conditions["IfMatch"] = if_match
    if len(data) > S3_SINGLE_PUT_MAX and not conditions:
        import io
        client.upload_fileobj(io.BytesIO(data), bucket, key)
        return client.head_object(Bucket=bucket, Key=key)["ETag"]
    try:
        return client.put_object(Bucket=bucket, Key=key, Body=data, **conditions)["ETag"]
    except Exception as err:  # noqa: BLE001 - botocore's ClientError, told apart by status
        status, code = _s3_error(err)
        if conditions and (status in (409, 412) or code in (
                "PreconditionFailed", "ConditionalRequestConflict")):
            raise ConditionalWriteFailed(f"{path}: {code or status}") from err
        if conditions and (status == 501 or code == "NotImplemented"):
            raise ConditionalWritesUnsupported(f"{path}: {code or status}") from err
        raise


def s3_get(path: str) -> tuple[bytes, str] | None:
    """``(bytes, ETag)`` of an ``s3://`` object in one GET (so the ETag is the one of
    these bytes), None when there is none."""
    client, bucket, key = s3_location(path)
    try:
        found = client.get_object(Bucket=bucket, Key=key)
    except Exception as err:  # noqa: BLE001
        if _s3_error(err)[0] == 404 or _s3_error(err)[1] in ("NoSuchKey", "404"):
            return None
        raise
    return found["Body"].read(), found["ETag"]


# ---------------------------------------------------------------- files

def _delete(path: str) -> None:
    if is_local(path):
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            shutil.rmtree(path)
    else:
        FileSystems.delete([path])


def delete_quietly(path: str) -> None:
    try:
        _delete(path)
    except Exception:  # noqa: BLE001 - best effort clean-up of a temp file
        pass


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary sibling (``.tmp-<name>.<uuid>.tmp``) and rename
    it to ``path``.  A failed write (a full disk) deletes its temporary file.
    On ``s3://`` one PUT in place instead (atomic there; a rename is not)."""
    directory, name = parent(path), basename(path)
    if s3_location(path):
        fault_point("before put", name)
        s3_put(path, data)
        return
    tmp = join(directory, temp_name(name))
    try:
        with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as out:
            view = memoryview(data)   # the halves are written without copying them
            half = len(data) // 2
            out.write(view[:half])
            if os.environ.get(KILL_ENV):
                out.flush()
                fault_point("partial temp file", name)
            out.write(view[half:])
        fault_point("before rename", name)
        FileSystems.rename([tmp], [path])
    except BaseException:
        delete_quietly(tmp)
        raise


def file_kind(path: str) -> str:
    """``file``, ``missing``, ``symlink``, ``directory`` or ``special`` (never follows links)."""
    if not is_local(path):
        return "file" if FileSystems.exists(path) else "missing"
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "special"


def replace_with_file(path: str, data: bytes) -> str:
    """Put ``data`` at ``path`` as a regular file, whatever is there now; -> what was
    replaced.  A directory in the way is moved to ``<dataset>/_audit/displaced/``
    (never deleted); a symlink or special file is unlinked (not its target)."""
    kind = file_kind(path)
    if kind == "directory":
        displaced = join(parent(path), AUDIT_DIR, "displaced",
                         f"{basename(path)}.{uuid.uuid4().hex[:8]}")
        os.makedirs(parent(displaced), exist_ok=True)
        os.rename(path, displaced)
    elif kind in ("symlink", "special"):
        os.unlink(path)
    write_atomically(path, data)
    return kind


# ---------------------------------------------------------------- manifest

def manifest_bytes(manifest: dict) -> bytes:
    """Canonical serialisation: sorted keys, so equal content is equal bytes."""
    return exact_json.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def body_of(manifest: dict) -> dict:
    """The manifest without its seal (generation, previous, digest, root_index)."""
    return {k: v for k, v in manifest.items() if k not in SEAL_FIELDS}


def manifest_digest(manifest: dict) -> str:
    """The generation's id: xxh3-128 of the canonical manifest minus digest and root_index."""
    return checksum(manifest_bytes(
        {k: v for k, v in manifest.items() if k not in ("digest", "root_index")}))


def seal(body: dict, generation: int, previous: str | None) -> dict:
    sealed = {**body_of(body), "generation": generation, "previous": previous}
    sealed["digest"] = manifest_digest(sealed)
    return sealed


def for_root(manifest: dict, index: int) -> dict:
    return {**manifest, "root_index": index}


def manifest_problem(manifest) -> str | None:
    """Why a parsed manifest cannot be trusted, or None.  Checks the format, the
    digest (v2), a safe dataset name, safe unique shard names, replicas within
    the roots, and the totals against the shards."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"not a {FORMAT} manifest"
    version = manifest.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        return f"format version {version!r}; this reader understands up to {FORMAT_VERSION}"
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        return "no shard list"
    for shard in shards:
        name = shard.get("name", "") if isinstance(shard, dict) else ""
        if not isinstance(name, str) or not is_safe_relative(name):
            return f"unsafe shard path {name!r}"
    if version < 2 and "digest" not in manifest and "generation" not in manifest:
        return None   # v1 manifests carry neither digest nor generation
    if manifest.get("digest") != manifest_digest(manifest):
        return "digest does not match its content (changed or damaged)"
    try:
        check_dataset_name(manifest.get("dataset"))
    except ValueError as err:
        return str(err)
    roots = manifest.get("roots")
    if not isinstance(roots, list) or not roots:
        return "no roots"
    names = [s["name"] for s in shards]
    if len(set(names)) != len(names):
        return "a shard is listed twice"
    for s in shards:
        reps = s.get("replicas")
        if (not isinstance(reps, list) or not reps or len(set(reps)) != len(reps)
                or not all(isinstance(r, int) and 0 <= r < len(roots) for r in reps)):
            return f"shard {s['name']}: replicas {reps!r} are not distinct root indices"
    if manifest.get("num_shards") != len(shards) or manifest.get("records") != sum(
            s.get("records", 0) for s in shards):
        return "totals disagree with the shard list"
    if not isinstance(manifest.get("generation"), int) or manifest["generation"] < 1:
        return "no generation"
    index = manifest.get("root_index")
    if index is not None and not (isinstance(index, int) and 0 <= index < len(roots)):
        return f"root_index {index!r} outside the roots"
    return None


def is_safe_relative(name: str) -> bool:
    """A shard name stays inside its dataset folder: ``[partition/]file``, safe parts."""
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(is_safe_name(p) for p in parts)


@dataclass
class ManifestCopy:
    """One root's manifest as found: status ``ok``, ``missing`` or ``invalid``."""
    index: int | None
    root: str
    path: str
    status: str
    manifest: dict | None = None
    detail: str = ""
    hint: dict | None = None     # a parseable but invalid manifest (its roots are hints)


def read_manifest_copy(path: str, index=None, root="") -> ManifestCopy:
    kind = file_kind(path)
    if kind == "missing":
        return ManifestCopy(index, root, path, "missing", detail="no manifest")
    if kind != "file":
        return ManifestCopy(index, root, path, "invalid", detail=f"a {kind}, not a file")
    try:
        data = read_bytes(path)
    except Exception as err:  # noqa: BLE001
        return ManifestCopy(index, root, path, "invalid", detail=f"unreadable: {err}")
    try:
        manifest = exact_json.loads(data)
    except orjson.JSONDecodeError as err:
        return ManifestCopy(index, root, path, "invalid",
                            detail=f"not valid JSON (truncated?): {err}")
    problem = manifest_problem(manifest)
    if problem:
        return ManifestCopy(index, root, path, "invalid", detail=problem,
                            hint=manifest if isinstance(manifest, dict) else None)
    return ManifestCopy(index, root, path, "ok", manifest)


def newest(copies: list[ManifestCopy]) -> list[dict]:
    """Distinct valid manifests, newest generation first (ties by digest)."""
    seen = {}
    for c in copies:
        if c.status == "ok":
            m = c.manifest
            seen.setdefault(m.get("digest") or manifest_digest(m), m)
    return sorted(seen.values(), key=lambda m: (-m.get("generation", 0), m.get("digest", "")))


# ---------------------------------------------------------------- commit

def survey_roots(roots: list[str], dataset: str) -> list[ManifestCopy]:
    return [read_manifest_copy(join(root, dataset, MANIFEST), i, root)
            for i, root in enumerate(roots)]


def committed_digest(roots: list[str], dataset: str) -> str | None:
    """The digest of the newest committed generation on these roots (None: none yet)."""
    found = newest(survey_roots(roots, dataset))
    return found[0].get("digest") if found else None


def referenced(manifest: dict, index: int) -> set[str]:
    """Shard names the manifest places on root ``index``."""
    return {s["name"] for s in manifest["shards"] if index in s["replicas"]}


# ---------------------------------------------------------------- commit gate

GATE_ENV = "DATAPREP_COMMIT_GATE"   # a local file every process of one run shares
_GATE_CLOSED = b"closed"
_GATE_COMMITTED = b"committed"   # at offset len(_GATE_CLOSED): a commit of the run ended
_gate = threading.Lock()
_gate_state = {"closed": False, "committed": False}


class CommitRefused(StoreError):
    """The run was interrupted (``close_commit_gate``): no commit starts any more."""


@contextlib.contextmanager
def commit_gate():
    """Held around a commit (``commit_generation``): raises CommitRefused once the run
    was interrupted, and makes ``close_commit_gate`` wait for a commit under way.

    Threads of this process share a lock; the SDK worker processes of a run (the
    multi-process DirectRunner) share the file named by ``$DATAPREP_COMMIT_GATE``
    (``fcntl.flock``; set by ``pipelines.progress.run_temp_dir`` and inherited by
    the workers).  Without the variable (a worker on another machine) only the
    in-process lock applies."""
    with _gate:
        if _gate_state["closed"]:
            raise CommitRefused("not committing: the run was interrupted")
        path = os.environ.get(GATE_ENV)
        if not path:
            yield
            _gate_state["committed"] = True
            return
        import fcntl
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.pread(fd, len(_GATE_CLOSED), 0) == _GATE_CLOSED:
                raise CommitRefused("not committing: the run was interrupted")
            yield
            _gate_state["committed"] = True
            os.pwrite(fd, _GATE_COMMITTED, len(_GATE_CLOSED))
        finally:
            os.close(fd)   # releases the flock


def close_commit_gate() -> None:
    """No commit starts from now on, in this process or (through ``$DATAPREP_COMMIT_GATE``)
    the run's worker processes; returns once a commit under way has ended.  After it,
    whether the run committed (the manifest) cannot change any more."""
    with _gate:
        _gate_state["closed"] = True
        path = os.environ.get(GATE_ENV)
        if not path:
            return
        import fcntl
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:   # the run's folder is gone: no worker can open the gate either
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.pwrite(fd, _GATE_CLOSED, 0)
        finally:
            os.close(fd)


def open_commit_gate() -> None:
    """Commits allowed again in this process (a new run starts)."""
    with _gate:
        _gate_state.update(closed=False, committed=False)


def run_committed() -> bool:
    """Did a commit of this run end (``commit_gate``), in this process or one of the
    run's worker processes (``$DATAPREP_COMMIT_GATE``)?  True also for a commit that
    rewrote the same bytes (a rerun of the same inputs keeps its generation and
    digest, so the digest cannot tell).  Ask after ``close_commit_gate``."""
    if _gate_state["committed"]:
        return True
    path = os.environ.get(GATE_ENV)
    if not path:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(len(_GATE_CLOSED))
            return f.read(len(_GATE_COMMITTED)) == _GATE_COMMITTED
    except OSError:
        return False


def commit_generation(body: dict, dataset: str, roots: list[str], base: str | None) -> dict:
    """Commit ``body`` (a manifest without seal) as the next generation -> sealed manifest.

    ``base`` is the digest of the newest generation when the run started; if
    another writer committed since, ConcurrentWriteError is raised and nothing
    is written.  A body equal to the committed one keeps its generation.
    ``s3://`` copies are written first, each by a conditional PUT that the
    server refuses if another writer replaced that copy since it was read
    (``_put_manifest_if_unchanged``; ConcurrentWriteError).  CommitRefused
    (nothing written) once the run was interrupted (``commit_gate``).
    """
    with commit_gate():
        return _commit_generation(body, dataset, roots, base)


def _commit_generation(body, dataset, roots, base):
    found = newest(survey_roots(roots, dataset))
    current = found[0] if found else None
    now = current.get("digest") if current else None
    retried = (current is not None and current.get("previous") == base
               and body_of(current) == body_of(body))   # a retried bundle: our own commit
    if now != base and not retried:
        raise ConcurrentWriteError(
            f"not committing: dataset {dataset}: generation {current.get('generation') if current else None} "
            f"({now}) was committed by another writer after this run started from {base}; "
            "not committing (the committed dataset is left as it is)")
    if retried or (current is not None and body_of(current) == body_of(body)):
        sealed = seal(body, current["generation"], current.get("previous"))
    else:
        sealed = seal(body, (current or {}).get("generation", 0) + 1,
                      current.get("digest") if current else None)
    # every replica the generation names is there before any manifest copy names it:
    # a writer that lost them (two runs holding the lock at once on a store whose lock
    # is not atomic, the other run's clean-up deleting them) fails instead of
    # committing a generation that cannot be read
    missing = missing_replicas(sealed, dataset, roots)
    if missing:
        raise StoreError(
            f"not committing: {len(missing)} replica(s) the new generation names are not "
            f"there (e.g. {missing[0]}); was another run writing this dataset? (the "
            "committed dataset is left as it is)")
    # s3:// roots first, each copy replacing only the manifest this commit started
    # from (If-Match on its ETag, If-None-Match for a first commit): of two writers
    # that both passed the check above, the one refused at the first s3:// root
    # has written no manifest.  Local (and gs://, hdfs://) copies follow.
    order = sorted(range(len(roots)), key=lambda i: (not s3_location(roots[i]), i))
    for index in order:
        path = join(roots[index], dataset, MANIFEST)
        data = manifest_bytes(for_root(sealed, index))
        if s3_location(path):
            _put_manifest_if_unchanged(path, data, base, sealed, first=index == order[0])
        elif file_kind(path) not in ("file", "missing"):
            replace_with_file(path, data)
        else:
            write_atomically(path, data)
    collect_garbage(roots, dataset, sealed)
    return sealed


def missing_replicas(manifest: dict, dataset: str, roots: list[str]) -> list[str]:
    """Paths of the replicas ``manifest`` places on ``roots`` that are not files there
    (one listing per root: ``list_dataset``), sorted."""
    missing = []
    for index, root in enumerate(roots):
        directory = join(root, dataset)
        present = {name for name, kind in list_dataset(directory) if kind == "file"}
        missing += [join(directory, name) for name in sorted(referenced(manifest, index) - present)]
    return missing


def _put_manifest_if_unchanged(path: str, data: bytes, base: str | None, sealed: dict,
                               first: bool) -> None:
    """Compare-and-swap of one ``s3://`` manifest copy: replace the copy only if it is
    still the one read now, and only if that one is the run's base generation, an
    older one, ours (a retried commit) or damaged; otherwise ConcurrentWriteError."""
    fault_point("before put", basename(path))
    found = s3_get(path)
    etag = None
    if found is not None:
        copy, etag = found
        try:
            there = exact_json.loads(copy)
        except orjson.JSONDecodeError:
            there = None
        if isinstance(there, dict) and manifest_problem(there) is None:
            theirs = there.get("digest")
            if theirs not in (base, sealed["digest"]) and there.get("generation", 0) >= \
                    sealed["generation"]:
                raise ConcurrentWriteError(
                    f"not committing: {path} holds generation {there.get('generation')} "
                    f"({theirs}), committed by another writer after this run started from "
                    f"{base}" + ("" if first else "; the copies before it already hold "
                                 f"generation {sealed['generation']}: run verify_store "
                                 "--repair"))
    try:
        s3_put(path, data, if_none_match=found is None, if_match=etag)
    except ConditionalWriteFailed as err:
        raise ConcurrentWriteError(
            f"not committing: {path} was replaced by another writer while this run "
            f"committed ({err})" + ("" if first else "; the copies before it already hold "
                                    f"generation {sealed['generation']}: run verify_store "
                                    "--repair")) from None
    except ConditionalWritesUnsupported:
        import logging
        logging.getLogger(__name__).warning(
            "%s: the S3 server does not support conditional writes; manifest written "
            "without compare-and-swap", path)
        s3_put(path, data)


def remove_empty_folders(directory: str, itself: bool = True) -> None:
    """Remove the empty folders under a local ``directory``, deepest first, and (with
    ``itself``) ``directory`` once it is empty: what a run that committed nothing
    leaves (``_audit/last_run/``, partition folders, the dataset folder of a first
    run).  A folder holding anything (a file, a link, another run's lock) stays; a
    URI is left alone (object stores have no folders)."""
    if not is_local(directory) or not os.path.isdir(directory) or os.path.islink(directory):
        return
    for top, _, _ in os.walk(directory, topdown=False):
        if top != directory or itself:
            with contextlib.suppress(OSError):   # not empty: kept
                os.rmdir(top)


def folders_to_make(roots: list[str]) -> list[str]:
    """The local folders a run writing to ``roots`` will create: each root that does
    not exist and every missing folder above it (``out/a`` and ``out`` for the default
    roots in an empty folder), deepest first: what ``leave_nothing_behind`` removes
    again (if empty) after a run that committed nothing."""
    found = set()
    for root in roots:
        if not is_local(root):
            continue
        path = os.path.abspath(root)
        while not os.path.lexists(path) and path != os.path.dirname(path):
            found.add(path)
            path = os.path.dirname(path)
    return sorted(found, key=lambda p: (-p.count(os.sep), p))


def leave_nothing_behind(lock, directories: list[str], made: list[str],
                         committed: bool) -> None:
    """Release a job's dataset ``lock``; when the run ``committed`` nothing (it failed
    or was cancelled), remove the empty folders it leaves: under the dataset folders
    while the lock is still held (``_audit/last_run/``, ``_audit/``, partition
    folders), then the dataset folders themselves if empty (a first run's), and the
    roots in ``made`` (local roots that did not exist before the run) if empty.  A
    failed run's dead letters, and anything else, keep their folders.  A lock this
    run did not take (held by another run) only releases: those folders are not ours.
    ``made``: ``folders_to_make`` before the run (deepest first)."""
    ours = bool(lock.held)
    if ours and not committed:
        for directory in directories:
            remove_empty_folders(directory, itself=False)
    lock.release()
    if ours and not committed:
        for folder in list(directories) + list(made):
            if is_local(folder):
                with contextlib.suppress(OSError):   # holding anything (a new lock): kept
                    os.rmdir(folder)


def discard_uncommitted(entries: list[dict], dataset: str, roots: list[str]) -> None:
    """A failed run removes the shard files it wrote that no committed manifest references."""
    keep = set()
    for copy in survey_roots(roots, dataset):
        if copy.status == "ok":
            keep |= {(copy.index, n) for n in referenced(copy.manifest, copy.index)}
    for entry in entries:
        for index in entry["replicas"]:
            if (index, entry["name"]) not in keep:
                path = join(roots[index], dataset, entry["name"])
                if file_kind(path) == "file":
                    delete_quietly(path)


# ---------------------------------------------------------------- strays and collection

@dataclass
class Stray:
    """A file in a dataset folder that the manifest does not account for."""
    root: str
    path: str
    name: str           # relative to the dataset folder
    kind: str           # stale, temp, unknown, symlink, special, directory
    collectable: bool   # repair / a writer may delete it


def list_dataset(directory: str) -> list[tuple[str, str]]:
    """``(relative name, kind)`` of every entry under a dataset folder, not following
    links and not entering ``_audit``; kinds as ``file_kind``."""
    out = []
    if not is_local(directory):
        for pattern in ("*", "*/*"):
            try:
                metas = FileSystems.match([join(directory, pattern)])[0].metadata_list
            except Exception:  # noqa: BLE001 - nothing there
                metas = []
            for m in metas:
                name = m.path[len(directory.rstrip("/")) + 1:]
                if not name.startswith(AUDIT_DIR + "/"):
                    out.append((name, "file"))
        return sorted(set(out))
    if not os.path.isdir(directory) or os.path.islink(directory):
        return []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name == AUDIT_DIR:
            continue
        kind = file_kind(entry.path)
        if kind == "directory" and not entry.name.startswith(SPILL_PREFIX) \
                and not is_shard_file(entry.name):
            inner = sorted(os.scandir(entry.path), key=lambda e: e.name)
            if not inner:
                out.append((entry.name, "empty_directory"))
            for sub in inner:
                out.append((f"{entry.name}/{sub.name}", file_kind(sub.path)))
        else:
            out.append((entry.name, kind))
    return out


def find_strays(root: str, directory: str, manifest: dict | None, index: int | None,
                spill_is_temp: bool = True) -> list[Stray]:
    """Entries of one root's dataset folder that the manifest does not reference there.

    stale: a shard file of another generation (or on a root not holding it);
    temp: ``.tmp-*`` files and ``.runs-*`` spill folders of killed runs;
    symlink / special: a symlink or special file (FIFO, socket, device);
    directory: a folder holding files, below a partition folder;
    empty_directory: an empty folder (a partition a rewrite emptied);
    unknown: any other file.

    ``collectable`` (a writer's collection and repair may delete it) only for
    what is ours by its name: stale shards, temporary files and spill
    folders, a symlink or special file under a shard's name, and empty
    folders.  A file, link or folder under any other name is not ours: it is
    reported, never deleted.
    """
    refs = referenced(manifest, index) if manifest is not None and index is not None else None
    strays = []
    for name, kind in list_dataset(directory):
        path = join(directory, name)
        base = basename(name)
        if name in (MANIFEST, LOCK):
            continue
        if refs is not None and name in refs:
            if kind == "file":
                continue
            # a referenced name that is not a regular file is a replica problem,
            # reported (and replaced) by verify/repair, not a stray
            continue
        if base.startswith(TEMP_PREFIX) or name.startswith(SPILL_PREFIX):
            if name.startswith(SPILL_PREFIX) and not spill_is_temp:
                continue
            strays.append(Stray(root, path, name, "temp", True))
        elif kind == "empty_directory":
            strays.append(Stray(root, path, name, "empty_directory", True))
        elif kind in ("symlink", "special"):
            strays.append(Stray(root, path, name, kind, is_shard_file(base)))
        elif kind == "directory":
            strays.append(Stray(root, path, name, "directory", False))
        elif is_shard_file(base) and kind == "file" and refs is not None:
            strays.append(Stray(root, path, name, "stale", True))
        else:
            strays.append(Stray(root, path, name, "unknown", False))
    return strays


def collect_garbage(roots: list[str], dataset: str, manifest: dict,
                    spill_is_temp: bool = False) -> list[Stray]:
    """After a commit: delete what ``find_strays`` marks collectable on every root."""
    removed = []
    for index, root in enumerate(roots):
        directory = join(root, dataset)
        for stray in find_strays(root, directory, manifest, index, spill_is_temp):
            if stray.collectable:
                fault_point("collect")
                try:
                    _delete(stray.path)
                except FileNotFoundError:
                    continue
                removed.append(stray)
        if is_local(directory) and os.path.isdir(directory):
            for entry in os.scandir(directory):   # partition folders a rewrite emptied
                if (entry.is_dir(follow_symlinks=False) and entry.name != AUDIT_DIR
                        and not entry.name.startswith(SPILL_PREFIX)):
                    try:
                        os.rmdir(entry.path)
                    except OSError:
                        pass   # not empty
    return removed


def discard_failed_run(roots: list[str], dataset: str) -> list[Stray]:
    """After a run failed (its lock still held): delete the shard and temp files it
    left that the committed generation does not reference, as its commit would have.

    Only when every root holds a valid manifest of one and the same generation
    (same digest), or none holds one (a first run: all its shard files go): with
    roots that disagree (a crash between manifest copies)
    nothing is deleted, so no root loses the files of the generation it reads;
    ``verify_store --repair`` rolls them forward.  Spill folders are left to the
    job (``spill_is_temp=False``).  Returns what was deleted.
    """
    copies = survey_roots(roots, dataset)
    if copies and all(c.status == "missing" for c in copies):
        # a first run (no root holds a manifest: nothing was ever committed here):
        # every shard file it wrote is its own, none referenced
        return collect_garbage(roots, dataset, {"shards": []})
    if not copies or any(c.status != "ok" for c in copies):
        return []
    if len({c.manifest.get("digest") for c in copies}) != 1:
        return []
    return collect_garbage(roots, dataset, copies[0].manifest)


# ---------------------------------------------------------------- lock

@dataclass
class DatasetLock:
    """One writer per dataset: ``<root>/<dataset>/.lock`` on every root, created
    exclusively: ``O_EXCL`` on local roots, a conditional PUT (If-None-Match: *)
    on ``s3://`` (atomic: of writers racing for it exactly one gets it); on
    ``gs://`` and ``hdfs://`` (and an S3 server without conditional writes, with
    a warning) exists-then-create, not atomic: there the generation
    compare-and-swap at commit is the backstop.

    ``break_lock=True`` removes existing locks first (a run killed with -9
    leaves its lock; the message of DatasetLocked says so).  Use as a context
    manager; released (only if still ours) on exit, also on failure.
    """
    directories: list[str]
    job: str = "dataprep"
    break_lock: bool = False
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    held: list[str] = field(default_factory=list)
    # what --break_lock removed: (lock path, "<holder>; <why it counted as stale>")
    broken: list[tuple[str, str]] = field(default_factory=list)

    def __enter__(self):
        try:
            self.acquire()
        except BaseException:   # e.g. Ctrl-C while taking it: __exit__ will not run
            self.release()
            raise
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def acquire(self):
        """Take the lock on every dataset folder (sorted), or raise with none taken and
        no folder left that this call made: DatasetLocked (held; the message says by
        whom and whether it still runs), RootNotWritable (cannot be made or written)."""
        me = {"pid": os.getpid(), "host": platform.node(), "job": self.job,
              "token": self.token,
              "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        me.update({k: v for k, v in _process_identity(os.getpid()).items()
                   if k in ("boot_id", "start_ticks")})   # exact liveness (_pid_alive)
        info = json.dumps(me).encode()
        # what this call may create (deepest first): removed again, if empty, on failure
        made = folders_to_make([d for d in self.directories if is_local(d)])
        try:
            for directory in sorted(self.directories):
                path = join(directory, LOCK)
                if self.break_lock:
                    self._break(path)
                # held before it is made: an exception (KeyboardInterrupt) right after
                # the lock was made still releases it (release deletes only our token's)
                self.held.append(path)
                try:
                    self._create(directory, path, info)
                except OSError as err:   # cannot be made or written (/proc/x, EROFS, ENOSPC)
                    in_the_way = (is_local(directory) and not os.path.isdir(directory)
                                  and not_a_folder(directory))
                    if in_the_way:   # a file, or a link to nothing, where a folder must be
                        raise RootNotWritable(
                            f"cannot write the dataset's lock {path}: {in_the_way}") from None
                    if isinstance(err, FileExistsError):
                        raise DatasetLocked(*self._message(path)) from None
                    raise RootNotWritable(
                        f"cannot write the dataset's lock {path}: "
                        f"{(err.strerror or str(err)).lower()}") from None
        except BaseException:
            self.release()
            for folder in made:
                with contextlib.suppress(OSError):   # holding anything: not ours to remove
                    os.rmdir(folder)
            raise

    def _break(self, path: str) -> None:
        """``--break_lock``: remove the lock at ``path`` unless its holder still runs here.
        Local: the lock judged is moved aside, then compared: a lock taken meanwhile by
        another run (not the one judged) is put back and the run refused."""
        if file_kind(path) == "missing":
            return
        try:
            judged = read_bytes(path)
        except Exception:  # noqa: BLE001 - gone meanwhile (or unreadable: judged empty)
            judged = b""
        holder = lock_holder(path, judged)   # judged on the bytes compared below
        if holder.alive:
            # a running writer's lock is never taken: both would write
            raise DatasetLocked(
                f"{path} is held by {holder.describe()} (that process is still running): "
                "--break_lock removes only the lock of a run that has ended",
                f"wait for that run to end (or stop it: kill {holder.pid}), then run again")
        why = ("that process is gone" if holder.alive is False
               else "on another host: whether it runs cannot be told from here"
               if holder.host not in ("?", platform.node())
               else "whether it runs cannot be told from the lock")
        gone = (path, f"{holder.describe()}; {why}")
        if not is_local(path):
            delete_quietly(path)
            self.broken.append(gone)
            return
        aside = os.path.join(os.path.dirname(path), f"{TEMP_PREFIX}lock-broken-{self.token}")
        try:
            os.rename(path, aside)
        except OSError:
            return   # gone meanwhile: nothing to break
        with open(aside, "rb") as f:
            moved = f.read()
        if moved != judged:
            with contextlib.suppress(OSError):
                os.link(aside, path)   # back, unless yet another lock is there now
            os.unlink(aside)
            raise DatasetLocked(*self._message(path))
        os.unlink(aside)
        self.broken.append(gone)

    @staticmethod
    def _create(directory, path, info):
        if is_local(path):
            for attempt in range(3):
                os.makedirs(directory, exist_ok=True)
                # the lock appears with its content (a temporary file linked to its
                # name, which fails if the name exists): never an empty lock that a
                # full disk leaves behind and no one can tell the holder of
                temp = os.path.join(directory, f"{TEMP_PREFIX}lock-{uuid.uuid4().hex}")
                try:
                    with open(temp, "xb") as f:
                        f.write(info)
                        f.flush()
                    try:
                        os.link(temp, path)
                    except OSError as err:
                        if err.errno in (errno.EEXIST, errno.ENOENT):
                            raise
                        DatasetLock._create_in_place(path, info)   # no hard links here
                    break
                except FileNotFoundError:   # an ending run removed the empty folder
                    if attempt == 2:
                        raise
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(temp)
            return
        if s3_location(path):
            try:
                s3_put(path, info, if_none_match=True)
                return
            except ConditionalWriteFailed:
                raise FileExistsError(path) from None
            except ConditionalWritesUnsupported:
                import logging
                logging.getLogger(__name__).warning(
                    "%s: the S3 server does not support conditional writes; the lock "
                    "is exists-then-create (not atomic)", path)
        if FileSystems.exists(path):
            raise FileExistsError(path)
        write_atomically(path, info)

    @staticmethod
    def _create_in_place(path, info):
        """O_EXCL create then write (a file system without hard links); a write that
        fails (a full disk) removes the empty lock it made."""
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(info)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    @staticmethod
    def _message(path) -> tuple[str, str]:
        """(message, hint) for a lock found held: ``--break_lock`` is suggested only
        when its holder is gone, or cannot be seen from here (another host, a lock
        that cannot be read), never while it runs."""
        holder = read_lock(path) or LockHolder(path)
        if holder.host == "?":
            return (f"{path} is held by a writer that cannot be told (the lock cannot be "
                    "read); one writer per dataset",
                    "if no other run is writing this dataset, rerun with --break_lock")
        who = f"{path} is held by {holder.describe()}"
        if holder.alive:
            return (f"{who} (that process is still running); one writer per dataset",
                    "wait for that run to end, then run again")
        if holder.alive is False:
            return (f"{who} (that process is gone: the lock is stale)",
                    "rerun with --break_lock to remove it")
        where = "another host: " if holder.host != platform.node() else ""
        return (f"{who} ({where}whether that process still runs cannot be told from "
                "here); one writer per dataset",
                "if that run is not running any more, rerun with --break_lock")

    def release(self):
        """Delete every lock this one made (a lock file holding another token, or
        none, is left); idempotent."""
        for path in self.held:
            try:
                if json.loads(read_bytes(path)).get("token") == self.token:
                    _delete(path)
            except Exception:  # noqa: BLE001 - already gone or broken by another run
                pass
        self.held = []


@dataclass(frozen=True)
class LockHolder:
    """Who holds a dataset's ``.lock`` (from its JSON; ``?`` where unreadable) and
    whether that process still runs: True/False when it ran on this host, None
    when it ran elsewhere (cannot be told from here)."""
    path: str
    job: str = "?"
    pid: object = "?"
    host: str = "?"
    since: str = "?"
    alive: bool | None = None

    def describe(self) -> str:
        return f"{self.job} pid {self.pid} on {self.host} since {self.since}"


def read_lock(path: str) -> LockHolder | None:
    """The holder of the lock file at ``path`` (``<dataset>/.lock``), None when there
    is no lock.  A lock whose content cannot be read counts as held by an
    unknown process (alive None)."""
    if file_kind(path) == "missing":
        return None
    try:
        data = read_bytes(path)
    except Exception:  # noqa: BLE001 - unreadable: held by someone
        return LockHolder(path)
    return lock_holder(path, data)


def lock_holder(path: str, data: bytes) -> LockHolder:
    """The holder that the lock bytes ``data`` (read from ``path``) name."""
    try:
        holder = json.loads(data)
        if not isinstance(holder, dict):
            raise ValueError("not an object")
    except Exception:  # noqa: BLE001 - unreadable or half-written: held by someone
        return LockHolder(path)
    alive = None
    if holder.get("host") == platform.node() and isinstance(holder.get("pid"), int):
        alive = _pid_alive(holder["pid"], holder.get("since"),
                           {k: holder.get(k) for k in ("boot_id", "start_ticks")})
    return LockHolder(path, str(holder.get("job", "?")), holder.get("pid", "?"),
                      str(holder.get("host", "?")), str(holder.get("since", "?")), alive)


def _pid_alive(pid: int, since=None, identity: dict | None = None) -> bool:
    """Whether the process ``pid`` of this host still runs and is the one that took the
    lock.  With the lock's ``identity`` (``_process_identity``: boot id and start time
    in clock ticks, written by this version) exactly: another boot, or a process of
    that pid started at another tick (the pid reused), is not the holder.  An older
    lock has only ``since`` (ISO time): a process started after it is not the holder
    (a clock stepped forward can fool that one).  A zombie (exited, not yet reaped)
    does not run."""
    try:
        os.kill(pid, 0)
    except OSError as err:
        if err.errno != errno.EPERM:
            return False
    now = _process_identity(pid)
    if now.get("state") in ("Z", "X"):
        return False
    if identity and identity.get("boot_id") and now.get("boot_id"):
        return (identity["boot_id"] == now["boot_id"]
                and identity.get("start_ticks") == now.get("start_ticks"))
    started = _process_start(pid)
    if started is None or not isinstance(since, str):
        return True
    try:
        taken = datetime.datetime.fromisoformat(since).timestamp()
    except ValueError:
        return True
    return started <= taken + 2   # `since` is to the second; the start time to a tick


def _process_identity(pid: int) -> dict:
    """``{"boot_id", "start_ticks", "state"}`` of process ``pid`` (Linux ``/proc``; the
    boot id from ``/proc/sys/kernel/random/boot_id``), or ``{}`` where not readable.
    Boot id and start ticks name one process for ever: no clock is involved."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot_id = f.read().strip()
        return {"boot_id": boot_id, "start_ticks": int(fields[19]),
                "state": fields[0].decode("ascii", "replace")}
    except (OSError, ValueError, IndexError):
        return {}


def _process_start(pid: int) -> float | None:
    """The epoch second process ``pid`` started (its ``_process_identity`` start ticks
    after the boot time of ``/proc/stat``), or None."""
    ticks = _process_identity(pid).get("start_ticks")
    if ticks is None:
        return None
    try:
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")
