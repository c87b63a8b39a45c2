"""Beam wrappers of the pure filters: ``ApplyFilters`` and ``SmallestHashes``.

``ApplyFilters(chain_factory)`` runs a ``FilterChain`` over a PCollection of
``Document`` and outputs the kept documents; with ``removed=True`` it also
outputs one ``Removed`` record per dropped document under the tag
``"removed"``.  Counters: namespace ``dataprep.filters``, names
``<filter>/kept`` and ``<filter>/dropped.<rule>``, which the run report
(``transforms.storage.report.counters``) lists as ``filters/<filter>/kept`` and
``filters/<filter>/dropped.<rule>``.

``SmallestHashes(n)`` is a ``CombineFn`` keeping the ``n`` smallest
``(hash, id)`` pairs of its inputs in a heap of at most ``n`` entries
(``beam.combiners.Top.Smallest`` with a total order and a fixed-size
accumulator); ``SamplePerPartition(n, seed)`` applies it per key.
"""
from typing import Any, Callable, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.core.records import Removal
from transforms.reduction.filters.base import Document, FilterChain, Removed, as_view
from transforms.reduction.filters.sampling import DEFAULT_SEED, SmallestHeap, sample_hash

NAMESPACE = "dataprep.filters"
REMOVED_TAG = "removed"


class BeamCounters:
    """A ``counter_inc_fn`` backed by Beam counters (namespace ``dataprep.filters``), each
    created once; make it in a DoFn's ``setup`` and pass it to ``FilterChain`` or ``ScanFilters``."""

    def __init__(self):
        self._counters = {}

    def __call__(self, name: str, amount: int = 1) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(NAMESPACE, name)
        counter.inc(amount)


@beam.typehints.with_input_types(Document)
@beam.typehints.with_output_types(Document)
class _ApplyFiltersFn(beam.DoFn):
    def __init__(self, chain_factory: Callable[[], List], removed: bool):
        self._chain_factory = chain_factory
        self._removed = removed
        self._chain: Optional[FilterChain] = None

    def setup(self):
        self._chain = FilterChain(self._chain_factory(), counter_inc_fn=BeamCounters())

    def process(self, doc: Document):
        drop = self._chain(as_view(doc))
        if drop is None:
            yield doc
        elif self._removed:
            yield beam.pvalue.TaggedOutput(REMOVED_TAG, Removed(doc.id, drop.reason, drop.detail))


class ApplyFilters(beam.PTransform):
    """``PCollection[Document]`` -> kept ``PCollection[Document]`` (and removed records).

    Args:
      filters: a zero-argument callable returning the list of filters (built
        once per DoFn instance on the worker, so filters need not pickle), or
        a list of filters (pickled with the DoFn).
      removed: also output ``Removed(removed=id, reason="<filter>.<rule>",
        detail)`` for every dropped document; the result is then a
        ``DoOutputsTuple`` with the kept documents as ``[None]`` (main) and
        the removed records as ``["removed"]``.

    Example: ``docs | ApplyFilters(lambda: [GopherQualityFilter()])`` keeps
    the documents Gopher's quality rules keep; counter
    ``filters/gopher_quality/dropped.short_doc`` counts those with < 50 words.
    """

    def __init__(self, filters, removed: bool = False, label: Optional[str] = None):
        super().__init__(label)
        if callable(filters) and not isinstance(filters, (list, tuple)):
            self._factory = filters
        else:
            fixed = list(filters)
            self._factory = lambda: fixed
        FilterChain(self._factory())  # validate names before the pipeline runs
        self._removed = removed

    def default_label(self):
        return "ApplyFilters"

    def expand(self, docs):
        fn = _ApplyFiltersFn(self._factory, self._removed)
        if self._removed:
            return docs | "Filter" >> beam.ParDo(fn).with_outputs(REMOVED_TAG, main="kept")
        return docs | "Filter" >> beam.ParDo(fn)


# Any, not int: a hash is a uint64, beyond the VarIntCoder an int hint picks (the runner
# raised OverflowError sizing a pair whose hash is >= 2**63)
@beam.typehints.with_input_types(Tuple[Any, str])
@beam.typehints.with_output_types(List[Tuple[Any, str]])
class SmallestHashes(beam.CombineFn):
    """CombineFn: ``(hash, id)`` pairs -> the ``n`` smallest, ascending (ties by id).

    The accumulator holds at most ``n`` pairs, whatever the input size.
    """

    def __init__(self, n: int):
        SmallestHeap(n)  # validates n
        self.n = n

    def create_accumulator(self):
        return SmallestHeap(self.n)

    def add_input(self, heap, pair):
        heap.push(pair[0], pair[1])
        return heap

    def merge_accumulators(self, heaps: Iterable[SmallestHeap]):
        heaps = iter(heaps)
        first = next(heaps)
        for other in heaps:
            first.merge(other)
        return first

    def extract_output(self, heap):
        return heap.items()


class SamplePerPartition(beam.PTransform):
    """``PCollection[(partition, id)]`` -> ``PCollection[(partition, [id, ...])]``:
    per partition, the ``n`` ids with the smallest seeded xxh3-64 (ties by id),
    ascending by hash.  Memory per key and per accumulator: ``n`` pairs.
    """

    def __init__(self, n: int, seed: int = DEFAULT_SEED, label: Optional[str] = None):
        super().__init__(label)
        SmallestHeap(n)
        self.n = n
        self.seed = seed

    def expand(self, keyed_ids):
        seed = self.seed
        return (keyed_ids
                | "Hash" >> beam.Map(lambda kv: (kv[0], (sample_hash(kv[1], seed), kv[1])))
                | "Smallest" >> beam.CombinePerKey(SmallestHashes(self.n))
                | "Ids" >> beam.MapTuple(lambda key, pairs: (key, [i for _, i in pairs])))


class _KeepBelow(beam.DoFn):
    """Batches of refs -> the refs whose ``(hash, id)`` is at most their partition's
    threshold (the n-th smallest pair); the others counted and, asked, removed records."""

    def __init__(self, n: int, seed: int, key_fn, removed: bool):
        self.n = n
        self.seed = seed
        self.key_fn = key_fn
        self.removed = removed

    def setup(self):
        self.kept = Metrics.counter(NAMESPACE, "sample_per_partition/kept")
        self.dropped = Metrics.counter(NAMESPACE, "sample_per_partition/dropped.not_sampled")

    def process(self, batch, thresholds):
        out = []
        for ref in batch:
            limit = thresholds.get(self.key_fn(ref))
            pair = (sample_hash(ref.id, self.seed), ref.id)
            if limit is not None and pair <= limit:
                out.append(ref)
                continue
            if self.removed:
                yield beam.pvalue.TaggedOutput(REMOVED_TAG, Removal(
                    ref.file, ref.line, ref.id, ref.int_id, "sample_per_partition.not_sampled",
                    f"not among the {self.n} smallest hashes of its partition"))
        self.kept.inc(len(out))
        self.dropped.inc(len(batch) - len(out))
        if out:
            yield out


class KeepSmallestPerPartition(beam.PTransform):
    """Batches of refs (``DocRef``) -> the same batches holding, per
    partition (``key_fn(ref)``, e.g. the ref's partition value), exactly the ``n``
    refs with the smallest seeded xxh3-64 of the id (ties by id), or all of a
    partition that has fewer.

    Two passes over the refs: ``SmallestHashes(n)`` per partition gives the n-th
    smallest ``(hash, id)`` pair (memory ``n`` pairs per accumulator), then a
    filter keeps the refs at or below their partition's pair (a side input of
    one pair per partition).  Returns ``{"kept", "removed"}``; ``removed`` (a
    ``transforms.core.records.Removal`` per dropped ref, reason
    ``sample_per_partition.not_sampled``) is empty unless ``removed``.  Counters ``sample_per_partition/kept`` and
    ``sample_per_partition/dropped.not_sampled`` (namespace ``dataprep.filters``).
    """

    def __init__(self, n: int, seed: int = DEFAULT_SEED, key_fn=lambda ref: b"",
                 removed: bool = False):
        super().__init__()
        SmallestHeap(n)
        self.n = n
        self.seed = seed
        self.key_fn = key_fn
        self.removed = removed

    def expand(self, batches):
        key_fn, seed, n = self.key_fn, self.seed, self.n
        thresholds = (
            batches
            | "KeyedHashes" >> beam.FlatMap(
                lambda batch: [(key_fn(ref), (sample_hash(ref.id, seed), ref.id))
                               for ref in batch])
            | "Smallest" >> beam.CombinePerKey(SmallestHashes(n))
            | "NthSmallest" >> beam.MapTuple(lambda key, pairs: (key, pairs[-1] if pairs else None))
            .with_output_types(Tuple[bytes, Optional[Tuple[Any, str]]]))  # see SmallestHashes
        out = batches | "KeepBelow" >> beam.ParDo(
            _KeepBelow(n, seed, key_fn, self.removed),
            beam.pvalue.AsDict(thresholds)).with_outputs(REMOVED_TAG, main="kept")
        return {"kept": out.kept, "removed": out[REMOVED_TAG]}
