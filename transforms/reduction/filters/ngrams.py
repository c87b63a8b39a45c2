"""Word n-gram counts of Gopher repetition, computed with numpy over hashed n-grams.

Pure Python + numpy, no Beam import.  The two quantities Gopher repetition
needs (Rae et al. 2021, Table A1; datatrove 0.10 ``gopher_repetition_filter.py``):

* ``top_ngram_chars(words, n)``: characters of the most frequent n-gram
  (words joined by one space) times its count, ties to the n-gram seen first
  (``Counter.most_common(1)``);
* ``duplicate_ngram_chars(words, n)``: scanning left to right, characters of
  every n-gram already seen (its key: the words joined *without* separator,
  datatrove's ``find_all_duplicate``), skipping n words after a repeat.

``NgramIndex(words)`` answers both for every n from one pass: the words are
laid out once as ``S = "".join(words)`` and ``T = " ".join(words)``, a
polynomial hash over the code points (mod 2**64) gives every n-gram's key from
two prefix sums in O(1), the keys of all asked n are sorted together
(``np.sort`` along rows, the position packed into the low bits so equal keys
come out in order of first occurrence), and only the positions whose key was
seen before are walked in Python.

**Exact, not probable.**  A hash can only merge different n-grams, never
split equal ones; so every answer is checked against the strings it rests on
(the members of the winning top n-gram; every repeated position against the
first occurrence of its key), and a document where a check fails (a hash
collision) is answered by the plain string algorithms ``top_ngram_chars`` /
``duplicate_ngram_chars`` below.  ``tests/test_filters_speedup.py`` holds both
paths equal to the former implementation.
"""
from collections import Counter
from typing import Dict, Iterable, List, Tuple

import numpy as np

# Polynomial hash base (odd, so invertible mod 2**64) and its inverse.
_BASE = 0x9E3779B97F4A7C15
_BASE_INV = pow(_BASE, -1, 1 << 64)
_MIX = 0xBF58476D1CE4E5B9  # splitmix64's multiplier
_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)
# Documents with more words than this take the string algorithms (bounded temporary arrays).
MAX_INDEXED_WORDS = 200_000

_POWERS = np.ones(1, dtype=np.uint64)
_INV_POWERS = np.ones(1, dtype=np.uint64)


def _powers(length: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(B**k, B**-k)`` mod 2**64 for k < ``length`` (grown by doubling, kept)."""
    global _POWERS, _INV_POWERS
    if len(_POWERS) < length:
        size = max(length, 2 * len(_POWERS), 4096)
        with np.errstate(over="ignore"):
            _POWERS = np.cumprod(np.full(size, _BASE, dtype=np.uint64))
            _INV_POWERS = np.cumprod(np.full(size, _BASE_INV, dtype=np.uint64))
        _POWERS = np.concatenate(([np.uint64(1)], _POWERS[:-1]))
        _INV_POWERS = np.concatenate(([np.uint64(1)], _INV_POWERS[:-1]))
    return _POWERS, _INV_POWERS


def top_ngram_chars(words, n: int) -> int:
    """Characters of the most frequent n-gram (words joined by " ") times its count; 0 if none.

    The string algorithm (datatrove's): ties go to ``Counter.most_common(1)``'s
    choice, the n-gram inserted first.
    """
    if len(words) < n:
        return 0
    if n == 1:
        grams = words
    else:
        grams = [" ".join(t) for t in zip(*(words[i:] for i in range(n)))]
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count


def duplicate_ngram_chars(words, n: int) -> int:
    """Characters of repeated n-grams, scanning left to right and skipping n words after a repeat.

    The string algorithm (datatrove's ``find_all_duplicate``): the n-gram key is
    the words joined without separator.
    """
    n_words = len(words)
    seen = set()
    repeated = idx = 0
    while idx < n_words - n + 1:
        gram = "".join(words[idx:idx + n])
        if gram in seen:
            repeated += len(gram)
            idx += n
        else:
            seen.add(gram)
            idx += 1
    return repeated


class NgramIndex:
    """Gopher repetition's n-gram figures for one document's words (see the module docstring).

    ``compute(top_ns, dup_ns)`` returns ``({n: top_ngram_chars}, {n:
    duplicate_ngram_chars})`` for every n asked, equal to the string functions
    of this module.
    """

    def __init__(self, words: List[str]):
        self.words = words

    def compute(self, top_ns: Iterable[int], dup_ns: Iterable[int]
                ) -> Tuple[Dict[int, int], Dict[int, int]]:
        words = self.words
        top_ns, dup_ns = tuple(top_ns), tuple(dup_ns)
        n_words = len(words)
        rows = [(True, n) for n in top_ns if n <= n_words] + [(False, n) for n in dup_ns if n <= n_words]
        top = {n: 0 for n in top_ns}
        dup = {n: 0 for n in dup_ns}
        if not rows:
            return top, dup
        if n_words > MAX_INDEXED_WORDS:
            for is_top, n in rows:
                if is_top:
                    top[n] = top_ngram_chars(words, n)
                else:
                    dup[n] = duplicate_ngram_chars(words, n)
            return top, dup
        joined = "".join(words)
        spaced = " ".join(words)
        text = joined + spaced
        base = len(joined)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=n_words)
        off = np.zeros(n_words + 1, dtype=np.int64)
        np.cumsum(lengths, out=off[1:])
        powers, inv_powers = _powers(len(text) + 1)
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        prefix = np.zeros(len(text) + 1, dtype=np.uint64)
        with np.errstate(over="ignore"):
            np.cumsum((codes.astype(np.uint64) + np.uint64(1)) * inv_powers[:len(text)], out=prefix[1:])

        ns = np.array([n for _, n in rows], dtype=np.int64)
        is_top = np.array([t for t, _ in rows], dtype=bool)
        pos = np.arange(n_words, dtype=np.int64)
        end_word = np.minimum(pos[None, :] + ns[:, None], n_words)            # rows x words
        # n-gram i of a row is text[start:stop]: in S (duplicates) or T (top n-grams)
        start = np.where(is_top[:, None], base + off[:-1] + pos, off[:-1])
        stop = np.where(is_top[:, None], base + off[end_word] + end_word - 1, off[end_word])
        stop = np.maximum(stop, start + 1)                                      # masked rows below
        with np.errstate(over="ignore"):
            keys = powers[stop - 1] * (prefix[stop] - prefix[start])
            keys ^= keys >> np.uint64(29)        # mix the low bits (the last characters') upwards:
            keys *= np.uint64(_MIX)              # the position takes the low bits below
            keys ^= keys >> np.uint64(32)
        shift = np.uint64(max(1, n_words.bit_length()))
        keys = ((keys >> shift) << shift) | pos.astype(np.uint64)
        keys[pos[None, :] > (n_words - ns)[:, None]] = _MAX
        keys.sort(axis=1)
        hashes = keys >> shift
        where = (keys & ((np.uint64(1) << shift) - np.uint64(1))).astype(np.int64)
        new_group = np.ones(keys.shape, dtype=bool)
        new_group[:, 1:] = hashes[:, 1:] != hashes[:, :-1]

        for r, (row_is_top, n) in enumerate(rows):
            m = n_words - n + 1
            groups = new_group[r, :m]
            positions = where[r, :m]
            if row_is_top:
                top[n] = self._top(text, start[r], stop[r], groups, positions, m, n)
            elif not groups.all():
                dup[n] = self._duplicates(text, start[r], stop[r], groups, positions, m, n)
        return top, dup

    def _top(self, text, start, stop, groups, positions, m, n) -> int:
        firsts_at = np.flatnonzero(groups)
        counts = np.diff(firsts_at, append=m)
        best = counts.max()
        firsts = positions[firsts_at]
        winner = firsts[counts == best].min()
        k = int(np.flatnonzero(firsts == winner)[0])
        members = positions[firsts_at[k]:firsts_at[k] + best]
        gram = text[start[winner]:stop[winner]]
        if any(text[start[p]:stop[p]] != gram for p in members.tolist()):
            return top_ngram_chars(self.words, n)  # a hash collision: the string algorithm
        return len(gram) * int(best)

    def _duplicates(self, text, start, stop, groups, positions, m, n) -> int:
        group_of = np.empty(m, dtype=np.int64)
        group_of[positions] = np.cumsum(groups) - 1
        first_of_group = positions[groups]
        repeats = np.sort(positions[~groups])
        starts, stops = start.tolist(), stop.tolist()
        firsts = first_of_group[group_of[repeats]].tolist()
        repeats = repeats.tolist()
        for p, f in zip(repeats, firsts):
            if text[starts[p]:stops[p]] != text[starts[f]:stops[f]]:
                return duplicate_ngram_chars(self.words, n)  # a hash collision
        added = np.zeros(len(first_of_group), dtype=bool)
        repeated = idx = k = 0
        n_repeats = len(repeats)
        while True:
            while k < n_repeats and repeats[k] < idx:
                k += 1
            if k == n_repeats:
                return repeated
            p = repeats[k]
            if p > idx:  # positions idx..p-1 are first occurrences: seen from now on
                added[group_of[idx:p]] = True
            g = group_of[p]
            if added[g]:
                repeated += stops[p] - starts[p]
                idx = p + n
            else:
                added[g] = True
                idx = p + 1
