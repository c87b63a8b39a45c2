"""StableHashPartition, PartitionByField and RangePartition: pure properties and pipelines."""
import bisect
import json
import os
import subprocess
import sys
import textwrap

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.processing.partition import (
    OTHER, PartitionByField, RangePartition, StableHashPartition, choose_partitions,
    balanced_bounds, numeric_field, range_plan, stable_partition, text_length)
from transforms.core.partition_names import MISSING, encode_value

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- stable hash

def test_stable_partition_golden_values():
    # Pinned: a change here re-partitions every existing dataset.
    assert [stable_partition(f"doc-{i}", 8) for i in range(8)] == \
        [stable_partition(f"doc-{i}".encode(), 8) for i in range(8)]
    assert stable_partition(7, 5) == stable_partition("7", 5)
    with pytest.raises(TypeError):
        stable_partition(1.5, 4)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.integers()), st.integers(1, 1000))
def test_stable_partition_in_range_and_repeatable(key, n):
    index = stable_partition(key, n)
    assert 0 <= index < n
    assert index == stable_partition(key, n)


@pytest.mark.parametrize("n", [2, 7, 16])
def test_stable_partition_is_balanced(n):
    keys = 40_000
    counts = [0] * n
    for i in range(keys):
        counts[stable_partition(f"id-{i}", n)] += 1
    expected = keys / n
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    # Chi-square with n-1 degrees of freedom: mean n-1, sd sqrt(2(n-1)); 6 sd is never hit by chance.
    assert chi2 < (n - 1) + 6 * (2 * (n - 1)) ** 0.5


SCRIPT = textwrap.dedent("""
    import json, sys
    import apache_beam as beam
    from transforms.processing.partition import StableHashPartition
    from transforms.processing.runner_guards import keep_direct_runner_local
    out = {}
    with beam.Pipeline(runner="DirectRunner") as p:
        keep_direct_runner_local(p)
        parts = p | beam.Create([f"key-{i}" for i in range(200)]) | StableHashPartition(5, key=lambda e: e)
        for i, part in enumerate(parts):
            part | f"Collect{i}" >> beam.Map(lambda e, i=i: print(json.dumps([i, e])))
""")


def run_in_process(seed):
    env = dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=True)
    return sorted(tuple(json.loads(line)) for line in proc.stdout.splitlines()
                  if line.startswith("["))


def test_same_partitions_in_processes_with_different_hash_seeds():
    first, second = run_in_process(1), run_in_process(12345)
    assert len(first) == 200
    assert first == second
    assert first == sorted((stable_partition(f"key-{i}", 5), f"key-{i}") for i in range(200))


def test_stable_hash_partition_pipeline(make_pipeline):
    docs = [(f"doc-{i}", f"line {i}".encode()) for i in range(60)]
    with make_pipeline() as p:
        parts = p | beam.Create(docs) | StableHashPartition(4)
        for i, part in enumerate(parts):
            expected = [d for d in docs if stable_partition(d[0], 4) == i]
            assert expected  # every partition gets something from 60 ids
            assert_that(part, equal_to(expected), label=f"Part{i}")


# ---------------------------------------------------------------- by field

def doc(i, **fields):
    return f"d{i:03d}", orjson.dumps({"id": f"d{i:03d}", "text": f"t{i}", **fields})


def test_choose_partitions_keeps_most_frequent_and_counts_missing_and_other():
    counts = {"a": 5, "b": 5, "c": 9, "d": 1, MISSING: 2}
    assert choose_partitions(counts, 10) == set(counts)
    assert choose_partitions(counts, 4) == {"c", "a", MISSING}  # + _other = 4
    assert choose_partitions({"a": 1, "b": 1, "c": 1}, 2) == {"a"}


def test_partition_by_field_pipeline_exact(make_pipeline):
    docs = ([doc(i, lang="en") for i in range(5)] + [doc(i, lang="zh") for i in range(5, 8)]
            + [doc(8, lang="Zh"), doc(9, lang="../../x"), doc(10), doc(11, lang=None),
               doc(12, lang=3)])
    with make_pipeline() as p:
        routed, info = p | beam.Create(docs) | PartitionByField("lang", max_partitions=4)
        expected = ([("en", d) for d in docs[:5]] + [("zh", d) for d in docs[5:8]]
                    + [(OTHER, docs[8]), (OTHER, docs[9]), (MISSING, docs[10]),
                       (MISSING, docs[11]), (OTHER, docs[12])])
        assert_that(routed, equal_to(expected), label="Routed")
        assert_that(info, equal_to([{
            "scheme": "field", "field": "lang", "max_partitions": 4, "missing": MISSING,
            "overflow": OTHER,
            "partitions": {
                "en": {"records": 5, "value": "en", "value_text": "en"},
                "zh": {"records": 3, "value": "zh", "value_text": "zh"},
                MISSING: {"records": 2, "value": None, "value_text": None},
                OTHER: {"records": 3, "values": 3}}}]), label="Info")


def test_partition_by_field_without_overflow_keeps_every_value(make_pipeline):
    values = ["Zh", "zh", "caf\u00e9", "cafe\u0301", "/abs", "a\x00b", "x" * 10_000]
    docs = [doc(i, src=v) for i, v in enumerate(values)]
    with make_pipeline() as p:
        routed, _ = p | beam.Create(docs) | PartitionByField("src")
        assert_that(routed, equal_to([(encode_value(v), d) for v, d in zip(values, docs)]))


# ---------------------------------------------------------------- by range

def test_balanced_bounds_give_one_range_per_key_when_they_can():
    years = [(2020, 100), (2021, 100), (2022, 100), (2023, 100)]
    assert balanced_bounds(years, 4) == [2021, 2022, 2023]
    assert balanced_bounds(list(reversed(years)), 2) == [2022]
    assert balanced_bounds([(1, 3), (2, 3)], 2) == [2]
    assert balanced_bounds([(k, 1) for k in range(1, 101)], 4) == [26, 51, 76]
    # one key holds most: ranges of 0, 90 and 10 records (nearest cuts to 33 and 67)
    assert balanced_bounds([(1, 90), (2, 5), (3, 5)], 3) == [1, 2]
    assert balanced_bounds([], 4) == [] and balanced_bounds(years, 1) == []
    plan = range_plan(years, 4)
    assert plan.bounds == [2021, 2022, 2023] and plan.fine == sorted(plan.fine)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(-50, 50), st.integers(1, 20), min_size=1, max_size=30),
       st.integers(2, 8))
def test_balanced_bounds_cut_nearest_to_equal_counts(histogram, n):
    """Property: each cut is a key, cuts never go back, and the count before
    cut i is within half a key's count of i/n of the total."""
    pairs = sorted(histogram.items())
    bounds = balanced_bounds(pairs, n)
    assert len(bounds) == n - 1 and bounds == sorted(bounds)
    assert set(bounds) <= set(histogram)
    total = sum(histogram.values())
    for i, bound in enumerate(bounds, 1):
        before = sum(c for k, c in pairs if k < bound)
        cut_key_count = max(histogram[bound], max(
            (c for k, c in pairs if k < bound), default=0))
        # no cut past the last key exists: cutting before it may be off by its whole count
        slack = max(cut_key_count / 2, histogram[bound] if bound == pairs[-1][0] else 0)
        assert abs(before - total * i / n) <= slack + 1e-9


def test_key_functions():
    d = ("x", orjson.dumps({"text": "h\u00e9llo", "ts": 12.5, "flag": True, "s": "1"}))
    assert text_length("text")(d) == 5
    assert numeric_field("ts")(d) == 12.5
    assert numeric_field("flag")(d) is None and numeric_field("s")(d) is None
    assert numeric_field("nope")(d) is None


def test_range_partition_pipeline_exact(make_pipeline):
    keys = list(range(1, 101))
    elements = [(f"e{k:03d}", k) for k in keys] + [("none", None)]
    with make_pipeline() as p:
        routed, info = (p | beam.Create(elements)
                        | RangePartition(lambda e: e[1], 4, key_name="k"))
        names = routed | beam.Map(lambda r: (r[0], r[2][0]))
        # the cuts are exact on the key histogram: 25 keys per range
        expected = [(f"range-{bisect.bisect_right([26, 51, 76], k):05d}", f"e{k:03d}")
                    for k in keys]
        assert_that(names, equal_to(expected + [(MISSING, "none")]), label="Names")
        orders_sorted = (routed | beam.Filter(lambda r: r[2][1] is not None)
                         | beam.Map(lambda r: r[1][1] == r[2][1] and r[1][0] >= 0)
                         | "AllTrue" >> beam.combiners.Count.PerElement())
        assert_that(orders_sorted, equal_to([(True, 100)]), label="Orders")
        assert_that(info, equal_to([{
            "scheme": "range", "key": "k", "num_ranges": 4, "boundaries": [26, 51, 76],
            "missing": MISSING,
            "partitions": {
                "range-00000": {"records": 25, "lower": None, "upper": 26},
                "range-00001": {"records": 25, "lower": 26, "upper": 51},
                "range-00002": {"records": 25, "lower": 51, "upper": 76},
                "range-00003": {"records": 25, "lower": 76, "upper": None},
                MISSING: {"records": 1}}}]), label="Info")


def test_partition_by_field_uncapped_streams_every_value(make_pipeline):
    docs = [doc(i, lang=["en", "zh", "fr", "de"][i % 4]) for i in range(12)] + [doc(12)]
    with make_pipeline() as p:
        routed, info = p | beam.Create(docs) | PartitionByField("lang", max_partitions=None)
        assert_that(routed, equal_to([(encode_value(orjson.loads(d[1]).get("lang")), d)
                                      for d in docs]), label="Routed")
        assert_that(info | beam.Map(lambda i: sorted(i["partitions"].items())), equal_to([[
            (MISSING, {"records": 1, "value": None, "value_text": None}),
            ("de", {"records": 3, "value": "de", "value_text": "de"}),
            ("en", {"records": 3, "value": "en", "value_text": "en"}),
            ("fr", {"records": 3, "value": "fr", "value_text": "fr"}),
            ("zh", {"records": 3, "value": "zh", "value_text": "zh"})]]), label="Info")


def test_json_field_values_match_a_full_parse():
    from transforms.processing.partition import json_field
    line = orjson.dumps({"a": {"x": [1, 2.5, None]}, "b": [1, {"c": True}], "s": "\U0001F600",
                         "n": None, "i": -(2 ** 63)})
    for field in ["a", "b", "s", "n", "i", "absent"]:
        assert json_field(field)(("id", line)) == orjson.loads(line).get(field)
    assert json_field("a")(("id", b"[1, 2]")) is None
    # where simdjson refuses, a full parse has the last word: the last of a repeated
    # key (as orjson and the standard library read it), integers of any size exact
    for line in [b'{"a": "first", "a": "last"}', b'{"a": -9223372036854775809}',
                 b'{"t": "\\"a\\"", "a": "x", "b": {"a": 1}}']:
        assert json_field("a")(("id", line)) == json.loads(line)["a"]
    with pytest.raises(ValueError):
        json_field("a")(("id", b'{"a": 1'))


def test_weighted_quantiles_do_not_depend_on_input_order():
    from transforms.processing.partition import weighted_quantiles
    histogram = [(k % 20_000, 1 + k % 7) for k in range(50_000)]
    merged = {}
    for key, count in histogram:
        merged[key] = merged.get(key, 0) + count
    q = weighted_quantiles(list(merged.items()), 257)
    assert q == weighted_quantiles(list(reversed(list(merged.items()))), 257)
    assert len(q) == 257 and q == sorted(q) and q[0] == 0 and q[-1] == 19_999
    assert weighted_quantiles([(k, 1) for k in range(1, 101)], 5) == [1, 25, 50, 75, 100]
    assert weighted_quantiles([], 5) == []
