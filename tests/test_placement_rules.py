"""Replica placement: weights, distinct roots, minimal movement, affinity rules and errors."""
import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.storage.placement import Placement, Root, parse_roots, parse_rules, place

ITEMS = [f"corpus/shard-{i:05d}" for i in range(20_000)]


def within(observed, expected_p, n, sigmas=5.0):
    """Binomial count within ``sigmas`` standard deviations of n*p."""
    sd = math.sqrt(n * expected_p * (1 - expected_p))
    return abs(observed - n * expected_p) <= sigmas * sd


def test_weighted_roots_get_replicas_in_proportion():
    roots = parse_roots("a=2,b=1,c=1")
    firsts = Counter(place(item, roots, 1)[0] for item in ITEMS)
    assert within(firsts["a"], 0.5, len(ITEMS))
    assert within(firsts["b"], 0.25, len(ITEMS))
    assert within(firsts["c"], 0.25, len(ITEMS))


def test_weight_two_root_holds_more_replicas_with_r2():
    roots = parse_roots("a=2,b,c,d")
    counts = Counter(uri for item in ITEMS for uri in place(item, roots, 2))
    assert counts["a"] > 1.5 * max(counts["b"], counts["c"], counts["d"])
    assert sum(counts.values()) == 2 * len(ITEMS)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.integers(1, 6), st.data())
def test_replicas_are_on_distinct_roots_and_stable(item, n, data):
    roots = [Root(f"r{i}", data.draw(st.floats(0.1, 10))) for i in range(n)]
    r = data.draw(st.integers(1, n))
    chosen = place(item, roots, r)
    assert len(chosen) == r == len(set(chosen))
    assert chosen == place(item, list(reversed(roots)), r)  # order of roots does not matter


@pytest.mark.parametrize("n,r", [(3, 1), (4, 2), (7, 3)])
def test_adding_a_root_moves_about_one_in_n_plus_one_replicas(n, r):
    before_roots = [Root(f"root{i}") for i in range(n)]
    after_roots = before_roots + [Root("new")]
    moved = total = 0
    for item in ITEMS[:5000]:
        before, after = set(place(item, before_roots, r)), set(place(item, after_roots, r))
        assert len(after - before) <= 1  # an item loses at most one replica, to the new root
        assert after - before <= {"new"}
        moved += len(after - before)
        total += r
    # Each replica moves with probability 1/(N+1); replicas of one item are not
    # independent, so bound by items: at most one moves per item, P = r/(N+1).
    assert within(moved, r / (n + 1), 5000)
    assert abs(moved / total - 1 / (n + 1)) < 0.03


def test_affinity_pins_partitions_and_falls_back_to_star():
    roots = parse_roots("/m/asia1,/m/asia2,/m/a,/m/b,/m/c")
    rules = parse_rules("lang=zh:/m/asia1,/m/asia2;*:/m/a,/m/b,/m/c")
    placement = Placement(roots, 2, rules, field="lang")
    for i in range(200):
        assert set(placement.place(f"c/zh/s{i}", "zh", "zh")) == {"/m/asia1", "/m/asia2"}
        assert set(placement.place(f"c/en/s{i}", "en", "en")) <= {"/m/a", "/m/b", "/m/c"}
    assert placement.describe() == [
        {"match": "lang=zh", "roots": ["/m/asia1", "/m/asia2"]},
        {"match": "*", "roots": ["/m/a", "/m/b", "/m/c"]}]


def test_star_rule_order_does_not_shadow_specific_rules():
    roots = parse_roots("a,b,c,d")
    placement = Placement(roots, 1, parse_rules("*:a,b;lang=zh:c,d"), field="lang")
    assert placement.place("x", "zh", "zh")[0] in {"c", "d"}
    assert placement.place("x", "en", "en")[0] in {"a", "b"}


def test_without_star_rule_other_partitions_use_every_root():
    roots = parse_roots("a,b,c")
    placement = Placement(roots, 1, parse_rules("lang=zh:a"), field="lang")
    used = {placement.place(f"s{i}", "en", "en")[0] for i in range(200)}
    assert used == {"a", "b", "c"}


def test_partition_name_selector_and_escaped_values():
    roots = parse_roots("a,b,c")
    rules = parse_rules("partition=_missing:c;lang=x%3Ay:b")
    placement = Placement(roots, 1, rules, field="lang")
    assert placement.place("s", "_missing", None) == ["c"]
    assert placement.place("s", "x_3ay", "x:y") == ["b"]


def test_placement_without_rules_is_plain_rendezvous():
    roots = parse_roots("a=2,b,c")
    placement = Placement(roots, 2)
    assert all(placement.place(i) == place(i, roots, 2) for i in ITEMS[:500])


def test_rules_normalise_roots_like_output_roots():
    rules = parse_rules("*:rel/a, rel/b", normalise=lambda u: "/abs/" + u)
    assert rules[0].roots == ("/abs/rel/a", "/abs/rel/b")


@pytest.mark.parametrize("spec,rules,r,field,message", [
    ("a,b,c", "lang=zh:a;*:b,c", 2, "lang", "fewer than the replication factor 2"),
    ("a,b,c", "lang=zh:a,x", 1, "lang", "not in --output_roots"),
    ("a,b,c", "src=web:a,b", 1, "lang", "partitioned by 'lang'"),
    ("a,b", "*:a,b", 3, None, "replication 3 needs at least 3"),
])
def test_placement_errors(spec, rules, r, field, message):
    with pytest.raises(ValueError, match=message):
        Placement(parse_roots(spec), r, parse_rules(rules), field=field)


@pytest.mark.parametrize("text,message", [
    ("", "names no rule"), ("lang=zh", "SELECTOR:ROOT"), ("zh:a", "neither"),
    ("lang=zh:", "names no root"), ("lang=zh:a,a", "more than once"),
    ("*:a;*:b", "two rules"),
])
def test_rule_syntax_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_rules(text)
