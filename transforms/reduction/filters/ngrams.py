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

**Compiled.**  When the extension is built (``native.FAST``), ``compute`` runs
``_fastfilters.ngram_figures`` instead: the same figures, every n-gram hashed (a
polynomial hash mod 2**64 from word-level prefix hashes) in an open-addressing table
and every hash match confirmed on the code points; a word position whose first 16
characters begin no other word is passed over by the duplicate scan, and a top
n-gram figure whose upper bound keeps the document is not computed (``None``).
``tests/test_filters_native.py`` holds it equal to the string algorithms.
"""
from collections import Counter
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from transforms.reduction.filters.native import FAST

# Polynomial hash base (odd, so invertible mod 2**64) and its inverse.
_BASE = 0x9E3779B97F4A7C15
_BASE_INV = pow(_BASE, -1, 1 << 64)
_MIX = 0xBF58476D1CE4E5B9  # splitmix64's multiplier
_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)
# Documents with more words, or more characters in S + T, than these take the string
# algorithms: the temporary arrays and the powers kept between documents stay bounded
# (the powers: 16 bytes a character, at most 16 MiB).
MAX_INDEXED_WORDS = 200_000
MAX_INDEXED_CHARS = 1 << 20

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

    def compute(self, top_ns: Iterable[int], dup_ns: Iterable[int],
                top_fires: Optional[Callable[[int, int], bool]] = None
                ) -> Tuple[Dict[int, Optional[int]], Dict[int, int]]:
        """``({n: top_ngram_chars(words, n)}, {n: duplicate_ngram_chars(words, n)})``.

        ``top_fires(n, chars)``: the caller's rule (does ``chars`` for this n
        drop the document?); when an upper bound of the figure (the largest
        count times the longest n-gram) does not fire, the figure may be left
        uncomputed and is then ``None``.  Compiled (``native.FAST.ngram_figures``:
        every figure exact, hashed n-grams confirmed on their code points) when the
        extension is built, else ``compute_numpy``.  Raises ``ValueError`` for n < 1.
        """
        if FAST is not None:
            words = self.words if type(self.words) is list else list(self.words)
            return FAST.ngram_figures(words, tuple(top_ns), tuple(dup_ns), top_fires)
        return self.compute_numpy(top_ns, dup_ns, top_fires)

    def compute_numpy(self, top_ns: Iterable[int], dup_ns: Iterable[int],
                      top_fires: Optional[Callable[[int, int], bool]] = None
                      ) -> Tuple[Dict[int, Optional[int]], Dict[int, int]]:
        """``compute`` with numpy (the path without the compiled extension)."""
        words = self.words
        top_ns, dup_ns = tuple(top_ns), tuple(dup_ns)
        n_words = len(words)
        rows = [(True, n) for n in top_ns if n <= n_words] + [(False, n) for n in dup_ns if n <= n_words]
        top = {n: 0 for n in top_ns}
        dup = {n: 0 for n in dup_ns}
        if not rows:
            return top, dup
        spaced = " ".join(words)
        if n_words > MAX_INDEXED_WORDS or 2 * len(spaced) > MAX_INDEXED_CHARS:
            for is_top, n in rows:
                if is_top:
                    top[n] = top_ngram_chars(words, n)
                else:
                    dup[n] = duplicate_ngram_chars(words, n)
            return top, dup
        codes_t = np.frombuffer(spaced.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        is_space = codes_t == 32  # words hold no whitespace: T's spaces are its word boundaries
        t_start = np.zeros(n_words, dtype=np.int64)
        t_start[1:] = np.flatnonzero(is_space) + 1
        t_stop = np.empty(n_words, dtype=np.int64)
        t_stop[:-1] = t_start[1:] - 1
        t_stop[-1] = len(spaced)
        off = np.empty(n_words + 1, dtype=np.int64)   # word starts in S = "".join(words)
        off[:-1] = t_start - np.arange(n_words)
        base = off[-1] = len(spaced) - (n_words - 1)
        t_start += base                               # T follows S in `text`
        t_stop += base
        codes = np.concatenate((codes_t[~is_space], codes_t))
        length = len(codes)
        powers, inv_powers = _powers(length + 1)
        prefix = np.zeros(length + 1, dtype=np.uint64)
        with np.errstate(over="ignore"):
            np.cumsum((codes.astype(np.uint64) + np.uint64(1)) * inv_powers[:length], out=prefix[1:])
        # text[a:b] hashes to powers[b - 1] * (prefix[b] - prefix[a]); the n-gram at word i is
        # S[off[i]:off[i + n]] (duplicates) or T[t_start[i]:t_stop[i + n - 1]] (top n-grams).
        shift = np.uint64(max(1, n_words.bit_length()))
        keys = np.full((len(rows), n_words), _MAX, dtype=np.uint64)
        column = np.arange(n_words, dtype=np.int64)
        valid = column <= (n_words - np.array([n for _, n in rows], dtype=np.int64))[:, None]
        with np.errstate(over="ignore"):
            p_start, p_stop, w_stop = prefix[t_start], prefix[t_stop], powers[t_stop - 1]
            p_off, w_off = prefix[off], powers[off - 1]
            for r, (is_top, n) in enumerate(rows):
                m = n_words - n + 1
                if is_top:
                    keys[r, :m] = w_stop[n - 1:] * (p_stop[n - 1:] - p_start[:m])
                else:
                    keys[r, :m] = w_off[n:] * (p_off[n:] - p_off[:m])
            keys *= np.uint64(_MIX)  # the high bits depend on every bit (the last characters' too)
            keys >>= shift
            keys <<= shift
            keys |= column.astype(np.uint64)  # < n_words: a real key is never _MAX
            keys[~valid] = _MAX
        keys.sort(axis=1)
        hashes = keys >> shift
        where = (keys & ((np.uint64(1) << shift) - np.uint64(1))).astype(np.int64)
        new_group = np.ones(keys.shape, dtype=bool)
        np.not_equal(hashes[:, 1:], hashes[:, :-1], out=new_group[:, 1:])
        repeats = ~new_group
        repeats &= keys != _MAX
        has_repeat = repeats.any(axis=1).tolist()
        fixed = _Fixed(self.words)
        for r, (is_top, n) in enumerate(rows):
            m = n_words - n + 1
            if is_top:
                if not has_repeat[r]:  # every n-gram once: the first one, once
                    top[n] = int(t_stop[n - 1] - t_start[0])
                    continue
                starts = np.flatnonzero(new_group[r, :m])
                best = m - int(starts[-1])  # the longest run of equal keys
                if len(starts) > 1:
                    best = max(best, int((starts[1:] - starts[:-1]).max()))
                if top_fires is not None:
                    longest = int((t_stop[n - 1:] - t_start[:m]).max())
                    if not top_fires(n, best * longest):
                        top[n] = None  # its upper bound keeps the document: not computed
                        continue
                counts = np.diff(starts, append=m)
                top[n] = fixed.top(n, starts, counts, best, where[r, :m])
            elif has_repeat[r]:
                dup[n] = fixed.duplicates(n, new_group[r, :m], where[r, :m])
        return top, dup


class _Fixed:
    """The exact answers from one document's sorted n-gram keys, checked against the strings
    (the words joined, only at the positions the keys say are repeated)."""

    def __init__(self, words):
        self.words = words

    def top(self, n, starts, counts, best, positions) -> int:
        """The most frequent n-gram's characters times its count, checked against its strings."""
        firsts = positions[starts]
        winner = int(firsts[counts == best].min())
        k = int(np.flatnonzero(firsts == winner)[0])
        members = positions[starts[k]:starts[k] + best].tolist()
        words = self.words
        gram = " ".join(words[winner:winner + n])
        if any(" ".join(words[p:p + n]) != gram for p in members):
            return top_ngram_chars(self.words, n)  # a hash collision: the string algorithm
        return len(gram) * best

    def duplicates(self, n, groups, positions) -> int:
        """``duplicate_ngram_chars`` from the sorted keys: only repeated keys are walked."""
        m = len(groups)
        group_of = np.empty(m, dtype=np.int64)
        group_of[positions] = np.cumsum(groups) - 1
        first_of_group = positions[groups]
        repeats = np.sort(positions[~groups])
        firsts = first_of_group[group_of[repeats]].tolist()
        repeats = repeats.tolist()
        words = self.words
        chars = {}
        for p, f in zip(repeats, firsts):
            gram = "".join(words[p:p + n])
            if gram != "".join(words[f:f + n]):
                return duplicate_ngram_chars(self.words, n)  # a hash collision
            chars[p] = len(gram)
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
                repeated += chars[p]
                idx = p + n
            else:
                added[g] = True
                idx = p + 1

