"""Exact and near-duplicate removal over a PCollection of your own records (dicts).

``ExactDedup`` and ``RemoveNearDuplicates`` work on the refs that
prepare_corpus's file scan makes.  These adapters put the same steps behind a
PCollection of plain dicts, for a pipeline that has its records in hand
(read from its own source, produced by its own steps):

* ``DedupRecords``: exact duplicates (same normalised text,
  ``transforms.core.hashing.text_key``), the smallest id wins;
* ``NearDedupRecords``: near duplicates (MinHash + LSH + verified edges +
  connected components, ``transforms.reduction.near_dedup``), each
  component keeps its smallest id.

Only small typed values go through the dedup steps: a ``DocRef`` (id, text
key, record digest; about 100 bytes) for exact dedup, an id and its MinHash
signature (``Signed``, 4 x ``num_perm`` bytes) for near dedup.  The records
themselves are joined back by id (exact: by ``(id, digest)`` per key, one
record per group; near: in ``num_buckets`` id buckets whose records stream
through), so no element or grouped value holds more than a batch of
records.  Both joins are audited (``AuditedJoin``): a shuffle that loses a
value fails the run.

A record is ``{id_field: str | int, text_field: str, ...}``; a record whose
id is missing, null or not a string or integer, or whose text is missing,
not a string or empty, goes to ``dead_letters`` (``{"reason", "detail",
"record"}``, the record as JSON cut at 1000 bytes); the reasons are those of
prepare_corpus (``transforms.processing.io.parse_line``) plus
``missing_id`` and ``not_json`` (a record orjson cannot serialise).  Ids are
compared as strings in the id order of ``transforms.core.ids`` (``7`` and
``"7"`` are one id).  Kept records come out unchanged (the same dict).
"""
from typing import Any, List, NamedTuple, Optional

import apache_beam as beam
import orjson
import xxhash
from apache_beam.metrics import Metrics

from transforms.core import exact_json
from transforms.core.ids import show_ids
from transforms.core.hashing import text_keys
from transforms.core.records import NO_VALUE, Bounds, DocRef
from transforms.processing.io import BadRecord, checked_text  # prepare_corpus's reason codes
from transforms.reduction.dedup import ExactDedup
from transforms.reduction.minhash import LshParams
from transforms.reduction.near_dedup import (
    AuditedJoin, ConnectNearDuplicates, DropNearDuplicates, LshEdgesFromSignatures,
    NearDedupConfig, Signed, SketchesByJoin, Signer, _gate)

NAMESPACE = "dataprep.records"
DEAD_LETTERS_TAG = "dead_letters"
MAX_RECORD_IN_DEAD_LETTER = 1000
MAX_BATCH = 1024   # records per batch (a DocRef is ~100 bytes, a signature 4 x num_perm)


class IdRecord(NamedTuple):
    """A record with what the adapters key it by.

    ``id``: the record's id as a string; ``digest``: xxh3-64 of its canonical
    JSON (sorted keys), shifted right by one (Beam's integer coder is signed
    64-bit), which orders copies that share an id; ``size``: bytes of that
    JSON (for batch bounds); ``text``: the text field; ``record``: the dict.
    """
    id: str
    digest: int
    size: int
    text: str
    record: Any


def key_record(record, id_field: str = "id", text_field: str = "text",
               keep_empty: bool = False) -> IdRecord:
    """A record (dict) -> ``IdRecord``; raises ``BadRecord`` with the reason code.

    Example: ``key_record({"id": 7, "text": "a b"})`` ->
    ``IdRecord("7", <digest>, 23, "a b", {"id": 7, "text": "a b"})``.
    """
    if not isinstance(record, dict):
        raise BadRecord("not_an_object", type(record).__name__)
    try:
        canonical = exact_json.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError as err:
        raise BadRecord("not_json", str(err)) from None
    if record.get(id_field) is None:
        raise BadRecord("missing_id", f"no field {id_field!r}")
    record_id = record[id_field]
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        raise BadRecord("bad_id", f"{id_field!r} is {type(record_id).__name__}")
    text = checked_text(record, text_field, keep_empty)
    return IdRecord(str(record_id), xxhash.xxh3_64_intdigest(canonical) >> 1,
                    len(canonical), text, record)


def record_dead_letter(record, err: BadRecord) -> dict:
    """The dead letter of a record: reason, detail, the record as JSON (cut)."""
    try:
        raw = orjson.dumps(record, default=repr)
    except TypeError:
        raw = repr(record).encode()
    return {"reason": err.reason, "detail": err.detail[:300],
            "record": raw[:MAX_RECORD_IN_DEAD_LETTER].decode("utf-8", "replace")}


class KeyRecords(beam.PTransform):
    """Dicts -> batches of ``IdRecord`` (at most ``MAX_BATCH`` records or
    ``batch_bytes`` of record JSON, give or take one record), and
    ``dead_letters`` (dicts).  Returns ``(batches, dead_letters)``."""

    def __init__(self, id_field: str = "id", text_field: str = "text",
                 keep_empty: bool = False, batch_bytes: int = Bounds.batch_bytes):
        super().__init__()
        self.id_field = id_field
        self.text_field = text_field
        self.keep_empty = keep_empty
        self.batch_bytes = batch_bytes

    def expand(self, records):
        keyed = records | "Key" >> beam.ParDo(
            _KeyRecord(self.id_field, self.text_field, self.keep_empty)).with_outputs(
                DEAD_LETTERS_TAG, main="keyed")
        batches = (keyed.keyed
                   | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=MAX_BATCH)
                   | "BoundBytes" >> beam.FlatMap(_rechunk, self.batch_bytes)
                   .with_output_types(List[IdRecord]))
        return batches, keyed[DEAD_LETTERS_TAG]


def _rechunk(batch, batch_bytes):
    from transforms.core.records import chunked
    return chunked(batch, batch_bytes, _record_bytes)


def _record_bytes(record: IdRecord) -> int:
    return record.size + len(record.id) + 32


class _KeyRecord(beam.DoFn):
    def __init__(self, id_field, text_field, keep_empty):
        self.id_field = id_field
        self.text_field = text_field
        self.keep_empty = keep_empty

    def setup(self):
        self.bad = {}

    def process(self, record):
        try:
            yield key_record(record, self.id_field, self.text_field, self.keep_empty)
        except BadRecord as err:
            counter = self.bad.get(err.reason)
            if counter is None:
                counter = self.bad[err.reason] = Metrics.counter(
                    NAMESPACE, f"dead_letters_{err.reason}")
            counter.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS_TAG, record_dead_letter(record, err))


def record_refs(batch: List[IdRecord]) -> List[DocRef]:
    """Keyed records -> the ``DocRef``s ``ExactDedup`` takes: file 0, line = the
    record's digest (so copies sharing an id are ranked by content), size = its
    JSON bytes + 1."""
    keys = text_keys([r.text for r in batch])
    return [DocRef(r.id, key, 0, r.digest, r.size + 1, False, False, NO_VALUE, NO_VALUE)
            for r, key in zip(batch, keys)]


def _join_back(joined):
    """At ``(id, digest)``: ``{record: [dict...], kept: [None...]}`` -> one record if kept
    (copies with equal canonical JSON are one record)."""
    _, groups = joined
    if any(True for _ in groups["kept"]):
        for record in groups["record"]:
            yield record
            return


def _id_conflicts_message(summary: dict, id_field: str) -> str:
    if not summary["count"]:
        return ""
    return (f"{summary['count']} {id_field!r} value(s) name more than one distinct text, "
            f"e.g. {show_ids(summary['examples'])}; give every record a unique id")


class DedupRecords(beam.PTransform):
    """Exact dedup of your records: dicts -> dict of PCollections.

    * ``kept``: the records (dicts, unchanged) that survive: per normalised
      text (NFC, case-folded, whitespace collapsed), the one with the smallest
      id (``transforms.core.ids``), then the smallest digest of its canonical
      JSON (copies under one id; equal copies are one record);
    * ``removed`` (only with ``with_removed``): ``{"removed": id, "kept": id,
      "reason": "exact_duplicate"}``;
    * ``dead_letters``: records that cannot be keyed (see the module);
    * ``gate``: one string, empty when every id names one text and the
      join back lost nothing; otherwise the run fails with it
      (``RuntimeError``), e.g. ``1 'id' value(s) name more than one distinct
      text, e.g. 7; give every record a unique id`` (``transforms.core.ids.show_ids``).

    Example::

        [{"id": "b", "text": "Hello  world"}, {"id": "a", "text": "hello world"},
         {"id": "c", "text": "other"}]
        -> kept: [{"id": "a", "text": "hello world"}, {"id": "c", "text": "other"}]
           removed: [{"removed": "b", "kept": "a", "reason": "exact_duplicate"}]

    ``num_buckets`` (>= 1, default 16): ``ExactDedup``'s buckets; a worker holds
    one bucket's distinct texts as refs, so raise it with the corpus
    (``Bounds().buckets(input bytes)``: one per 64 MiB).  ``batch_bytes``: bound of a
    batch of refs or records (default 1 MiB).
    """

    def __init__(self, id_field: str = "id", text_field: str = "text", *,
                 num_buckets: int = 16, with_removed: bool = False,
                 keep_empty: bool = False, batch_bytes: int = Bounds.batch_bytes):
        super().__init__()
        self.id_field = id_field
        self.text_field = text_field
        self.dedup = ExactDedup(num_buckets=num_buckets, with_removed=with_removed,
                                batch_bytes=batch_bytes)
        self.keep_empty = keep_empty
        self.batch_bytes = batch_bytes

    def expand(self, records):
        batches, dead = records | "KeyRecords" >> KeyRecords(
            self.id_field, self.text_field, self.keep_empty, self.batch_bytes)
        dedup = (batches
                 | "Refs" >> beam.Map(record_refs).with_output_types(List[DocRef])
                 | "ExactDedup" >> self.dedup)
        kept_keys = dedup["kept"] | "KeptKeys" >> beam.FlatMap(
            lambda refs: [((r.id, r.line), None) for r in refs])
        by_key = batches | "ByKey" >> beam.FlatMap(
            lambda batch: [((r.id, r.digest), r.record) for r in batch])
        joined, balance = {"record": by_key, "kept": kept_keys} | AuditedJoin("JoinKept")
        kept = joined | "JoinBack" >> beam.FlatMap(_join_back)
        conflicts = dedup["id_conflicts"] | "IdConflicts" >> beam.Map(
            _id_conflicts_message, self.id_field)
        gate = _gate({"components_gate": conflicts}, [balance])
        removed = dedup["removed"] | "RemovedRecords" >> beam.Map(
            lambda r: {"removed": r.id, "kept": r.kept, "reason": "exact_duplicate"})
        return {"kept": kept, "removed": removed, "dead_letters": dead, "gate": gate}


class _SignRecords(beam.DoFn):
    """A batch of ``IdRecord`` -> its signed ones as ``[Signed]`` (shares
    ``Signer`` and the counters of ``near_dedup``'s ``_SignDocs``)."""

    def __init__(self, config: NearDedupConfig):
        self.signer = Signer(config)

    def setup(self):
        self.signer.setup()
        self.signed = Metrics.counter("dataprep.near_dedup", "docs_signed")
        self.no_shingles = Metrics.counter("dataprep.near_dedup", "docs_without_words")

    def process(self, batch):
        signed = [Signed(r.id, s.signature, s.sketch)
                  for r, s in zip(batch, self.signer.sign([r.text for r in batch]))
                  if s.signature]
        self.signed.inc(len(signed))
        self.no_shingles.inc(len(batch) - len(signed))
        if signed:
            yield signed


class NearDedupRecords(beam.PTransform):
    """Near-duplicate removal over your records: dicts -> dict of PCollections.

    * ``kept``: the records (dicts, unchanged) that survive: per connected
      component of near-duplicate pairs, the record with the smallest id
      (``transforms.core.ids``); records whose text has no shingle are kept;
    * ``removed`` (only with ``with_removed``): ``{"removed": id, "kept": id,
      "reason": "near_duplicate", "jaccard": float}``;
    * ``dead_letters``: records that cannot be keyed (see the module);
    * ``gate``: one string, empty when the components converged and every
      join balanced; otherwise the run fails with it (``RuntimeError``).

    ``config``: a ``NearDedupConfig`` (default: ``LshParams.resolve(threshold=
    threshold)``, i.e. 128 permutations, 5-shingles, shingle unit ``auto``, verified
    edges).  Ids should be unique (``DedupRecords`` first: it fails on an id
    naming two texts); records sharing an id are kept or removed together.
    ``num_buckets`` (default 16): LSH and id buckets of the joins; a worker
    holds one bucket's band keys and roots, and records stream through.

    Example (``threshold=0.8``)::

        [{"id": 1, "text": T}, {"id": 2, "text": T + " today"}, {"id": 3, "text": U}]
        -> kept: [{"id": 1, ...}, {"id": 3, ...}]
           removed: [{"removed": "2", "kept": "1", "reason": "near_duplicate",
                      "jaccard": 0.85}]
    """

    def __init__(self, threshold: float = 0.8, id_field: str = "id", text_field: str = "text",
                 *, config: Optional[NearDedupConfig] = None, with_removed: bool = False,
                 num_buckets: int = 16, keep_empty: bool = False,
                 batch_bytes: int = Bounds.batch_bytes):
        super().__init__()
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        self.config = config or NearDedupConfig(LshParams.resolve(threshold=threshold),
                                                text_field=text_field)
        self.id_field = id_field
        self.text_field = text_field
        self.with_removed = with_removed
        self.num_buckets = num_buckets
        self.keep_empty = keep_empty
        self.batch_bytes = batch_bytes

    def expand(self, records):
        n = self.num_buckets
        batches, dead = records | "KeyRecords" >> KeyRecords(
            self.id_field, self.text_field, self.keep_empty, self.batch_bytes)
        signed = batches | "Sign" >> beam.ParDo(_SignRecords(self.config)).with_output_types(
            List[Signed])
        edges = signed | "Lsh" >> LshEdgesFromSignatures(self.config.lsh, n)
        found = edges | "Connect" >> ConnectNearDuplicates(
            self.config, SketchesByJoin(signed, n), self.with_removed)
        kept, balance = batches | "Drop" >> DropNearDuplicates(
            found["roots"], n, self.batch_bytes, _record_bytes)
        result = {"kept": kept | "Records" >> beam.FlatMap(lambda b: [r.record for r in b]),
                  "removed": found.get("removed") if self.with_removed
                  else records.pipeline | "NoRemoved" >> beam.Create([]),
                  "dead_letters": dead,
                  "gate": _gate(found, found["balances"] + [balance])}
        return result


