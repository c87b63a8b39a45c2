"""MinHash signatures and LSH banding: the pure, vectorised core of near-dedup.

Definition (the reference implementation in the tests follows it literally):

* **words**: the whitespace-separated tokens of ``normalise_for_hash(text)``
  (NFC, case-folded, whitespace collapsed).
* **shingles**: every run of ``shingle_size`` consecutive words; a text with
  fewer words (but at least one) has one shingle made of all of them; an empty
  text has none and is never a near-duplicate.
* **shingle hash** (stable, 64-bit): each word is hashed with xxh3-64 of its
  UTF-8 bytes; a shingle's hash is ``fmix64(sum_j word_hash[j] * WORD_WEIGHTS[j])``
  (mod 2**64, murmur3's finaliser).  This is computed for all shingles of a batch
  at once with numpy; Python only touches each *distinct* word once.
* **permutation** ``i``: ``(A[i] * (h >> 32) + B[i]) mod 2**32`` on the top 32 bits
  of the shingle hash; ``A`` odd, ``A`` and ``B`` drawn from a seeded generator.
  32-bit lanes halve numpy's memory traffic against 64-bit ones; the estimator's
  spread matches the binomial one (``tests/test_minhash.py``).
* **signature**: per permutation, the minimum over the document's shingles
  (``uint32``).  The share of equal positions in two signatures estimates the
  Jaccard similarity of the two shingle sets.
* **band key** ``k`` of ``b`` bands x ``r`` rows: the band index and a 64-bit
  mix of the band's ``r`` values.  Two documents sharing any band key are
  candidates.
"""
from dataclasses import dataclass

import unicodedata

import numpy as np
import xxhash

MASK64 = (1 << 64) - 1
# Distinct odd 64-bit multipliers per word position of a shingle (splitmix64 outputs).
WORD_WEIGHTS = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB,
                0xD6E8FEB86659FD93, 0xA0761D6478BD642F, 0xE7037ED1A0B428DB,
                0x8EBC6AF09C88C6E3, 0x589965CC75374CC3, 0x1D8E4E27C47D124F,
                0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5)
MAX_SHINGLE_SIZE = len(WORD_WEIGHTS)
# Shingles per numpy block: num_perm x BLOCK uint32 stays in cache (4 MiB at 128).
BLOCK = 8192
_WORD_CACHE_LIMIT = 1 << 20

# Verification makes false positives cheap (an edge is checked, then dropped),
# while a false negative is a duplicate left in the corpus: weight them 9:1.
FALSE_POSITIVE_WEIGHT = 0.1
FALSE_NEGATIVE_WEIGHT = 0.9


def fmix64(h: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser, in place on a uint64 array (returned)."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def word_hash(word: str) -> int:
    return xxhash.xxh3_64_intdigest(word.encode("utf-8", "surrogatepass"))


def words_of(text: str) -> list[str]:
    """``normalise_for_hash(text).split()`` without building the joined string."""
    return unicodedata.normalize("NFC", text).casefold().split()


# ---------------------------------------------------------------- LSH parameters

def _candidate_probability(s: np.ndarray, bands: int, rows: int) -> np.ndarray:
    return 1.0 - (1.0 - s ** rows) ** bands


def _area(f, lo: float, hi: float, points: int = 513) -> float:
    x = np.linspace(lo, hi, points)
    y = f(x)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def optimal_bands_rows(threshold: float, num_perm: int,
                       fp_weight: float = FALSE_POSITIVE_WEIGHT,
                       fn_weight: float = FALSE_NEGATIVE_WEIGHT) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising weighted FP + FN areas.

    As text-dedup's ``optimal_param``: FP is the area under the candidate
    probability curve below the threshold, FN the area above it of the miss
    probability.  Ties go to the first (fewest bands) pair, so it is deterministic.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    best, best_error = (1, 1), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = _area(lambda s: _candidate_probability(s, bands, rows), 0.0, threshold)
            fn = _area(lambda s: 1.0 - _candidate_probability(s, bands, rows), threshold, 1.0)
            error = fp * fp_weight + fn * fn_weight
            if error < best_error - 1e-12:
                best, best_error = (bands, rows), error
    return best


@dataclass(frozen=True)
class LshParams:
    threshold: float
    num_perm: int
    bands: int
    rows: int
    shingle_size: int = 5
    seed: int = 1

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"near-dedup threshold must be in (0, 1), got {self.threshold}")
        if not 1 <= self.shingle_size <= MAX_SHINGLE_SIZE:
            raise ValueError(f"shingle size must be in 1..{MAX_SHINGLE_SIZE}, "
                             f"got {self.shingle_size}")
        if self.bands < 1 or self.rows < 1:
            raise ValueError(f"bands and rows must be >= 1, got {self.bands}x{self.rows}")
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} is more than "
                             f"num_perm = {self.num_perm}")
        if self.bands > 0xFFFF:
            raise ValueError(f"at most 65535 bands, got {self.bands}")

    @classmethod
    def resolve(cls, threshold: float = 0.8, num_perm: int | None = None,
                bands: int | None = None, rows: int | None = None,
                shingle_size: int = 5, seed: int = 1) -> "LshParams":
        """Fill in what was not given: num_perm defaults to bands*rows when both
        are set, else 128; missing bands/rows come from ``optimal_bands_rows``."""
        if num_perm is None:
            num_perm = bands * rows if bands and rows else 128
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        if bands is None and rows is None:
            bands, rows = optimal_bands_rows(threshold, num_perm)
        elif bands is None:
            bands = max(1, num_perm // rows)
        elif rows is None:
            rows = max(1, num_perm // bands)
        return cls(threshold, num_perm, bands, rows, shingle_size, seed)

    def candidate_probability(self, similarity: float) -> float:
        return float(_candidate_probability(np.float64(similarity), self.bands, self.rows))


# ---------------------------------------------------------------- signatures

class MinHasher:
    """Computes MinHash signatures of batches of texts with numpy."""

    def __init__(self, num_perm: int, shingle_size: int = 5, seed: int = 1):
        if not 1 <= shingle_size <= MAX_SHINGLE_SIZE:
            raise ValueError(f"shingle size must be in 1..{MAX_SHINGLE_SIZE}")
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        rng = np.random.Generator(np.random.PCG64(seed))
        self.a = rng.integers(0, 1 << 32, num_perm, dtype=np.uint32, endpoint=False) | np.uint32(1)
        self.b = rng.integers(0, 1 << 32, num_perm, dtype=np.uint32, endpoint=False)
        self._weights = np.array(WORD_WEIGHTS[:shingle_size], dtype=np.uint64)
        self._words: dict[str, int] = {}

    def _word_hashes(self, words: list[str]) -> np.ndarray:
        cache = self._words
        if len(cache) > _WORD_CACHE_LIMIT:
            cache.clear()
        for word in set(words).difference(cache):
            cache[word] = word_hash(word)
        return np.fromiter(map(cache.__getitem__, words), dtype=np.uint64, count=len(words))

    def shingle_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (uint64 hashes of all shingles, concatenated; shingle count per text)."""
        k = self.shingle_size
        words, lengths = [], []
        for text in texts:
            w = words_of(text)
            words.extend(w)
            lengths.append(len(w))
        lengths = np.array(lengths, dtype=np.int64)
        w = self._word_hashes(words)
        offsets = np.cumsum(lengths) - lengths
        counts = np.where(lengths >= k, lengths - k + 1, np.minimum(lengths, 1))
        # acc[p] = sum_j w[p + j] * weight[j]; levels[j - 1] keeps the j-word sums
        # for texts shorter than k (their single shingle is all their words).
        short = (lengths > 0) & (lengths < k)
        acc = w * self._weights[0]
        levels = [acc.copy()] if short.any() else []
        for j in range(1, k):
            acc[:-j] += w[j:] * self._weights[j]
            if levels and j < k - 1:
                levels.append(acc.copy())
        total = int(counts.sum())
        first = np.cumsum(counts) - counts
        positions = np.repeat(offsets - first, counts) + np.arange(total, dtype=np.int64)
        hashes = acc[positions]
        for i in np.flatnonzero(short):
            hashes[first[i]] = levels[lengths[i] - 1][offsets[i]]
        return fmix64(hashes), counts

    def signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (uint32 signatures [len(texts), num_perm], shingle count per text).

        A text without shingles gets an all-0xFFFFFFFF row; callers skip it.
        """
        hashes, counts = self.shingle_hashes(texts)
        hashes = (hashes >> np.uint64(32)).astype(np.uint32)
        n = len(texts)
        mins = np.full((self.num_perm, n), np.iinfo(np.uint32).max, dtype=np.uint32)
        nonempty = np.flatnonzero(counts)
        starts = (np.cumsum(counts) - counts)[nonempty]
        block = np.empty((self.num_perm, min(BLOCK, max(1, len(hashes)))), dtype=np.uint32)
        b = self.b[:, None]
        for lo in range(0, len(hashes), BLOCK):
            hi = min(lo + BLOCK, len(hashes))
            # texts whose shingles overlap [lo, hi): starts[first] <= lo < ... < hi
            first = int(np.searchsorted(starts, lo, side="right")) - 1
            last = int(np.searchsorted(starts, hi, side="left"))
            view = block[:, :hi - lo]
            np.multiply.outer(self.a, hashes[lo:hi], out=view)
            view += b
            segments = np.maximum(starts[first:last], lo) - lo
            cols = nonempty[first:last]
            mins[:, cols] = np.minimum(mins[:, cols],
                                       np.minimum.reduceat(view, segments, axis=1))
        return np.ascontiguousarray(mins.T), counts


# ---------------------------------------------------------------- LSH and similarity

def band_keys(signature: bytes, bands: int, rows: int) -> list[bytes]:
    """One 10-byte LSH key per band: the band index (2 bytes) and xxh3-64 of its rows."""
    width = rows * 4
    return [band.to_bytes(2, "big") + xxhash.xxh3_64_digest(signature[band * width:(band + 1) * width])
            for band in range(bands)]


def estimated_jaccard(sig_a, sig_b) -> float:
    """Share of equal signature positions (bytes or uint32 arrays)."""
    a = np.frombuffer(sig_a, dtype=np.uint32) if isinstance(sig_a, bytes) else sig_a
    b = np.frombuffer(sig_b, dtype=np.uint32) if isinstance(sig_b, bytes) else sig_b
    return float(np.count_nonzero(a == b)) / len(a)


def shingle_set(text: str, shingle_size: int = 5) -> set[tuple[str, ...]]:
    """Exact shingle set (for measuring true Jaccard in tests and benchmarks)."""
    words = words_of(text)
    if not words:
        return set()
    if len(words) < shingle_size:
        return {tuple(words)}
    return {tuple(words[i:i + shingle_size]) for i in range(len(words) - shingle_size + 1)}


def true_jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)
