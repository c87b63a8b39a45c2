"""Size-balanced shards: cut each partition's sorted records by cumulative size.

Records of a partition are ordered by a sort key ``order + (id,)`` whose first
element is a coarse integer *bucket* (the top bits of the id's xxh3 for hash
order, a fine quantile index for range order).  With ``T`` the partition's
raw bytes and ``n = ceil(T / target)`` shards, shard ``j`` holds the records
whose byte midpoint falls in ``[j*T/n, (j+1)*T/n)``: every shard is within one
record of ``T/n <= target``, so max/mean is about ``1 + max_record / (T/n)``.

Computed without ever gathering a partition in one place:

1. bytes and smallest key per (partition, bucket): a combine of per-batch
   histograms;
2. from that histogram, per partition, ``n`` and the buckets that hold a cut;
3. only the records of those buckets are grouped and sorted to find the exact
   cut keys (a cut past a bucket's last midpoint moves to the first key of
   the next non-empty bucket, known from step 1);
4. every record finds its shard by bisecting its partition's cut keys.

The result depends only on the data, never on bundling or arrival order, so
every runner writes the same shards.  When one record is larger than ``T/n``
some cut positions fall inside it; those shards would be empty and are
dropped (fewer, fuller shards), except with a fixed ``num_shards``.
"""
import bisect
import math
from typing import Any, NamedTuple

import apache_beam as beam
import xxhash

from transforms.core.records import pack, unpack, unpack_columns

BUCKET_BITS = 12
SHARD_HASH_SEED = 0x5EED  # the seed shard_of has always used


class ShardRecord(NamedTuple):
    """A record to place in a shard: its partition (``""`` when unpartitioned),
    its order key in the partition (``hash_order(id)`` or a range order, whose
    first element is the coarse bucket), its id, and its payload (a JSON line,
    or a ``transforms.processing.refs.DocRef``; ``size_of`` gives its shard bytes)."""
    partition: str
    order: tuple
    id: str
    payload: Any


def hash_order(record_id: str) -> tuple[int, int]:
    """Order key spreading ids uniformly: (top 12 bits, top 63 bits) of xxh3.

    63 bits, not 64: Beam's integer coder holds signed 64-bit values only.
    """
    h = xxhash.xxh3_64_intdigest(record_id.encode("utf-8", "surrogatepass"),
                                 seed=SHARD_HASH_SEED)   # stable_hash64, inlined: once per record
    return h >> (64 - BUCKET_BITS), h >> 1


def hash_orders(record_ids: list) -> list:
    """``[hash_order(i) for i in record_ids]``, without a call per id."""
    digest, shift = xxhash.xxh3_64_intdigest, 64 - BUCKET_BITS
    return [(h >> shift, h >> 1) for h in (
        digest(i.encode("utf-8", "surrogatepass"), seed=SHARD_HASH_SEED) for i in record_ids)]


def record_size(line: bytes) -> int:
    """Raw bytes a record takes in a JSON Lines shard (the newline counts)."""
    return len(line) + 1


def line_size(record: ShardRecord) -> int:
    """Shard bytes of a record whose payload is its JSON line."""
    _, _, _, line = record
    return record_size(line)


def ref_size(record: ShardRecord) -> int:
    """Shard bytes of a record whose payload is a ``DocRef``."""
    _, _, _, ref = record
    return ref.size


def plan_partition(histogram: list[tuple[int, int, tuple]], num_shards: int | None,
                   target_shard_bytes: int) -> dict:
    """How to cut one partition, from its ``(bucket, bytes, smallest sort key)`` histogram.

    ``cuts`` maps each bucket whose byte span holds a cut position
    ``x = j*T/n`` (j >= 1) to ``[(j, x, bytes before the bucket)]``;
    ``next_first`` gives, for those buckets, the smallest key of the next
    non-empty bucket (None at the end): where a cut lands when no record of
    its own bucket has its midpoint at or past ``x``.
    """
    histogram = sorted(histogram)
    total = sum(size for _, size, _ in histogram)
    n = num_shards or max(1, math.ceil(total / target_shard_bytes))
    cuts: dict[int, list] = {}
    next_first: dict[int, tuple | None] = {}
    positions = [j * total / n for j in range(1, n)]
    before, p = 0, 0
    for i, (bucket, size, _) in enumerate(histogram):
        after = before + size
        while p < len(positions) and positions[p] < after:
            cuts.setdefault(bucket, []).append((p + 1, positions[p], before))
            later = [key for _, s, key in histogram[i + 1:] if s]
            next_first[bucket] = later[0] if later else None
            p += 1
        before = after
    firsts = [key for _, s, key in histogram if s]
    return {"num_shards": n, "total": total, "cuts": cuts, "next_first": next_first,
            "first": firsts[0] if firsts else None}


# Sorts after every sort key (buckets are small ints): a cut past the last record.
PAST_END = (1 << 62,)


def cut_keys(bucket: int, records: list[tuple[tuple, int]], cuts: list[tuple],
             next_first: tuple | None) -> list[tuple]:
    """``(j, cut key)`` for the cuts inside one bucket, from its ``(sort key, size)`` records.

    The cut key is the sort key of the first record whose byte midpoint is at
    or past the cut position.
    """
    records = sorted(records)
    out = []
    for j, position, before in cuts:
        cumulative, key = before, next_first or PAST_END
        for sort_key, size in records:
            if cumulative + size / 2 >= position:
                key = sort_key
                break
            cumulative += size
        out.append((j, key))
    return out


def final_cuts(cuts: list[tuple], fixed: bool, first: tuple | None) -> list[tuple]:
    """Cut keys in shard order.  With a fixed count every shard stays (some may be
    empty); sized by bytes, cuts at the first record, repeated or past the end
    go, so no shard is empty."""
    keys = [key for _, key in sorted(cuts)]
    if fixed:
        return keys
    out = []
    for key in keys:
        if key != PAST_END and key != first and (not out or key != out[-1]):
            out.append(key)
    return out


def shard_index(cuts: list[tuple], sort_key: tuple) -> int:
    """Shard of a record: how many of its partition's cut keys are <= its sort key."""
    return bisect.bisect_right(cuts, sort_key)


class _MergeHistograms(beam.CombineFn):
    """A partition's ``{bucket: (bytes, smallest sort key)}`` histograms, merged."""

    def create_accumulator(self):
        return {}

    def add_input(self, merged, histogram):
        for bucket, (size, key) in histogram.items():
            seen = merged.get(bucket)
            if seen is None:
                merged[bucket] = (size, key)
            else:  # key None: a required partition's zero-byte marker
                first = seen[1] if key is None or (seen[1] is not None and seen[1] <= key) \
                    else key
                merged[bucket] = (seen[0] + size, first)
        return merged

    def merge_accumulators(self, accs):
        accs = iter(accs)
        merged = dict(next(accs))
        for acc in accs:
            self.add_input(merged, acc)
        return merged

    def extract_output(self, merged):
        return merged


class _FindCuts(beam.DoFn):
    def process(self, grouped, plans):
        (partition, bucket), records = grouped
        plan = plans[partition]
        for j, key in cut_keys(bucket, list(records), plan["cuts"][bucket],
                               plan["next_first"][bucket]):
            yield partition, (j, key)


class AssignBalancedShards(beam.PTransform):
    """Batches of ``ShardRecord`` (lists, or ``Packed`` lists:
    ``transforms.core.records.pack``) ->
    ``((partition, shard, num_shards), Packed([records]))``, one per shard per
    batch (packed: these records cross two groupings, and a ``ShardRecord``
    is no type Beam encodes natively, so a list of them would be pickled
    record by record, and pickled again to estimate its size; ``unpack``
    gives the list).

    Also emits ``((partition, shard, num_shards), None)`` for every shard, so
    a shard with no record (only possible with a fixed ``num_shards``, or a
    required partition with no records) is still written.  ``num_shards``
    fixes the count per partition; otherwise it is the partition's bytes over
    ``target_shard_bytes``, rounded up, less any shard that would be empty.
    ``size_of`` gives a record's shard bytes (``line_size`` for JSON-line
    payloads, ``ref_size`` for refs).
    """

    def __init__(self, target_shard_bytes: int, num_shards: int | None = None,
                 required_partitions=(), size_of=line_size):
        super().__init__()
        self.size_of = size_of
        self.target = target_shard_bytes
        self.num_shards = num_shards
        self.required = list(required_partitions)

    def expand(self, batches):
        target, fixed, size_of = self.target, self.num_shards, self.size_of
        # A required partition gets a shard even with no records (0 bytes in bucket 0).
        required = batches.pipeline | "RequiredPartitions" >> beam.Create(
            [(p, {0: (0, None)}) for p in self.required])
        # Bytes and smallest sort key per bucket straight from the batches: no
        # per-record (key, size) list is built, encoded or kept between stages.
        plans = (
            (batches | "BucketBytes" >> beam.FlatMap(_bucket_bytes, size_of), required)
            | "WithRequired" >> beam.Flatten()
            | "Histograms" >> beam.CombinePerKey(_MergeHistograms())
            | "Plan" >> beam.MapTuple(lambda p, hist: (p, plan_partition(
                [(b, size, key) for b, (size, key) in hist.items()], fixed, target))))
        plans_side = beam.pvalue.AsDict(plans)
        cuts = (
            batches
            | "InCutBuckets" >> beam.FlatMap(_in_cut_buckets, plans_side, size_of)
            | "GroupCutBuckets" >> beam.GroupByKey()
            | "FindCuts" >> beam.ParDo(_FindCuts(), plans_side)
            | "CutsPerPartition" >> beam.GroupByKey()
            | "FinalCuts" >> beam.Map(
                lambda kv, plans: (kv[0], final_cuts(list(kv[1]), fixed is not None,
                                                     plans[kv[0]]["first"])), plans_side))
        cuts_side = beam.pvalue.AsDict(cuts)
        assigned = batches | "AssignShards" >> beam.FlatMap(_assign_batch, cuts_side)
        every_shard = plans | "EveryShard" >> beam.FlatMap(_every_shard, cuts_side)
        return (assigned, every_shard) | "WithEmptyShards" >> beam.Flatten()


def _fields(batch, size_of, sizes: bool = True):
    """A batch of records (list or ``Packed``) -> ``(columns, records, partitions, orders,
    ids, sizes)``: a ``Packed`` batch by columns is read by field (``columns``; records
    None, no ``ShardRecord`` or payload built when ``size_of`` is ``ref_size`` or
    ``line_size``), any other batch unpacked (``records``; columns None).  ``sizes``
    is None unless asked for."""
    columns = unpack_columns(batch)
    if columns is None or columns.cls is not ShardRecord:
        records = unpack(batch)
        return (None, records, [r[0] for r in records], [r[1] for r in records],
                [r[2] for r in records], list(map(size_of, records)) if sizes else None)
    found = None
    if sizes:
        payload = columns.nested("payload")
        if size_of is ref_size and payload is not None and "size" in payload.cls._fields:
            found = payload["size"]
        elif size_of is line_size:
            found = [len(line) + 1 for line in columns["payload"]]
        else:
            found = list(map(size_of, unpack(batch)))
    return columns, None, columns["partition"], columns["order"], columns["id"], found


def _bucket_bytes(batch, size_of):
    """A batch of records (list or ``Packed``) -> ``(partition, {bucket: (bytes,
    smallest sort key)})`` per partition: one element per batch and partition, not
    per bucket (there are 4096 buckets).  A sort key is ``order + (id,)``."""
    partitions: dict = {}
    _, _, names, orders, ids, sizes = _fields(batch, size_of)
    for partition, order, record_id, size in zip(names, orders, ids, sizes):
        histogram = partitions.get(partition)
        if histogram is None:
            histogram = partitions[partition] = {}
        seen = histogram.get(order[0])
        if seen is None:
            histogram[order[0]] = (size, order + (record_id,))
        else:
            key = order + (record_id,)
            histogram[order[0]] = (seen[0] + size, key if key < seen[1] else seen[1])
    return partitions.items()


def _in_cut_buckets(batch, plans, size_of):
    """A batch of records -> ``((partition, bucket), (sort key, bytes))`` of the records
    in a bucket that holds a cut (a few of the 4,096 buckets per partition)."""
    out = []
    _, _, names, orders, ids, sizes = _fields(batch, size_of)
    for partition, order, record_id, size in zip(names, orders, ids, sizes):
        if order[0] in plans[partition]["cuts"]:
            out.append(((partition, order[0]), (order + (record_id,), size)))
    return out


def _assign_batch(batch, cuts):
    """A batch of records (list or ``Packed``) -> ``(shard key, Packed([records]))``
    per shard it touches (a ``Packed`` batch by columns is cut by columns, its
    records never built)."""
    shards: dict = {}
    partitions: dict = {}   # partition -> (its cut keys, {shard index: record indices})
    bisect_right = bisect.bisect_right
    columns, records, names, orders, ids, _ = _fields(batch, None, sizes=False)
    for i, (partition, order, record_id) in enumerate(zip(names, orders, ids)):
        found = partitions.get(partition)
        if found is None:
            found = partitions[partition] = (cuts.get(partition, []), {})
        partition_cuts, by_index = found
        index = bisect_right(partition_cuts, order + (record_id,))  # shard_index, inlined
        members = by_index.get(index)
        if members is None:
            members = by_index[index] = []
        members.append(i)
    for partition, (partition_cuts, by_index) in partitions.items():
        for index, members in by_index.items():
            shards[(partition, index, len(partition_cuts) + 1)] = members
    if columns is not None:
        return [(key, columns.take(members)) for key, members in shards.items()]
    return [(key, pack([records[i] for i in members])) for key, members in shards.items()]


def _every_shard(planned, cuts):
    partition = planned[0]
    n = len(cuts.get(partition, [])) + 1
    return [((partition, j, n), None) for j in range(n)]


def balance_rows(manifest: dict) -> list[dict]:
    """Per partition of a manifest: records, shards, raw bytes, max and mean shard size."""
    groups: dict[str, list[dict]] = {}
    for shard in manifest["shards"]:
        groups.setdefault(shard.get("partition", ""), []).append(shard)
    rows = []
    for name in sorted(groups):
        sizes = [s["raw_bytes"] for s in groups[name]]
        mean = sum(sizes) / len(sizes)
        rows.append({
            "partition": name or "(all)",
            "records": sum(s["records"] for s in groups[name]),
            "shards": len(sizes),
            "raw_bytes": sum(sizes),
            "max_shard_bytes": max(sizes),
            "mean_shard_bytes": round(mean, 1),
            "max_over_mean": round(max(sizes) / mean, 4) if mean else None,
        })
    return rows
