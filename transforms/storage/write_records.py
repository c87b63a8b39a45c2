"""Write a PCollection of your own records (dicts) as a replicated sharded store.

``WriteStore`` plans shards on small ``ShardRecord``s and takes the lines
from a ``lines`` transform that turns ``(shard, [ShardRecord])`` into
``(shard, Run)`` (a run: a shard's lines in a temporary zstd file).  In
prepare_corpus that is ``ResolveRuns``, which re-reads each kept line from
its input file.  ``RunsFromLines`` is the other kind, for records that are
in memory: each ``ShardRecord`` carries its JSON line as its payload, and
each ``(shard, [ShardRecord])`` element (one batch's records of one shard,
at most ``batch_bytes``) is written as one run.  ``WriteRecords`` wraps it
all: dicts in, the committed manifest out.

Element types::

    dict                                  your record, with an id field
    ShardRecord("", hash_order(id), id, line)   line: the record as JSON (bytes)
    ((partition, shard, count), [ShardRecord])  -> RunsFromLines ->
    ((partition, shard, count), Run)            -> WriteStore's shard writers
    dict                                  the manifest (one element)
"""
import uuid
from typing import List

import apache_beam as beam
import xxhash

from transforms.core import exact_json
from transforms.core.records import Bounds, chunked, unpack
from transforms.storage.commit import SPILL_PREFIX
from transforms.storage.placement import Root
from transforms.storage.sharding import ShardRecord, hash_order, line_size
from transforms.storage.spill import _write_runs
from transforms.storage.store import WriteStore, dataset_dir, join, normalise_root


def record_line(record: dict, id_field: str = "id") -> ShardRecord:
    """A record -> its ``ShardRecord`` (unpartitioned, id-hash order, JSON line payload).

    The line is ``orjson.dumps(record)`` (key order kept).  The id is
    ``str(record[id_field])``, a string or an integer (not a bool); anything
    else raises ``ValueError`` naming the field.  Non-JSON values raise
    ``TypeError`` (orjson's).
    """
    record_id = record.get(id_field) if isinstance(record, dict) else None
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        raise ValueError(f"a record's {id_field!r} must be a string or an integer, "
                         f"got {type(record_id).__name__}: {str(record)[:200]}")
    record_id = str(record_id)
    return ShardRecord("", hash_order(record_id), record_id, exact_json.dumps(record))


class _LinesToRuns(beam.DoFn):
    """``(shard, Packed([ShardRecord]) or [ShardRecord])`` -> ``(shard, Run)``; markers
    ``(shard, None)`` pass."""

    def __init__(self, spill_dir: str, by_order: bool):
        self.spill_dir = spill_dir
        self.by_order = by_order

    def process(self, assigned):
        shard, records = assigned
        if records is None:
            yield shard, None
            return
        docs = [(r.order, r.id, r.payload) for r in unpack(records)]
        # the run's name is fixed by its content: a retried bundle rewrites its own file
        digest = xxhash.xxh3_64()
        for _, doc_id, line in docs:
            digest.update(doc_id.encode("utf-8", "surrogatepass") + b"\0" + line + b"\n")
        yield from _write_runs({shard: docs}, self.spill_dir,
                               f"mem-{digest.hexdigest()}", self.by_order)


class RunsFromLines(beam.PTransform):
    """``WriteStore``'s ``lines`` for records whose ``ShardRecord`` payload is their
    JSON line (bytes, no newline): writes each ``(shard, [ShardRecord])``
    element as one run under ``spill_dir`` (``WriteStore`` deletes the folder
    after the manifest).  ``by_order``: records sort by their order key first
    (range-ordered stores), else by id.  ``size_of`` is ``line_size``:
    ``WriteStore`` plans shards by the lines' bytes."""

    size_of = staticmethod(line_size)

    def __init__(self, spill_dir: str, by_order: bool = False):
        super().__init__()
        self.spill_dir = spill_dir
        self.by_order = by_order

    def expand(self, assigned):
        return assigned | "WriteRuns" >> beam.ParDo(_LinesToRuns(self.spill_dir, self.by_order))


class WriteRecords(beam.PTransform):
    """Your records (dicts) -> a committed, replicated, sharded store; outputs the
    manifest (one dict) once it is written on every root.

    The store is the one prepare_corpus writes (unpartitioned): shards
    ``shard-NNNNN-of-NNNNN-<digest>.jsonl.zst`` of about equal raw size on
    ``replication`` of the ``roots`` (rendezvous hashing), records sorted by id
    (``transforms.core.ids``) inside each, each line ``orjson.dumps(record)``;
    ``ReadStore(<root>/<dataset>)`` reads the dicts back.  Records are not
    deduplicated or checked for unique ids (run ``DedupRecords`` first).

    Arguments (keyword-only after ``replication``): ``roots``: root URIs or
    ``Root``s (local folders, ``gs://``, ``s3://``...); ``dataset``: folder
    name (``[A-Za-z0-9][A-Za-z0-9._-]*``); ``replication``: replicas per
    shard, 1..len(roots) (default 1); ``id_field`` (default ``"id"``): a
    string or integer in every record, else the run fails with ``ValueError``
    naming it; ``num_shards`` (default None: ``ceil(bytes /
    target_shard_bytes)``); ``target_shard_bytes`` (default 64 MiB raw);
    ``codec``: shard codec spec (default ``"zstd:level=3"``);
    ``batch_bytes``: bound of a batch of records between steps (default
    1 MiB); ``manifest_extra``: more manifest fields; ``preconditions``:
    PCollections of strings, any non-empty one stops the commit (e.g. a
    ``DedupRecords(...)["gate"]``).  Invalid roots, dataset or replication
    raise ``ValueError`` here, before anything runs.

    This transform does not take the dataset's ``.lock`` (the jobs do); the
    commit still compares the generation it started from, so a concurrent
    writer makes it fail (``ConcurrentWriteError``) instead of committing
    over another run.
    """

    def __init__(self, roots, dataset: str, replication: int = 1, *, id_field: str = "id",
                 num_shards: int | None = None, target_shard_bytes: int = 64 << 20,
                 codec: str = "zstd:level=3", batch_bytes: int = Bounds.batch_bytes,
                 manifest_extra: dict | None = None, preconditions=()):
        super().__init__()
        roots = [r if isinstance(r, Root) else Root(normalise_root(str(r))) for r in roots]
        self.id_field = id_field
        self.batch_bytes = batch_bytes
        spill_dir = join(dataset_dir(roots[0].uri, dataset) if roots else "",
                         f"{SPILL_PREFIX}{uuid.uuid4().hex}")
        self.store = WriteStore(
            roots, dataset, replication, num_shards=num_shards,
            target_shard_bytes=target_shard_bytes, codec=codec,
            manifest_extra={"kind": "text", "id_field": id_field, "sorted_by": "id",
                            **(manifest_extra or {})},
            preconditions=preconditions, lines=RunsFromLines(spill_dir))

    def expand(self, records):
        return (records
                | "ShardRecords" >> beam.Map(record_line, self.id_field)
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=4096)
                | "BoundBytes" >> beam.FlatMap(chunked, self.batch_bytes, line_size)
                .with_output_types(List[ShardRecord])
                | "Store" >> self.store)
