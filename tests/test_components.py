"""Connected components: the star steps against union-find, and the PTransform on any runner."""
import random
from collections import defaultdict

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.near_dup_corpus import union_find_roots
from transforms.processing.components import (
    ConnectedComponents, _LargeStar, _Settle, both_directions, is_unsettled, large_star, orient,
    small_star)


def run_rounds(edges, max_rounds=64):
    """The PTransform's steps, in memory: -> (node -> root, rounds used)."""
    current = {e for edge in edges for e in orient(edge)}
    for rounds in range(max_rounds + 1):
        neighbours = defaultdict(set)
        for edge in current:
            for node, other in both_directions(edge):
                neighbours[node].add(other)
        if not any(is_unsettled(n, s) for n, s in neighbours.items()):
            return dict(current), rounds
        smaller = defaultdict(set)
        for node, s in neighbours.items():
            for child, root in large_star(node, s):
                smaller[child].add(root)
        current = {e for node, s in smaller.items() for e in small_star(node, s)}
    raise AssertionError("did not converge")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=80))
def test_star_rounds_find_the_components(edges):
    roots, _ = run_rounds(edges)
    assert roots == union_find_roots(edges)


def test_rounds_grow_slowly_on_long_chains():
    chain = [(i, i + 1) for i in range(2000)]  # ascending ids: the slow case
    roots, rounds = run_rounds(chain)
    assert roots == {i: 0 for i in range(1, 2001)}
    assert rounds <= 14


def test_round_steps_read_grouped_values_once():
    """Beam promises only an iterable of grouped values: every step makes one pass."""
    large = _LargeStar("dataprep.test", 0)
    large.setup()
    assert list(large.process((5, iter([7, 2, 9])))) == [(7, 2), (9, 2)]
    assert small_star(9, iter([4, 2])) == [(4, 2), (9, 2)]
    settle = _Settle()
    assert list(settle.process((9, iter([2, None])))) and \
        list(settle.process((9, iter([2, 2])))) == [(9, 2)]
    assert list(settle.process((2, iter([None, None])))) == []


def test_unsettled():
    assert not is_unsettled(5, {7, 9})      # a root
    assert not is_unsettled(5, {1})         # a leaf
    assert is_unsettled(5, {1, 2})          # two parents
    assert is_unsettled(5, {1, 9})          # parent and child


def _graphs():
    rng = random.Random(3)
    labels = [f"n{i:03d}" for i in range(60)]
    rng.shuffle(labels)
    path = [(labels[i], labels[i + 1]) for i in range(29)]
    star = [("m", f"s{i}") for i in range(10)]
    ring = [(f"r{i}", f"r{(i + 1) % 8}") for i in range(8)]
    noise = [("x", "x"), ("n000", "n000"), ("s3", "m")]  # self-loops, a repeated edge
    return path + star + ring + noise


def test_connected_components_pipeline(make_pipeline):
    edges = _graphs()
    expected = sorted(union_find_roots(edges).items())
    with make_pipeline() as p:
        roots, gate = p | beam.Create(edges) | ConnectedComponents()
        assert_that(roots, equal_to(expected), label="Roots")
        assert_that(gate, equal_to([""]), label="Converged")


@pytest.mark.cross_runner
def test_connected_components_fails_when_not_converged(make_pipeline):
    chain = [(f"c{i:03d}", f"c{i + 1:03d}") for i in range(100)]
    with pytest.raises(Exception, match="did not converge in 2 rounds"):
        with make_pipeline() as p:
            p | beam.Create(chain) | ConnectedComponents(max_rounds=2)


def test_unconverged_gate_without_failing(make_pipeline):
    chain = [(f"c{i:03d}", f"c{i + 1:03d}") for i in range(100)]
    with make_pipeline() as p:
        _, gate = p | beam.Create(chain) | ConnectedComponents(
            max_rounds=2, fail_unconverged=False)
        assert_that(gate | beam.Map(lambda m: m.split(":")[0]),
                    equal_to(["connected components did not converge in 2 rounds"]))
