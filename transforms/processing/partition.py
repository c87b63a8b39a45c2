"""Deterministic partitioning: by stable hash, by a field's value, by ranges of a key.

* ``StableHashPartition(n, key)`` splits a PCollection into ``n`` like
  ``beam.Partition``, by xxh3 of the key: the same element lands in the same
  partition in every process, run and runner (never the built-in ``hash()``).
* ``PartitionByField(field)`` keys records by the safe folder name of a field's
  value (see ``partition_names``); at most ``max_partitions`` partitions, the
  least frequent values overflowing into ``_other``.
* ``RangePartition(key_fn, n)`` cuts the key's range at boundaries chosen on
  the exact key histogram so partitions hold counts as equal as whole keys
  allow, and gives every record an order key (fine buckets from Beam's
  ``ApproximateQuantiles``) so shards inside a partition follow the key.

The two data-dependent partitioners return ``(records, info)``: records keyed
by partition name, and one ``info`` dict (scheme, per-partition value or
bounds and counts) that the store writes into its manifest.
"""
import bisect
import threading
from typing import NamedTuple

import apache_beam as beam
import orjson
import simdjson
import xxhash
from apache_beam.metrics import Metrics
from apache_beam.transforms.stats import ApproximateQuantilesCombineFn
from apache_beam.transforms.window import GlobalWindows

from transforms.core import exact_json
from transforms.core.partition_names import MISSING, OTHER, encode_value, range_name, value_text

NAMESPACE = "dataprep.partition"
HASH_SEED = 0x9A27
FINE_BUCKETS_PER_RANGE = 64  # sub-ranges per range, for size-balanced shard cuts


def stable_partition(key, n: int) -> int:
    """Partition index in [0, n) of a str, bytes or int key: xxh3, not ``hash()``."""
    return xxhash.xxh3_64_intdigest(_as_key(key), HASH_SEED) % n


def default_key(element):
    """Documents ``(id, ...)`` by their id; a bare str/bytes/int by itself."""
    return element[0] if isinstance(element, tuple) else element


class _HashRoute(beam.DoFn):
    def __init__(self, n, key):
        self.n = n
        self.key = key

    def setup(self):
        self.tags = [str(i) for i in range(self.n)]

    def process(self, element):
        # A list, not a generator, and no extra arguments: Beam's fast invoker path.
        key = self.key(element)
        if key.__class__ is str:
            key = key.encode("utf-8", "surrogatepass")
        elif key.__class__ is not bytes:
            key = _as_key(key)
        index = xxhash.xxh3_64_intdigest(key, HASH_SEED) % self.n
        return [beam.pvalue.TaggedOutput(self.tags[index], element)]


def _as_key(key) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8", "surrogatepass")
    if isinstance(key, bytes):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key).encode()
    raise TypeError(f"partition keys must be str, bytes or int, got {type(key).__name__}")


class StableHashPartition(beam.PTransform):
    """PCollection -> tuple of ``n`` PCollections, element i to ``xxh3(key(e)) % n``."""

    def __init__(self, n: int, key=default_key):
        super().__init__()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        self.key = key

    def expand(self, pcoll):
        tags = [str(i) for i in range(self.n)]
        outputs = pcoll | "HashRoute" >> beam.ParDo(_HashRoute(self.n, self.key)).with_outputs(*tags)
        return tuple(outputs[t] for t in tags)


# ---------------------------------------------------------------- by field

_LOCAL = threading.local()


def _parse(line: bytes):
    """Validating SIMD parse; values are read lazily, so the text is never copied.

    One parser per thread, reused: much faster than building a dict per line.
    """
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = simdjson.Parser()
    return parser.parse(line)


def _field_of(line: bytes, field: str, quoted: bytes):
    """The field's value with orjson's meaning (the reader's), found the fast way.

    simdjson differs from orjson in two corners, handed to orjson: a repeated
    key (simdjson takes the first, orjson the last) and integers beyond 64
    bits (simdjson refuses them).  The reader already makes a record with a
    repeated top-level key a dead letter (``duplicate_key``, see
    ``transforms.processing.io.parse_line``), so no stored record has two meanings; the
    guard below stays for documents that did not come through the reader.
    ``quoted`` is the field name as a JSON string.
    """
    if line.count(quoted) > 1:
        return _field_by_orjson(line, field)
    try:
        obj = _parse(line)
        if not isinstance(obj, simdjson.Object):
            return None
        value = obj.get(field)
        if isinstance(value, simdjson.Object):
            return value.as_dict()
        if isinstance(value, simdjson.Array):
            return value.as_list()
        return value
    except (ValueError, RuntimeError):  # simdjson's errors; orjson has the last word
        return _field_by_orjson(line, field)


def _field_by_orjson(line: bytes, field: str):
    obj = exact_json.loads(line)
    return obj.get(field) if isinstance(obj, dict) else None


def json_field(field: str):
    """Value function: the field of a document ``(id, line)``'s JSON (None if absent)."""
    quoted = orjson.dumps(field)

    def value_of(doc):
        return _field_of(doc[1], field, quoted)
    return value_of


def choose_partitions(counts: dict[str, int], max_partitions: int | None) -> set[str]:
    """Names that keep their own partition; the rest go to ``_other``.

    At most ``max_partitions`` partitions in all (None: no limit), ``_missing``
    and ``_other`` included; the most frequent values win, ties by the smaller name.
    """
    if max_partitions is None or len(counts) <= max_partitions:
        return set(counts)
    slots = max_partitions - 1 - (MISSING in counts)  # one slot for _other
    ranked = sorted((n for n in counts if n != MISSING), key=lambda n: (-counts[n], n))
    return set(ranked[:max(0, slots)]) | ({MISSING} & set(counts))


def _field_info(name_counts, field, max_partitions):
    counts = {name: count for name, (count, _) in name_counts}
    kept = choose_partitions(counts, max_partitions)
    partitions = {}
    for name, (count, value) in sorted(name_counts):
        target = name if name in kept else OTHER
        entry = partitions.setdefault(target, {"records": 0})
        entry["records"] += count
        if target == name:
            entry["value"] = value
            entry["value_text"] = value_text(value)
        else:
            entry["values"] = entry.get("values", 0) + 1
    return {"scheme": "field", "field": field, "max_partitions": max_partitions,
            "missing": MISSING, "overflow": OTHER, "partitions": partitions}


class _NameByField(beam.DoFn):
    """element -> (partition name, element); per-bundle ``(name, (count, value))`` counts.

    Names of string values are cached (a field has few distinct values), and
    counts are summed in the bundle, so the per-record work is one parse and
    two dict look-ups.
    """

    def __init__(self, value_fn, count_metrics):
        self.value_fn = value_fn
        self.count_metrics = count_metrics

    def setup(self):
        self.names = {}

    def start_bundle(self):
        self.counts = {}

    def process(self, element):
        value = self.value_fn(element)
        if isinstance(value, str) or value is None:
            name = self.names.get(value)
            if name is None:
                name = self.names[value] = encode_value(value)
        else:
            name = encode_value(value)
        entry = self.counts.get(name)
        if entry is None:
            self.counts[name] = [1, value]
        else:
            entry[0] += 1
        return [(name, element)]

    def finish_bundle(self):
        for name, (count, value) in self.counts.items():
            if self.count_metrics:
                Metrics.counter(NAMESPACE, f"records.{name}").inc(count)
            yield beam.pvalue.TaggedOutput(
                "counts", GlobalWindows.windowed_value((name, (count, value))))
        self.counts = {}


class _SumCounts(beam.CombineFn):
    """(count, value) per name; a name is injective, so any value seen is the value."""

    def create_accumulator(self):
        return 0, None

    def add_input(self, acc, counted):
        return acc[0] + counted[0], counted[1]

    def merge_accumulators(self, accs):
        count, value = 0, None
        for c, v in accs:
            count += c
            value = v if c else value
        return count, value

    def extract_output(self, acc):
        return acc


class _RouteByName(beam.DoFn):
    def __init__(self):
        self.counters = {}

    def process(self, named, info):
        name = named[0]
        if name not in info["partitions"]:
            name = OTHER
            named = (name, named[1])
        counter = self.counters.get(name)
        if counter is None:
            counter = self.counters[name] = Metrics.counter(NAMESPACE, f"records.{name}")
        counter.inc()
        return [named]


class PartitionByField(beam.PTransform):
    """Records -> ``(records keyed by partition name, info)``.

    ``value_fn(element)`` gives the field value (default: the ``field`` of a
    ``(id, line)`` document's JSON).  Absent or null -> ``_missing``.  With
    ``max_partitions``, values past the most frequent go to ``_other``: that
    needs every value counted before any record is routed (a barrier); with
    ``max_partitions=None`` records stream through in one fused step.  Works
    in the global window (batch corpora).
    """

    def __init__(self, field: str, max_partitions: int | None = 256, value_fn=None):
        super().__init__()
        if max_partitions is not None and max_partitions < 2:
            raise ValueError(f"max_partitions must be >= 2, got {max_partitions}")
        self.field = field
        self.max_partitions = max_partitions
        self.value_fn = value_fn or json_field(field)

    def expand(self, records):
        capped = self.max_partitions is not None
        named = records | "NameByField" >> beam.ParDo(
            _NameByField(self.value_fn, not capped)).with_outputs("counts", main="named")
        info = (
            named.counts
            | "CountPerName" >> beam.CombinePerKey(_SumCounts())
            | "AllNames" >> beam.combiners.ToList()
            | "ChoosePartitions" >> beam.Map(_field_info, self.field, self.max_partitions))
        if not capped:
            return named.named, info
        routed = named.named | "Route" >> beam.ParDo(
            _RouteByName(), beam.pvalue.AsSingleton(info))
        return routed, info


# ---------------------------------------------------------------- by range

def weighted_quantiles(histogram: list[tuple], num_quantiles: int) -> list:
    """Beam's ApproximateQuantiles (weighted) over an exact ``(key, count)`` histogram.

    Fed in sorted order in one place, the sketch gives the same boundaries on
    every runner, whatever the bundling (fed element by element across
    workers, its buffers collapse in a runner-dependent order); it is exact
    while the distinct keys fit its buffers (thousands), approximate beyond.
    The histogram holds one pair per distinct key, so keys of bounded
    cardinality (lengths, dates) cost little however many records there are.
    """
    if not histogram:
        return []
    fn = ApproximateQuantilesCombineFn.create(num_quantiles=num_quantiles, weighted=True)
    acc = fn.create_accumulator()
    for key, count in sorted(histogram):
        acc = fn.add_input(acc, (key, count))
    return fn.extract_output(acc)


class RangePlan(NamedTuple):
    """Where ranges are cut: ``bounds`` (n-1 partition boundaries, partition i
    holds keys in ``[bounds[i-1], bounds[i])``) and ``fine`` (sub-range
    boundaries that order records inside a partition)."""
    bounds: list
    fine: list


def balanced_bounds(histogram: list[tuple], n: int) -> list:
    """n-1 boundaries over an exact ``(key, count)`` histogram that split the
    counts as evenly as whole keys allow.

    Boundary i is the key before which the running count is nearest to
    ``i * total / n`` (ties: the earlier key), never before the previous
    boundary.  A key is never split, so low-cardinality keys (years, labels
    as numbers) get one range per key when ``n`` equals their number:
    ``balanced_bounds([(2020, 5), (2021, 5), (2022, 5)], 3) == [2021, 2022]``.
    """
    pairs = sorted(histogram)
    if not pairs or n < 2:
        return []
    keys = [key for key, _ in pairs]
    before = []  # running count before each key
    total = 0
    for _, count in pairs:
        before.append(total)
        total += count
    bounds, low = [], 0
    for i in range(1, n):
        target = total * i / n
        j = bisect.bisect_left(before, target, lo=low)
        if j == len(before) or (j > low and target - before[j - 1] <= before[j] - target):
            j -= 1
        j = max(j, low)
        bounds.append(keys[j])
        low = j
    return bounds


def range_plan(histogram: list[tuple], n: int) -> RangePlan:
    """The ``RangePlan`` of an exact key histogram: balanced bounds
    (``balanced_bounds``) and ``n * FINE_BUCKETS_PER_RANGE`` fine buckets from
    ``weighted_quantiles``."""
    if not histogram:
        return RangePlan([], [])
    quantiles = weighted_quantiles(histogram, n * FINE_BUCKETS_PER_RANGE + 1)
    return RangePlan(balanced_bounds(histogram, n), list(quantiles[1:-1]))


class _RouteByRange(beam.DoFn):
    def __init__(self):
        self.counters = {}

    def process(self, keyed, plan: RangePlan):
        key, element = keyed
        if key is None:
            name, order = MISSING, (0, 0)
        else:
            name = range_name(bisect.bisect_right(plan.bounds, key))
            order = (bisect.bisect_right(plan.fine, key), key)
        if name not in self.counters:
            self.counters[name] = Metrics.counter(NAMESPACE, f"records.{name}")
        self.counters[name].inc()
        yield name, order, element


def _range_info(counts, plan: RangePlan, n, key_name):
    bounds = list(plan.bounds)
    counts = dict(counts)
    partitions = {}
    edges = [None] + bounds + [None]
    for i in range(n):
        name = range_name(i)
        if counts.get(name):
            partitions[name] = {"records": counts[name], "lower": edges[i], "upper": edges[i + 1]}
    if counts.get(MISSING):
        partitions[MISSING] = {"records": counts[MISSING]}
    return {"scheme": "range", "key": key_name, "num_ranges": n, "boundaries": bounds,
            "missing": MISSING, "partitions": partitions}


class RangePartition(beam.PTransform):
    """Records -> ``((name, order, record) triples, info)``.

    Partition i holds keys in ``[boundaries[i-1], boundaries[i])``, the
    boundaries chosen on the exact key histogram (``balanced_bounds``), so the
    partitions hold counts as equal as whole keys allow.  ``order`` = ``(fine bucket, key)``
    sorts records by key; a key of None goes to ``_missing``.
    """

    def __init__(self, key_fn, n: int, key_name: str = "key"):
        super().__init__()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.key_fn = key_fn
        self.n = n
        self.key_name = key_name

    def expand(self, records):
        key_fn, n = self.key_fn, self.n
        keyed = records | "RangeKey" >> beam.Map(lambda e: (key_fn(e), e))
        plan = (
            keyed
            | "PresentKeys" >> beam.FlatMapTuple(lambda k, _: [] if k is None else [k])
            | "CountPerKey" >> beam.combiners.Count.PerElement()
            | "KeyHistogram" >> beam.combiners.ToList()
            | "Plan" >> beam.Map(range_plan, n))
        plan = beam.pvalue.AsSingleton(plan, default_value=RangePlan([], []))
        routed = keyed | "Route" >> beam.ParDo(_RouteByRange(), plan)
        info = (
            routed
            | "PartitionName" >> beam.Map(lambda r: r[0])
            | "CountPerRange" >> beam.combiners.Count.PerElement()
            | "AllCounts" >> beam.combiners.ToList()
            | "Describe" >> beam.Map(_range_info, plan, n, self.key_name))
        return routed, info


def text_length(text_field: str):
    """Key function: characters of a document ``(id, line)``'s text."""
    quoted = orjson.dumps(text_field)

    def length(doc):
        text = _field_of(doc[1], text_field, quoted)
        return len(text) if isinstance(text, str) else None
    return length


def numeric_field(field: str):
    """Key function: a numeric field of a document ``(id, line)`` (None otherwise)."""
    quoted = orjson.dumps(field)

    def number(doc):
        value = _field_of(doc[1], field, quoted)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return value if value == value else None  # NaN has no place in an order
    return number


def non_numeric_value(field: str):
    """Value function: ``repr`` of a document's present, non-null, non-numeric
    ``field`` value (a string, bool, list...), else None."""
    quoted = orjson.dumps(field)

    def odd(doc):
        value = _field_of(doc[1], field, quoted)
        if value is None or (not isinstance(value, bool) and isinstance(value, (int, float))):
            return None
        return repr(value)[:40]
    return odd


def _range_field_message(values: list, field: str) -> str:
    if not values:
        return ""
    return (f"--range_by {field}: the field holds non-numeric values ({', '.join(values)}); "
            f"ranges need numbers (--partition_by {field} makes one partition per value)")


class NumericFieldGate(beam.PTransform):
    """``repr`` strings of ``field`` values that are present but not numbers (the
    scan's ``odd_range_values``, ``transforms.processing.refs.non_numeric``) -> one string:
    empty when there are none, else an error naming up to 5 of them (smallest
    first).  For ``WriteStore(preconditions=...)`` under ``--range_by FIELD``:
    the scan gives such documents range key ``null``, which would send them to
    ``_missing`` without a word."""

    def __init__(self, field: str, examples: int = 5):
        super().__init__()
        self.field = field
        self.examples = examples

    def expand(self, odd_values):
        return (
            odd_values
            | "DistinctValues" >> beam.Distinct()
            | "Examples" >> beam.combiners.Top.Smallest(self.examples)
            | "Message" >> beam.Map(_range_field_message, self.field))
