"""Exact deduplication: one document per normalised text, the smallest id wins.

Documents are keyed by the xxh3-128 of their normalised text and combined with
a CombineFn whose accumulator is one document and a count, so memory per key is
bounded however many copies there are and the runner can pre-combine before the
shuffle.  The winner is chosen by a total order (smallest id), never by arrival
order, so every runner keeps the same documents.
"""
import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.hashing import text_key

NAMESPACE = "dataprep.dedup"


class KeepSmallestId(beam.CombineFn):
    """Combines ``(id, line)`` values into ``(id, line, copies)`` for the smallest id."""

    def create_accumulator(self):
        return None

    def add_input(self, acc, doc):
        if acc is None:
            return doc[0], doc[1], 1
        if doc[0] < acc[0]:
            return doc[0], doc[1], acc[2] + 1
        return acc[0], acc[1], acc[2] + 1

    def merge_accumulators(self, accs):
        best = None
        for acc in accs:
            if acc is None:
                continue
            if best is None:
                best = acc
            elif acc[0] < best[0]:
                best = (acc[0], acc[1], best[2] + acc[2])
            else:
                best = (best[0], best[1], best[2] + acc[2])
        return best

    def extract_output(self, acc):
        return acc


class _CountAndStrip(beam.DoFn):
    def __init__(self):
        self.kept = Metrics.counter(NAMESPACE, "kept")
        self.duplicates = Metrics.counter(NAMESPACE, "duplicates_removed")

    def process(self, keyed):
        _, (doc_id, line, copies) = keyed
        self.kept.inc()
        if copies > 1:
            self.duplicates.inc(copies - 1)
        yield doc_id, line


def _removed_pairs(keyed):
    """(key, {all: [ids], kept: [id]}) -> {removed, kept} for every loser."""
    _, groups = keyed
    kept_id = groups["kept"][0]
    for doc_id in groups["all"]:
        if doc_id != kept_id:
            yield {"removed": doc_id, "kept": kept_id, "reason": "exact_duplicate"}


def key_by_text(doc):
    """``(id, text, line)`` -> ``(text key, (id, line))``; the text is dropped here."""
    return text_key(doc[1]), (doc[0], doc[2])


class ExactDedup(beam.PTransform):
    """Text-keyed documents ``(text key, (id, line))`` -> unique ``(id, line)`` documents.

    Key documents once with ``beam.Map(key_by_text)`` (normalising is the
    costly part) and share the keyed collection with FindIdConflicts.  With
    ``with_removed=True`` returns ``(kept, removed)`` where ``removed`` holds
    ``{"removed": id, "kept": id, "reason": "exact_duplicate"}`` audit records.
    """

    def __init__(self, with_removed: bool = False):
        super().__init__()
        self.with_removed = with_removed

    def expand(self, keyed):
        winners = keyed | "KeepSmallestId" >> beam.CombinePerKey(KeepSmallestId())
        kept = winners | "CountAndStrip" >> beam.ParDo(_CountAndStrip())
        if not self.with_removed:
            return kept
        removed = (
            {
                "all": keyed | "AllIds" >> beam.MapTuple(lambda k, doc: (k, doc[0])),
                "kept": winners | "KeptIds" >> beam.MapTuple(lambda k, acc: (k, acc[0])),
            }
            | "JoinByHash" >> beam.CoGroupByKey()
            | "RemovedPairs" >> beam.FlatMap(_removed_pairs))
        return kept, removed


class DistinctTexts(beam.CombineFn):
    """Set of distinct text keys per id, capped at 2 (all that matters is > 1)."""

    def create_accumulator(self):
        return frozenset()

    def add_input(self, acc, key):
        return acc if len(acc) >= 2 else acc | {key}

    def merge_accumulators(self, accs):
        out = frozenset()
        for acc in accs:
            out |= acc
            if len(out) >= 2:
                return frozenset(sorted(out)[:2])
        return out

    def extract_output(self, acc):
        return len(acc)


class FindIdConflicts(beam.PTransform):
    """Text-keyed documents -> ids used by more than one distinct text.

    Output: a single list (possibly empty) of up to ``max_examples`` conflicting
    ids, smallest first, plus the total: ``{"count": n, "examples": [...]}``.
    """

    def __init__(self, max_examples: int = 10):
        super().__init__()
        self.max_examples = max_examples

    def expand(self, keyed):
        max_examples = self.max_examples
        return (
            keyed
            | "IdToTextHash" >> beam.MapTuple(lambda key, doc: (doc[0], key))
            | "DistinctTexts" >> beam.CombinePerKey(DistinctTexts())
            | "KeepConflicts" >> beam.Filter(lambda kv: kv[1] > 1)
            | "Ids" >> beam.Keys()
            | "Summarise" >> beam.CombineGlobally(_ConflictSummary(max_examples)))


class _ConflictSummary(beam.CombineFn):
    def __init__(self, max_examples):
        self.max_examples = max_examples

    def create_accumulator(self):
        return 0, []

    def add_input(self, acc, doc_id):
        return acc[0] + 1, sorted(acc[1] + [doc_id])[: self.max_examples]

    def merge_accumulators(self, accs):
        count, examples = 0, []
        for c, e in accs:
            count += c
            examples = sorted(examples + e)[: self.max_examples]
        return count, examples

    def extract_output(self, acc):
        return {"count": acc[0], "examples": acc[1]}
