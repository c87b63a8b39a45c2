"""Exact deduplication: one document per normalised text, the smallest id wins.

Documents arrive in batches.  Each is keyed by the xxh3-128 of its normalised
text and the batch is split by key into ``num_buckets`` buckets; a CombineFn
per bucket keeps one entry per distinct text (the smallest id and the number
of copies).  So memory per bucket is bounded by the distinct texts in it,
however many copies a hot text has; the runner pre-combines before the
shuffle, and per-element overhead is paid per batch, not per document.  The
winner is chosen by a total order (smallest id, then line), never by arrival
order, so every runner keeps the same documents.

The same pass checks ids: an id used by more than one distinct text is a
conflict, reported with examples.
"""
import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.hashing import stable_hash64, text_keys
from transforms.ids import id_order_key

NAMESPACE = "dataprep.dedup"
IDS_TAG = "ids"


def dedup_buckets(raw_bytes: int, bucket_bytes: int = 64 << 20) -> int:
    """Buckets for an input of about ``raw_bytes``: ~``bucket_bytes`` each, 16..65536."""
    return max(16, min(65536, -(-raw_bytes // bucket_bytes)))


def bucket_of_key(key: bytes, num_buckets: int) -> int:
    return int.from_bytes(key[:8], "little") % num_buckets


def bucket_of_id(doc_id: str, num_buckets: int) -> int:
    return stable_hash64(doc_id, seed=0x1D) % num_buckets


def _better(a, b) -> bool:
    """Does entry a beat entry b? Smallest (id, line), ids in the id order
    (``transforms.ids``: integers numerically, then strings): a total order."""
    return (id_order_key(a[0]), a[1]) < (id_order_key(b[0]), b[1])


def merge_entry(table: dict, key: bytes, entry: list) -> None:
    """Fold ``entry = [id, line, copies, losers]`` into ``table[key]``.

    ``losers`` is a list of removed ids when audit is on, else None.
    """
    current = table.get(key)
    if current is None:
        table[key] = entry
        return
    winner, loser = (entry, current) if _better(entry, current) else (current, entry)
    winner[2] += loser[2]
    if winner[3] is not None:
        winner[3].append(loser[0])
        winner[3].extend(loser[3])
    table[key] = winner


def _copy(entry) -> list:
    """merge_entry mutates entries; inputs must not be (the runner may share them)."""
    doc_id, line, copies, losers = entry
    return [doc_id, line, copies, None if losers is None else list(losers)]


class _KeyIntoBuckets(beam.DoFn):
    """A batch of docs -> ``(bucket, [(key, entry)])`` per bucket (copies in the
    batch already folded), and ``(id bucket, [(id, key)])`` for the id check."""

    def __init__(self, num_buckets: int, with_removed: bool, keyed: bool):
        self.num_buckets = num_buckets
        self.with_removed = with_removed
        self.keyed = keyed

    def process(self, docs):
        keyed = docs
        if not self.keyed:
            keys = text_keys([text for _, text, _ in docs])
            keyed = [(key, doc_id, line) for key, (doc_id, _, line) in zip(keys, docs)]
        table: dict = {}
        for key, doc_id, line in keyed:
            merge_entry(table, key, [doc_id, line, 1, [] if self.with_removed else None])
        buckets: dict[int, list] = {}
        for key, entry in table.items():
            buckets.setdefault(bucket_of_key(key, self.num_buckets), []).append((key, entry))
        yield from buckets.items()
        ids: dict[int, list] = {}
        for key, doc_id, _ in keyed:
            ids.setdefault(bucket_of_id(doc_id, self.num_buckets), []).append((doc_id, key))
        for item in ids.items():
            yield beam.pvalue.TaggedOutput(IDS_TAG, item)


class DedupBucket(beam.CombineFn):
    """Accumulator ``{text key: [id, line, copies, losers]}`` of one bucket."""

    def create_accumulator(self):
        return {}

    def add_input(self, table, entries):
        for key, entry in entries:
            merge_entry(table, key, _copy(entry))
        return table

    def merge_accumulators(self, tables):
        tables = iter(tables)
        merged = next(tables)
        for table in tables:
            for key, entry in table.items():
                merge_entry(merged, key, _copy(entry))
        return merged

    def extract_output(self, table):
        return table


class _EmitWinners(beam.DoFn):
    """``(bucket, table)`` -> kept ``(id, line)`` docs (or one list of them per
    bucket when ``batched``); removed pairs to ``removed``."""

    def __init__(self, batched: bool):
        self.batched = batched
        self.kept = Metrics.counter(NAMESPACE, "kept")
        self.duplicates = Metrics.counter(NAMESPACE, "duplicates_removed")

    def process(self, bucket_table):
        _, table = bucket_table
        duplicates = 0
        kept = []
        for doc_id, line, copies, losers in table.values():
            duplicates += copies - 1
            kept.append((doc_id, line))
            for loser in sorted(losers or (), key=id_order_key):
                yield beam.pvalue.TaggedOutput(
                    "removed", {"removed": loser, "kept": doc_id, "reason": "exact_duplicate"})
        self.kept.inc(len(table))
        self.duplicates.inc(duplicates)
        if self.batched:
            if kept:
                yield kept
        else:
            yield from kept


_CONFLICT = b""  # text keys are 16 bytes, so the empty string marks an id with several


class IdTexts(beam.CombineFn):
    """Accumulator ``{id: text key}``; an id seen with two distinct keys maps to _CONFLICT."""

    def create_accumulator(self):
        return {}

    def add_input(self, table, pairs):
        for doc_id, key in pairs:
            seen = table.setdefault(doc_id, key)
            if seen != key:
                table[doc_id] = _CONFLICT
        return table

    def merge_accumulators(self, tables):
        tables = iter(tables)
        merged = next(tables)
        for table in tables:
            self.add_input(merged, table.items())
        return merged

    def extract_output(self, table):
        return sorted(doc_id for doc_id, key in table.items() if key == _CONFLICT)


class _ConflictSummary(beam.CombineFn):
    """Conflicting ids -> ``{"count": n, "examples": [smallest ids]}``."""

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
    """Batches of ``(id, text, line)`` docs -> unique docs, removed pairs, id conflicts.

    With ``keyed`` the batches hold ``(text key, id, payload)`` instead, the
    key already computed (``transforms.refs.ScanJsonl``); ``payload`` then
    stands in for the line everywhere below.

    Returns a dict of PCollections: ``kept`` (``(id, line)`` docs), ``removed``
    (``{"removed", "kept", "reason": "exact_duplicate"}``; empty unless
    ``with_removed``) and ``id_conflicts`` (one ``{"count", "examples"}``).
    ``num_buckets`` bounds memory: one bucket holds about 1/num_buckets of the
    distinct documents.  With ``batched_output`` ``kept`` holds one list of
    docs per bucket (for WriteStore's batched input).
    """

    def __init__(self, num_buckets: int = 64, with_removed: bool = False,
                 max_conflict_examples: int = 10, batched_output: bool = False,
                 keyed: bool = False):
        super().__init__()
        self.batched_output = batched_output
        self.keyed = keyed
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        self.num_buckets = num_buckets
        self.with_removed = with_removed
        self.max_conflict_examples = max_conflict_examples

    def expand(self, batches):
        split = batches | "KeyIntoBuckets" >> beam.ParDo(
            _KeyIntoBuckets(self.num_buckets, self.with_removed, self.keyed)).with_outputs(
                IDS_TAG, main="buckets")
        winners = (
            split.buckets
            | "DedupBuckets" >> beam.CombinePerKey(DedupBucket())
            | "EmitWinners" >> beam.ParDo(_EmitWinners(self.batched_output)).with_outputs("removed", main="kept"))
        conflicts = (
            split[IDS_TAG]
            | "IdTexts" >> beam.CombinePerKey(IdTexts())
            | "ConflictingIds" >> beam.Values()
            | "Summarise" >> beam.CombineGlobally(_ConflictSummary(self.max_conflict_examples)))
        return {"kept": winners.kept, "removed": winners.removed, "id_conflicts": conflicts}
