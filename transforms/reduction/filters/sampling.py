"""Deterministic sampling by seeded xxh3-64 of a document id.

Pure Python (``xxhash``), no Beam import; the bounded-memory combiner that
keeps the N smallest hashes per partition is ``transforms.reduction.filters.beam.
SmallestHashes``, its pure core is ``SmallestHeap`` here.

* ``sample_hash(id, seed)``: ``xxh3_64(canonical bytes of id, seed)``, an int
  in [0, 2**64).  Canonical bytes: the id's UTF-8 encoding (a ``bytes`` id is
  used as is).  The same on every runner, process and platform (never
  Python's ``hash()``).
* ``keep_sample(id, fraction, seed)``: ``sample_hash < fraction * 2**64``.
  A document's decision depends on its id alone, so adding documents to the
  corpus never changes the decision for the old ones, and the fraction kept
  tends to ``fraction``.  ``fraction`` 0 keeps nothing, 1 keeps everything.
"""
import heapq
from typing import List, Tuple, Union

import xxhash

from transforms.reduction.filters.config import FilterConfigError

HASH_SPACE = 1 << 64
DEFAULT_SEED = 0x5A3D_1E7C  # the sampling seed when none is given (a fixed constant, not random)


def canonical_bytes(doc_id: Union[str, bytes]) -> bytes:
    """The bytes hashed for an id: UTF-8 of a ``str``; a ``bytes`` id as is."""
    return doc_id if isinstance(doc_id, bytes) else doc_id.encode("utf-8")


def sample_hash(doc_id: Union[str, bytes], seed: int = DEFAULT_SEED) -> int:
    """Seeded xxh3-64 of the id's canonical bytes, in [0, 2**64)."""
    return xxhash.xxh3_64_intdigest(canonical_bytes(doc_id), seed=seed)


def sample_threshold(fraction: float) -> int:
    """``floor(fraction * 2**64)``, exact (no float rounding at 2**64).

    Raises ``FilterConfigError`` unless 0 <= fraction <= 1.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise FilterConfigError(f"sample fraction must be a number in [0, 1], got {fraction!r}")
    from fractions import Fraction
    return int(Fraction(fraction) * HASH_SPACE)


def keep_sample(doc_id: Union[str, bytes], fraction: float, seed: int = DEFAULT_SEED) -> bool:
    """True when the document with this id is in the ``fraction`` sample for ``seed``."""
    return sample_hash(doc_id, seed) < sample_threshold(fraction)


class Sampler:
    """``keep_sample`` with the threshold computed once: ``Sampler(0.1, seed)(id) -> bool``."""

    def __init__(self, fraction: float, seed: int = DEFAULT_SEED):
        self.fraction = fraction
        self.seed = seed
        self.threshold = sample_threshold(fraction)

    def __call__(self, doc_id) -> bool:
        return xxhash.xxh3_64_intdigest(canonical_bytes(doc_id), seed=self.seed) < self.threshold


class SmallestHeap:
    """The ``n`` smallest ``(hash, id)`` pairs seen, in at most ``n`` entries (a max-heap).

    Ties on the hash are broken by the id (a total order), so the result does
    not depend on arrival order or on how the input was split and merged.
    """

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise FilterConfigError(f"sample_per_partition must be an integer >= 0, got {n!r}")
        self.n = n
        self._heap: List[Tuple[int, str]] = []  # entries (-hash, negated id order) via wrapper

    def push(self, h: int, doc_id: str) -> None:
        if self.n == 0:
            return
        item = _Desc(h, doc_id)
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:  # smaller (h, id) than the current largest
            heapq.heapreplace(self._heap, item)

    def merge(self, other: "SmallestHeap") -> None:
        for item in other._heap:
            self.push(item.h, item.doc_id)

    def items(self) -> List[Tuple[int, str]]:
        """The kept ``(hash, id)`` pairs, ascending."""
        return sorted((item.h, item.doc_id) for item in self._heap)


class _Desc:
    """Heap entry ordered by *descending* ``(hash, id)``, so heapq's min is the largest pair."""
    __slots__ = ("h", "doc_id")

    def __init__(self, h, doc_id):
        self.h = h
        self.doc_id = doc_id

    def __lt__(self, other):
        return (self.h, self.doc_id) > (other.h, other.doc_id)

    def __gt__(self, other):
        return (self.h, self.doc_id) < (other.h, other.doc_id)
