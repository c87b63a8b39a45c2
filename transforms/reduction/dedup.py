"""Exact deduplication: one document per normalised text, the smallest id wins.

Input: batches (lists) of ``transforms.processing.refs.DocRef``, whose ``key`` is the
xxh3-128 of the normalised text, computed by the scan.  Each batch is split
by key into ``num_buckets`` buckets and grouped by bucket; a bucket's values
(batches) are read as a stream, keeping one winner per distinct text.  So a
worker holds one bucket's distinct texts, as refs (about 100 bytes each, plus
the signature with near-dedup); the bucket count grows with the input
(``Bounds.buckets``), so a bucket does not.  No combiner accumulator, batch
or grouped value grows with the corpus: a hot text with a million copies
costs one entry.  The winner is chosen by a total order (smallest id, then
file and line), never by arrival order, so every runner keeps the same
documents.  With ``with_removed`` the bucket is read a second time to name
every loser (Beam's grouped values are re-iterable).

The same pass checks ids: an id used by more than one distinct text is a
conflict, reported with examples.

Example (``with_removed``)::

    [DocRef("b", K1, ...), DocRef("a", K1, ...), DocRef("c", K2, ...)]
    -> kept:    [DocRef("a", K1, ...)], [DocRef("c", K2, ...)]   (batches)
       removed: Removal(file, line, "b", False, "dedup.exact_duplicate", "kept=a",
                        kept="a", kept_int=False)   (b's file and line)
"""
from typing import Iterable, List, NamedTuple, Tuple

import apache_beam as beam
import numpy as np
import xxhash
from apache_beam import coders
from apache_beam.metrics import Metrics

from transforms.core.hashing import stable_hash64
from transforms.processing.refs import (
    Bounds, DocRef, Packed, Removal, chunked, pack, pack_columns, unpack)
from transforms.core.ids import id_order_key
from transforms.core.worker_gc import tune_gc

NAMESPACE = "dataprep.dedup"
IDS_TAG = "ids"
ID_BUCKET_SEED = 0x1D


class IdKey(NamedTuple):
    """An id and the text key it names (for the id check)."""
    id: str
    key: bytes


coders.registry.register_coder(IdKey, coders.RowCoder)


def dedup_buckets(raw_bytes: int, bucket_bytes: int = 64 << 20) -> int:
    """Buckets for an input of about ``raw_bytes``: ~``bucket_bytes`` each, 16..65536."""
    return Bounds(bucket_bytes=bucket_bytes).buckets(raw_bytes)


def bucket_of_key(key: bytes, num_buckets: int) -> int:
    return int.from_bytes(key[:8], "little") % num_buckets


def bucket_of_id(doc_id: str, num_buckets: int) -> int:
    return stable_hash64(doc_id, seed=ID_BUCKET_SEED) % num_buckets


def key_buckets(refs: list, num_buckets: int) -> list:
    """``[bucket_of_key(ref.key, num_buckets) for ref in refs]``, by numpy when every
    key has 16 bytes (xxh3-128 text keys)."""
    keys = [ref.key for ref in refs]
    if keys and set(map(len, keys)) == {16}:
        low = np.frombuffer(b"".join(keys), dtype="<u8")[::2]
        return (low % np.uint64(num_buckets)).tolist()
    return [bucket_of_key(key, num_buckets) for key in keys]


def id_buckets(refs: list, num_buckets: int) -> list:
    """``[bucket_of_id(ref.id, num_buckets) for ref in refs]`` (ids are str)."""
    digest = xxhash.xxh3_64_intdigest
    return [digest(ref.id.encode("utf-8", "surrogatepass"), seed=ID_BUCKET_SEED) % num_buckets
            for ref in refs]


def rank(ref: DocRef) -> tuple:
    """Total order among copies of one text: smallest id in the id order
    (``transforms.core.ids``: integers numerically, then strings), then file, then line."""
    return id_order_key(ref.id), ref.file, ref.line


def winners(refs: Iterable[DocRef]) -> tuple[dict, int]:
    """``({text key: winning ref}, copies seen)`` over a stream of refs."""
    best: dict = {}
    seen = 0
    for ref in refs:
        seen += 1
        current = best.get(ref.key)
        if current is None or rank(ref) < rank(current):
            best[ref.key] = ref
    return best, seen


def conflicting_ids(pairs: Iterable[IdKey]) -> list[str]:
    """Ids that name more than one distinct text key, sorted."""
    first: dict = {}
    conflicts = set()
    for doc_id, key in pairs:
        if first.setdefault(doc_id, key) != key:
            conflicts.add(doc_id)
    return sorted(conflicts)


class _KeyIntoBuckets(beam.DoFn):
    """A batch of refs -> ``(bucket, Packed([DocRef]))`` per text-key bucket, and
    ``(id bucket, Packed([IdKey]))`` for the id check (packed: these groupings
    carry every document; see ``Packed``)."""

    def __init__(self, num_buckets: int):
        self.num_buckets = num_buckets

    def setup(self):
        tune_gc()

    def process(self, refs):
        buckets: dict[int, list] = {}
        ids: dict[int, list] = {}   # id bucket -> indices into refs
        refs = refs if isinstance(refs, list) else list(refs)
        for i, (ref, key_bucket, id_bucket) in enumerate(zip(
                refs, key_buckets(refs, self.num_buckets), id_buckets(refs, self.num_buckets))):
            found = buckets.get(key_bucket)
            if found is None:
                found = buckets[key_bucket] = []
            found.append(ref)
            found = ids.get(id_bucket)
            if found is None:
                found = ids[id_bucket] = []
            found.append(i)
        for bucket, batch in buckets.items():
            yield bucket, pack(batch)
        for bucket, members in ids.items():   # IdKey records packed by columns, not built
            yield beam.pvalue.TaggedOutput(IDS_TAG, (bucket, pack_columns(
                IdKey, [[refs[i].id for i in members], [refs[i].key for i in members]])))


def _stream(batches):
    for batch in batches:
        yield from unpack(batch)


class _EmitWinners(beam.DoFn):
    """``(bucket, [Packed([DocRef]) or [DocRef]...])`` -> kept refs in batches of at most
    ``batch_bytes``; a ``Removal`` per removed copy to ``removed``."""

    def __init__(self, with_removed: bool, batch_bytes: int):
        self.with_removed = with_removed
        self.batch_bytes = batch_bytes
        self.kept = Metrics.counter(NAMESPACE, "kept")
        self.duplicates = Metrics.counter(NAMESPACE, "duplicates_removed")

    def setup(self):
        tune_gc()

    def process(self, bucket_batches):
        _, batches = bucket_batches
        best, seen = winners(_stream(batches))
        self.kept.inc(len(best))
        self.duplicates.inc(seen - len(best))
        if self.with_removed and seen > len(best):
            for ref in _stream(batches):  # a second pass: grouped values are re-iterable
                winner = best[ref.key]
                if rank(ref) != rank(winner):
                    yield beam.pvalue.TaggedOutput("removed", exact_removal(ref, winner))
        yield from chunked(list(best.values()), self.batch_bytes)


def exact_removal(ref: DocRef, winner: DocRef) -> Removal:
    """The removed record of ``ref``, an exact duplicate of the kept ``winner``."""
    return Removal(ref.file, ref.line, ref.id, ref.int_id, "dedup.exact_duplicate",
                   f"kept={winner.id}", winner.id, winner.int_id)


class _SummariseConflicts(beam.CombineFn):
    """Conflicting ids -> ``{"count": n, "examples": [smallest ids]}`` (bounded accumulator)."""

    def __init__(self, max_examples: int):
        self.max_examples = max_examples

    def create_accumulator(self):
        return 0, []

    def add_input(self, acc, ids):
        return acc[0] + len(ids), sorted(acc[1] + list(ids))[: self.max_examples]

    def merge_accumulators(self, accs):
        count, examples = 0, []
        for c, e in accs:
            count += c
            examples = sorted(examples + e)[: self.max_examples]
        return count, examples

    def extract_output(self, acc):
        return {"count": acc[0], "examples": acc[1]}


class ExactDedup(beam.PTransform):
    """Batches of ``DocRef`` -> unique refs, removed pairs, id conflicts.

    Returns a dict of PCollections: ``kept`` (batches of ``DocRef``, at most
    ``batch_bytes`` each), ``removed`` (a ``Removal`` per removed copy, reason
    ``dedup.exact_duplicate``, naming the kept one; empty unless ``with_removed``)
    and ``id_conflicts``
    (one ``{"count", "examples"}``).  ``num_buckets`` (>= 1) bounds memory:
    one bucket holds about 1/num_buckets of the distinct texts; choose it with
    ``Bounds.buckets``.
    """

    def __init__(self, num_buckets: int = 64, with_removed: bool = False,
                 max_conflict_examples: int = 10, batch_bytes: int = Bounds.batch_bytes):
        super().__init__()
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        self.num_buckets = num_buckets
        self.with_removed = with_removed
        self.max_conflict_examples = max_conflict_examples
        self.batch_bytes = batch_bytes

    def expand(self, batches):
        split = batches | "KeyIntoBuckets" >> beam.ParDo(
            _KeyIntoBuckets(self.num_buckets)).with_output_types(
                Tuple[int, Packed]).with_outputs(IDS_TAG, main="buckets")
        ids = split[IDS_TAG] | "IdPairs" >> beam.Map(lambda kv: kv).with_output_types(
            Tuple[int, Packed])
        winners_ = (
            split.buckets
            | "GroupBuckets" >> beam.GroupByKey()
            | "EmitWinners" >> beam.ParDo(_EmitWinners(self.with_removed, self.batch_bytes))
            .with_output_types(List[DocRef]).with_outputs("removed", main="kept"))
        conflicts = (
            ids
            | "GroupIds" >> beam.GroupByKey()
            | "ConflictingIds" >> beam.MapTuple(lambda _, batches: conflicting_ids(
                _stream(batches)))
            | "Summarise" >> beam.CombineGlobally(_SummariseConflicts(self.max_conflict_examples)))
        return {"kept": winners_.kept, "removed": winners_.removed, "id_conflicts": conflicts}
