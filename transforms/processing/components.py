"""Connected components of a graph given as a PCollection of edges, on any runner.

The alternating large-star / small-star algorithm (Kiveris et al., "Connected
Components in MapReduce and Beyond", SoCC 2014): every step is a GroupByKey
by node, so no worker ever holds more than one node's neighbourhood, and both
steps keep the components unchanged while shrinking them towards stars centred
on their smallest node.  Beam has no loops, so the rounds are unrolled up to a
bound.  The graph is finished exactly when no node is *unsettled* (has two
different smaller neighbours, or both a smaller and a larger one): then every
component is a star around its smallest node.  That check runs after the last
round; unsettled nodes fail the run with a clear message instead of leaving a
component split.

Node ids are document id strings, ordered by ``transforms.core.ids.id_order_key``
(integers numerically, then strings); edges ``(a, b)``.
"""
from typing import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.core.ids import id_less, id_order_key, smallest_id

DEFAULT_MAX_ROUNDS = 16


def is_unsettled(node, neighbours: set) -> bool:
    node_key = id_order_key(node)
    smaller = sum(1 for n in neighbours if id_order_key(n) < node_key)
    return smaller > 1 or (smaller == 1 and len(neighbours) > 1)


def large_star(node, neighbours: Iterable) -> list[tuple]:
    """Connect every larger neighbour of ``node`` to the smallest of its neighbourhood."""
    neighbours = set(neighbours)
    smallest = smallest_id(neighbours | {node})
    node_key = id_order_key(node)
    return [(n, smallest) for n in sorted(neighbours, key=id_order_key)
            if id_order_key(n) > node_key]


def small_star(node, smaller: Iterable) -> list[tuple]:
    """Connect ``node`` and its smaller neighbours to the smallest of them."""
    group = set(smaller) | {node}
    smallest = smallest_id(group)
    return [(n, smallest) for n in sorted(group, key=id_order_key) if n != smallest]


def orient(edge) -> list[tuple]:
    """An undirected edge as ``(larger, smaller)``; self-loops vanish."""
    a, b = edge
    if a == b:
        return []
    return [(a, b)] if id_less(b, a) else [(b, a)]


def both_directions(edge):
    larger, smaller = edge
    yield larger, smaller
    yield smaller, larger


def roles(edge):
    """Key an oriented edge by both ends: the larger end learns its parent."""
    larger, smaller = edge
    yield larger, smaller
    yield smaller, None


class _LargeStar(beam.DoFn):
    def __init__(self, namespace: str, round_index: int):
        self.namespace = namespace
        self.round_index = round_index

    def setup(self):
        self.unsettled = Metrics.counter(self.namespace,
                                         f"cc_round_{self.round_index:02d}_unsettled_nodes")

    def process(self, grouped):
        node, neighbours = grouped
        neighbours = set(neighbours)
        if is_unsettled(node, neighbours):
            self.unsettled.inc()
        yield from large_star(node, neighbours)


class _Settle(beam.DoFn):
    """Node -> (node, root) for a leaf; nothing for a root; tagged output if unsettled."""

    UNSETTLED = "unsettled"

    def process(self, grouped):
        node, parents = grouped
        parents = set(parents)
        has_children = None in parents
        parents.discard(None)
        if not parents:
            return
        if len(parents) == 1 and not has_children:
            yield node, parents.pop()
        else:
            yield beam.pvalue.TaggedOutput(self.UNSETTLED, node)


def _convergence_message(unsettled: int, rounds: int) -> str:
    if not unsettled:
        return ""
    return (f"connected components did not converge in {rounds} rounds: {unsettled} node(s) "
            f"unsettled; raise the round bound (--near_dedup_max_rounds)")


class ConnectedComponents(beam.PTransform):
    """Undirected edges ``(a, b)`` -> ``(node, root)`` for every node in a component
    of two or more nodes, except the root itself (its smallest node).

    Returns ``(assignments, gate)``: ``gate`` holds one string, empty when the
    components converged within ``max_rounds``, else the error (pass it to
    ``WriteStore(preconditions=...)``).  With ``fail_unconverged`` (default) the
    pipeline also raises on it.
    """

    def __init__(self, max_rounds: int = DEFAULT_MAX_ROUNDS,
                 namespace: str = "dataprep.components", fail_unconverged: bool = True):
        super().__init__()
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
        self.max_rounds = max_rounds
        self.namespace = namespace
        self.fail_unconverged = fail_unconverged

    def expand(self, edges):
        current = edges | "Orient" >> beam.FlatMap(orient)
        for i in range(self.max_rounds):
            current = (
                current
                | f"Round{i:02d}Neighbours" >> beam.FlatMap(both_directions)
                | f"Round{i:02d}GroupNeighbours" >> beam.GroupByKey()
                | f"Round{i:02d}LargeStar" >> beam.ParDo(_LargeStar(self.namespace, i))
                | f"Round{i:02d}GroupSmaller" >> beam.GroupByKey()
                | f"Round{i:02d}SmallStar" >> beam.FlatMapTuple(small_star))
        settled = (
            current
            | "SettleRoles" >> beam.FlatMap(roles)
            | "SettleGroup" >> beam.GroupByKey()
            | "Settle" >> beam.ParDo(_Settle()).with_outputs(_Settle.UNSETTLED, main="settled"))
        rounds = self.max_rounds
        gate = (
            settled[_Settle.UNSETTLED]
            | "CountUnsettled" >> beam.combiners.Count.Globally()
            | "ConvergenceGate" >> beam.Map(_convergence_message, rounds))
        if self.fail_unconverged:
            gate | "FailIfUnconverged" >> beam.Map(_raise_if_set)
        return settled.settled, gate


def _raise_if_set(message: str) -> None:
    if message:
        raise RuntimeError(message)
