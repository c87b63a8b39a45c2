"""MinHash signatures and LSH banding: the pure, vectorised core of near-dedup.

Definition (the reference implementation in the tests follows it literally):

* **normalised text**: ``normalise_for_hash(text)`` (NFC, case-folded, runs of
  whitespace collapsed to one space, ends stripped), the form exact dedup hashes.
* **shingle unit**, per document: ``word`` or ``char``.  ``shingle_unit="word"``
  or ``"char"`` applies to every document; ``"auto"`` (the default) picks
  ``char`` for a document when *at least a fifth* of the letters of its NFC,
  case-folded text belong to a script written without spaces between words,
  else ``word`` (a document without letters is ``word``).  A *letter* is a
  character of Unicode general category L or M; it belongs to a script without
  spaces when its Unicode ``Script_Extensions`` include one of
  ``NO_SPACE_SCRIPTS`` (Han, Hiragana, Katakana, Bopomofo, Thai, Lao, Khmer,
  Myanmar, Tibetan, Tai Le, New Tai Lue, Tai Tham, Tai Viet, Balinese,
  Javanese, Yi), as the ``regex`` module's ``\\p{scx=...}`` reports it (its
  Unicode version; the module is pinned to a range in setup.py).  Korean
  (Hangul) is written with spaces and stays ``word``.  Text that is pure ASCII
  is ``word`` without looking further.  Why a fifth: a Han character carries
  about what an English word of five letters does, so a fifth of the letters
  is about half of the words; character shingles still work on the spaced
  rest, while word shingles see an unspaced run as one giant word.  A limit:
  two near-duplicates that fall on either side of the rule get different units
  and are never matched (only a document mixing scripts at about that share).
* **tokens**: for ``word`` documents the whitespace-separated words of the
  normalised text; for ``char`` documents its characters (code points; the
  single spaces left by the normalisation are characters too).
* **shingles**: every run of ``shingle_size`` consecutive tokens (words for
  ``word``, characters for ``char``; the default is 5 for both); a text with
  fewer tokens (but at least one) has one shingle made of all of them; an empty
  text has none and is never a near-duplicate.
* **token hash** (stable, 64-bit): a word is hashed with xxh3-64 of its UTF-8
  bytes; a character ``c`` with ``fmix64(ord(c) + CHAR_OFFSET)`` (mod 2**64), so
  character and word shingles live in separate hash families.  Python touches
  each *distinct* word once per batch; characters are hashed by numpy.
* **shingle hash**: ``fmix64(sum_j token_hash[j] * WORD_WEIGHTS[j])`` (mod
  2**64, murmur3's finaliser), computed for all shingles of a batch at once.
* **permutation** ``i``: ``(A[i] * (h >> 32) + B[i]) mod 2**32`` on the top 32 bits
  of the shingle hash; ``A`` odd, ``A`` and ``B`` drawn from a seeded generator.
  32-bit lanes halve numpy's memory traffic against 64-bit ones; the estimator's
  spread matches the binomial one (``tests/test_minhash.py``).
* **signature**: per permutation, the minimum over the document's shingles
  (``uint32``).  The share of equal positions in two signatures estimates the
  Jaccard similarity of the two shingle sets.  A ``word`` and a ``char``
  document have disjoint shingle sets (true Jaccard 0).
* **band key** ``k`` of ``b`` bands x ``r`` rows: the band index and a 64-bit
  mix of the band's ``r`` values.  Two documents sharing any band key are
  candidates.
* **verification sketch**: the document's distinct 32-bit shingle hashes (the
  top 32 bits of the shingle hash, the value the permutations act on), sorted,
  at most ``SKETCH_SIZE`` (1024) of them -- the smallest, a bottom-k sketch --
  after a little-endian ``uint32`` count of all its distinct hashes
  (``sketch_jaccard``).  Verification compares sketches, not signatures: for
  two documents of at most ``SKETCH_SIZE`` distinct shingles each it computes
  the *exact* Jaccard of their shingle-hash sets (equal to the shingle sets'
  unless two distinct shingles of their union, n of them, share a 32-bit hash:
  a chance of about ``n**2 / 2**33``, 0.8% at n = 8192, and then J moves by
  about 1/n); for larger documents the bottom-k estimate from the ``SKETCH_SIZE``
  smallest hashes of the union (standard deviation ``sqrt(J(1-J)/1024)``, 0.0125
  at J = 0.8, against 0.035 from 128 MinHash positions).  Bytes: ``4 + 4 x
  min(distinct shingles, 1024)`` per document, at most 4 KiB.

LSH settings are checked against the threshold ``t`` (``check_s_curve``): a
pair at similarity ``t`` becomes a candidate with probability
``p(t) = 1 - (1 - t**r)**b``.  Settings with ``p(t) < MIN_P_AT_THRESHOLD``
(0.5) cannot find what the threshold asks for; settings with
``p(t - 0.2) > MAX_P_BELOW`` (0.5) make most pairs well below the threshold
candidates (only verification then keeps them).  The jobs refuse the first,
and the second without verification, unless forced (``pipelines/near_dedup_options.py``).
"""
import functools
from fractions import Fraction
from dataclasses import dataclass
from typing import NamedTuple

import unicodedata

import numpy as np
import regex
import xxhash

MASK64 = (1 << 64) - 1
# Distinct odd 64-bit multipliers per token position of a shingle (splitmix64 outputs).
WORD_WEIGHTS = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB,
                0xD6E8FEB86659FD93, 0xA0761D6478BD642F, 0xE7037ED1A0B428DB,
                0x8EBC6AF09C88C6E3, 0x589965CC75374CC3, 0x1D8E4E27C47D124F,
                0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5)
MAX_SHINGLE_SIZE = len(WORD_WEIGHTS)
# Added to a code point before fmix64: character hashes are a family apart from
# xxh3 word hashes, and NUL (fmix64's fixed point 0) hashes like any other character.
CHAR_OFFSET = 0x2545F4914F6CDD1D
# Shingles per numpy block: num_perm x BLOCK uint32 stays in cache (4 MiB at 128).
BLOCK = 8192
# Distinct shingle hashes a verification sketch keeps (the smallest): up to this
# many, verification computes the exact Jaccard; above, the bottom-k estimate.
# 1024 covers a text of ~1,000 characters (char) or ~1,000 words (word) whole: 74%
# of the English benchmark corpus's documents.  4096 (every document of it whole)
# took 1.5x the spill bytes and twice the disk budget of the 100k job (BENCHMARKS.md,
# 'Cost of the sketches'); recall and precision at 0.8 on the CJK corpora moved by
# at most 0.005 (0.979-0.983 and 0.994-1.000).
SKETCH_SIZE = 1024
_WORD_CACHE_LIMIT = 1 << 20
# Characters per sub-batch of ``MinHasher.sign``: its numpy arrays take about
# 40 bytes per character of a character-shingled text (8 per word otherwise),
# so a batch of a few huge documents is signed in pieces (one text is never cut).
MAX_CHARS_PER_PASS = 1 << 21

SHINGLE_UNITS = ("word", "char", "auto")
DEFAULT_SHINGLE_SIZE = {"word": 5, "char": 5}
# Scripts written without spaces between words (Unicode script names as the
# regex module spells them).  Korean (Hangul) uses spaces and is not here.
NO_SPACE_SCRIPTS = ("Han", "Hiragana", "Katakana", "Bopomofo", "Thai", "Lao", "Khmer",
                    "Myanmar", "Tibetan", "Tai_Le", "New_Tai_Lue", "Tai_Tham", "Tai_Viet",
                    "Balinese", "Javanese", "Yi")
# "auto": a document is shingled by characters when at least this share of its
# letters are in NO_SPACE_SCRIPTS.  A fifth: a Han character carries about what
# an English word of five letters does, so a fifth of the letters is about half
# of the words (and character shingles still work on the spaced rest).
CHAR_SHARE_THRESHOLD = Fraction(1, 5)
LETTER_PATTERN = r"[\p{L}\p{M}]"
NO_SPACE_PATTERN = "[" + "".join(r"\p{scx=%s}" % s for s in NO_SPACE_SCRIPTS) + "]"

# Verification makes false positives cheap (an edge is checked, then dropped),
# while a false negative is a duplicate left in the corpus: weight them 9:1.
FALSE_POSITIVE_WEIGHT = 0.1
FALSE_NEGATIVE_WEIGHT = 0.9
# The S-curve rule (see the module docstring and check_s_curve).
MIN_P_AT_THRESHOLD = 0.5
MAX_P_BELOW = 0.5
BELOW_MARGIN = 0.2


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


def char_hashes(code_points: np.ndarray) -> np.ndarray:
    """uint32 code points -> uint64 ``fmix64(code point + CHAR_OFFSET)``."""
    return fmix64(code_points.astype(np.uint64) + np.uint64(CHAR_OFFSET))


def folded(text: str) -> str:
    """NFC, then case-folded: ``normalise_for_hash`` before whitespace is collapsed."""
    return unicodedata.normalize("NFC", text).casefold()


def words_of(text: str) -> list[str]:
    """``normalise_for_hash(text).split()`` without building the joined string."""
    return folded(text).split()


def chars_of(text: str) -> str:
    """``normalise_for_hash(text)``: the characters a ``char`` document is shingled by."""
    return " ".join(folded(text).split())


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


# ---------------------------------------------------------------- script detection

@functools.cache
def script_classes() -> np.ndarray:
    """uint8 per code point (0..0x10FFFF): 0 not a letter, 1 a letter, 2 a letter
    of a script written without spaces.  Built once per process (~0.3 s)."""
    table = np.zeros(0x110000, dtype=np.uint8)
    every = np.arange(0x110000, dtype=np.uint32)
    every = every[(every < 0xD800) | (every > 0xDFFF)]  # surrogates are no letters
    text = every.tobytes().decode("utf-32-le")
    for pattern, value in ((LETTER_PATTERN, 1), (NO_SPACE_PATTERN, 2)):
        runs = regex.compile(pattern + "+")
        for match in runs.finditer(text):
            points = every[match.start():match.end()]
            if value == 2:  # a letter of a no-space script (a letter first)
                points = points[table[points] > 0]
            table[points] = value
    return table


def char_unit_mask(folded_texts: list[str]) -> np.ndarray:
    """bool per text (already NFC + case-folded): shingled by characters under
    ``auto``: letters of no-space scripts >= CHAR_SHARE_THRESHOLD x letters > 0."""
    mask = np.zeros(len(folded_texts), dtype=bool)
    todo = [i for i, t in enumerate(folded_texts) if not t.isascii()]
    if not todo:
        return mask
    texts = [folded_texts[i] for i in todo]
    classes = script_classes()[_code_points("".join(texts))]
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    starts = (np.cumsum(lengths) - lengths)[lengths > 0]  # increasing, all < len(classes)
    n_letters = np.zeros(len(texts), dtype=np.int64)
    n_no_space = np.zeros(len(texts), dtype=np.int64)
    if starts.size:
        n_letters[lengths > 0] = np.add.reduceat(classes >= 1, starts, dtype=np.int64)
        n_no_space[lengths > 0] = np.add.reduceat(classes == 2, starts, dtype=np.int64)
    share = CHAR_SHARE_THRESHOLD
    mask[todo] = (n_letters > 0) & (n_no_space * share.denominator >= n_letters * share.numerator)
    return mask


def shingle_units(texts: list[str], shingle_unit: str = "auto") -> np.ndarray:
    """bool per text: True where it is shingled by characters."""
    if shingle_unit == "word":
        return np.zeros(len(texts), dtype=bool)
    if shingle_unit == "char":
        return np.ones(len(texts), dtype=bool)
    if shingle_unit != "auto":
        raise ValueError(f"shingle unit must be one of {', '.join(SHINGLE_UNITS)}, "
                         f"got {shingle_unit!r}")
    return char_unit_mask([folded(t) for t in texts])


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


class SCurveCheck(NamedTuple):
    """Where the LSH S-curve of ``bands`` x ``rows`` lies against the threshold.

    ``at_threshold``: probability that a pair at similarity ``threshold`` becomes
    a candidate; ``below``: the same at ``threshold - BELOW_MARGIN`` (0.2);
    ``misses_threshold``: ``at_threshold < MIN_P_AT_THRESHOLD`` (0.5), most pairs
    at the threshold are never compared; ``flags_far_below``: ``below >
    MAX_P_BELOW`` (0.5), most pairs far below the threshold are candidates.
    """
    at_threshold: float
    below: float
    misses_threshold: bool
    flags_far_below: bool


@dataclass(frozen=True)
class LshParams:
    """Near-dedup's MinHash + LSH settings, one frozen value for every stage.

    ``threshold`` (Jaccard, in (0, 1)); ``num_perm`` permutations; ``bands`` x
    ``rows`` <= ``num_perm``; ``shingle_size`` tokens per shingle (1..12);
    ``shingle_unit`` ``word``, ``char`` or ``auto`` (see the module docstring);
    ``seed`` of the permutations.  Raises ValueError naming the parameter.
    """
    threshold: float
    num_perm: int
    bands: int
    rows: int
    shingle_size: int = 5
    seed: int = 1
    shingle_unit: str = "auto"

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"near-dedup threshold must be in (0, 1), got {self.threshold}")
        if not 1 <= self.shingle_size <= MAX_SHINGLE_SIZE:
            raise ValueError(f"shingle size must be in 1..{MAX_SHINGLE_SIZE}, "
                             f"got {self.shingle_size}")
        if self.shingle_unit not in SHINGLE_UNITS:
            raise ValueError(f"shingle unit must be one of {', '.join(SHINGLE_UNITS)}, "
                             f"got {self.shingle_unit!r}")
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
                shingle_size: int | None = None, seed: int = 1,
                shingle_unit: str = "auto") -> "LshParams":
        """Fill in what was not given: num_perm defaults to bands*rows when both
        are set, else 128; missing bands/rows come from ``optimal_bands_rows``;
        shingle_size defaults to 5 (words or characters alike)."""
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
        if shingle_size is None:
            shingle_size = DEFAULT_SHINGLE_SIZE.get(shingle_unit, 5)
        return cls(threshold, num_perm, bands, rows, shingle_size, seed, shingle_unit)

    def candidate_probability(self, similarity: float) -> float:
        return float(_candidate_probability(np.float64(similarity), self.bands, self.rows))

    def check_s_curve(self) -> SCurveCheck:
        at = self.candidate_probability(self.threshold)
        below = self.candidate_probability(max(self.threshold - BELOW_MARGIN, 0.0))
        return SCurveCheck(at, below, at < MIN_P_AT_THRESHOLD, below > MAX_P_BELOW)

    def describe(self) -> dict:
        """The effective settings, for run reports (JSON-ready)."""
        check = self.check_s_curve()
        return {"threshold": self.threshold, "num_perm": self.num_perm, "bands": self.bands,
                "rows": self.rows, "shingle_unit": self.shingle_unit,
                "shingle_size": self.shingle_size, "seed": self.seed,
                "candidate_probability_at_threshold": round(check.at_threshold, 6),
                f"candidate_probability_at_threshold_minus_{BELOW_MARGIN}":
                    round(check.below, 6)}


# ---------------------------------------------------------------- signatures

class Signed(NamedTuple):
    """``MinHasher.sign`` of n texts: ``signatures`` uint32 [n, num_perm] (all
    0xFFFFFFFF for a text without shingles), ``counts`` int64 [n] shingles per
    text, ``by_char`` bool [n], True where the text was shingled by characters,
    ``sketches`` one verification sketch (bytes, see the module docstring) per
    text (``b""`` for a text without shingles)."""
    signatures: np.ndarray
    counts: np.ndarray
    by_char: np.ndarray
    sketches: list


def sketches_of(hashes: np.ndarray, counts: np.ndarray, size: int = SKETCH_SIZE) -> list:
    """uint32 shingle hashes of n texts (concatenated; ``counts`` per text) -> n
    verification sketches: ``uint32 distinct count + the smallest min(distinct,
    size) distinct hashes, sorted`` (little-endian bytes; ``b""`` for no shingles).
    One sort of the batch's (text, hash) pairs."""
    n = len(counts)
    owner = np.repeat(np.arange(n, dtype=np.uint64), counts)
    keys = (owner << np.uint64(32)) | hashes.astype(np.uint64)
    keys.sort()  # a sort and a mask: numpy 2's np.unique hashes first, ~10x slower here
    if len(keys):
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    distinct = np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=n)
    values = (keys & np.uint64(0xFFFFFFFF)).astype("<u4")
    starts = np.cumsum(distinct) - distinct
    out = []
    for start, total in zip(starts.tolist(), distinct.tolist()):
        if not total:
            out.append(b"")
            continue
        out.append(total.to_bytes(4, "little")
                   + values[start:start + min(total, size)].tobytes())
    return out


def encode_sketch(sketch: bytes) -> bytes:
    """A verification sketch -> its spill form: the uint32 count, then the gaps
    between its sorted hashes (the first from 0) as four byte planes, lowest byte
    first.  The same length; zstd then packs the mostly-zero high planes (a
    bucket's sketches compress to ~0.77 of their bytes at level 1, the sorted
    hashes as they are to ~1.0).  ``decode_sketch`` inverts it."""
    if not sketch:
        return b""
    values = np.frombuffer(sketch, dtype="<u4", offset=4)
    gaps = np.diff(values, prepend=np.uint32(0)).astype("<u4")
    return sketch[:4] + gaps.view(np.uint8).reshape(-1, 4).T.tobytes()


def decode_sketch(encoded: bytes) -> bytes:
    """``encode_sketch``'s spill form -> the verification sketch."""
    if not encoded:
        return b""
    planes = np.frombuffer(encoded, dtype=np.uint8, offset=4).reshape(4, -1)
    gaps = np.ascontiguousarray(planes.T).view("<u4").ravel()
    return encoded[:4] + np.cumsum(gaps, dtype=np.uint32).astype("<u4").tobytes()


def sketch_jaccard(a: bytes, b: bytes) -> float:
    """Jaccard similarity of two documents from their verification sketches.

    Both whole (no more than ``SKETCH_SIZE`` distinct hashes each): exact,
    ``|A & B| / |A | B|`` of the shingle-hash sets.  Otherwise the bottom-k
    estimate: of the k smallest hashes of the union of the two sketches (k =
    the larger sketch's length), the share in both (exact membership: a hash
    among the k smallest of the union is among the k smallest of each set that
    holds it).  0.0 when either sketch is empty.
    """
    if not a or not b:
        return 0.0
    n_a, n_b = int.from_bytes(a[:4], "little"), int.from_bytes(b[:4], "little")
    x = np.frombuffer(a, dtype="<u4", offset=4)
    y = np.frombuffer(b, dtype="<u4", offset=4)
    if len(x) > len(y):
        x, y = y, x
    at = np.searchsorted(y, x)  # both sorted and distinct: x's hashes found in y
    at[at == len(y)] = 0
    common = x[y[at] == x]
    if len(x) + len(y) == n_a + n_b:  # both whole
        return len(common) / (n_a + n_b - len(common))
    k = max(len(x), len(y))
    union = np.union1d(x, y)[:k]
    return int(np.count_nonzero(np.isin(union, common, assume_unique=True))) / len(union)


class MinHasher:
    """Computes MinHash signatures of batches of texts with numpy.

    ``MinHasher(num_perm, shingle_size=5, seed=1, shingle_unit="auto")``; a batch
    may mix ``word`` and ``char`` documents.  A text's signature does not depend
    on the other texts of its batch.
    """

    def __init__(self, num_perm: int, shingle_size: int = 5, seed: int = 1,
                 shingle_unit: str = "auto"):
        if not 1 <= shingle_size <= MAX_SHINGLE_SIZE:
            raise ValueError(f"shingle size must be in 1..{MAX_SHINGLE_SIZE}")
        if shingle_unit not in SHINGLE_UNITS:
            raise ValueError(f"shingle unit must be one of {', '.join(SHINGLE_UNITS)}, "
                             f"got {shingle_unit!r}")
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.shingle_unit = shingle_unit
        rng = np.random.Generator(np.random.PCG64(seed))
        self.a = rng.integers(0, 1 << 32, num_perm, dtype=np.uint32, endpoint=False) | np.uint32(1)
        self.b = rng.integers(0, 1 << 32, num_perm, dtype=np.uint32, endpoint=False)
        self._weights = np.array(WORD_WEIGHTS[:shingle_size], dtype=np.uint64)
        self._words: dict[str, int] = {}

    @classmethod
    def from_params(cls, params: LshParams) -> "MinHasher":
        return cls(params.num_perm, params.shingle_size, params.seed, params.shingle_unit)

    def _word_hashes(self, words: list[str]) -> np.ndarray:
        cache = self._words
        if len(cache) > _WORD_CACHE_LIMIT:
            cache.clear()
        for word in set(words).difference(cache):
            cache[word] = word_hash(word)
        return np.fromiter(map(cache.__getitem__, words), dtype=np.uint64, count=len(words))

    def _ngrams(self, w: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token hashes of texts (concatenated; tokens per text) -> (weighted sums
        of every shingle, before fmix64; shingle count per text)."""
        k = self.shingle_size
        offsets = np.cumsum(lengths) - lengths
        counts = np.where(lengths >= k, lengths - k + 1, np.minimum(lengths, 1))
        # acc[p] = sum_j w[p + j] * weight[j]; levels[j - 1] keeps the j-token sums
        # for texts shorter than k (their single shingle is all their tokens).
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
        return hashes, counts

    def _word_ngrams(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        words, lengths = [], []
        for text in texts:
            w = text.split()
            words.extend(w)
            lengths.append(len(w))
        return self._ngrams(self._word_hashes(words),
                            np.array(lengths, dtype=np.int64).reshape(-1))

    def _char_ngrams(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        collapsed = [" ".join(t.split()) for t in texts]
        lengths = np.fromiter(map(len, collapsed), dtype=np.int64, count=len(collapsed))
        return self._ngrams(char_hashes(_code_points("".join(collapsed))), lengths)

    def shingle_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (uint64 hashes of all shingles, concatenated in text order; shingle
        count per text)."""
        hashes, counts, _ = self._shingle_hashes(texts)
        return hashes, counts

    def _shingle_hashes(self, texts: list[str]):
        folded_texts = [folded(t) for t in texts]
        if self.shingle_unit == "auto":
            by_char = char_unit_mask(folded_texts)
        else:
            by_char = np.full(len(texts), self.shingle_unit == "char", dtype=bool)
        if not by_char.any():
            hashes, counts = self._word_ngrams(folded_texts)
            return fmix64(hashes), counts, by_char
        if by_char.all():
            hashes, counts = self._char_ngrams(folded_texts)
            return fmix64(hashes), counts, by_char
        # A mixed batch: each unit on its own, then the segments back in text order.
        counts = np.zeros(len(texts), dtype=np.int64)
        parts = []
        for unit_mask, ngrams in ((~by_char, self._word_ngrams), (by_char, self._char_ngrams)):
            index = np.flatnonzero(unit_mask)
            part_hashes, part_counts = ngrams([folded_texts[i] for i in index])
            counts[index] = part_counts
            parts.append((index, part_hashes, part_counts))
        starts = np.cumsum(counts) - counts
        hashes = np.empty(int(counts.sum()), dtype=np.uint64)
        for index, part_hashes, part_counts in parts:
            part_starts = np.cumsum(part_counts) - part_counts
            dest = (np.repeat(starts[index] - part_starts, part_counts)
                    + np.arange(len(part_hashes), dtype=np.int64))
            hashes[dest] = part_hashes
        return fmix64(hashes), counts, by_char

    def sign(self, texts: list[str]) -> Signed:
        """n texts -> ``Signed`` (signatures, shingle counts, unit and
        verification sketch per text).

        Texts are signed in consecutive passes of at most ``MAX_CHARS_PER_PASS``
        characters (a longer text alone), which bounds the working memory to
        ~80 MB plus ~40 bytes per character of the longest text."""
        passes, start, size = [], 0, 0
        for i, text in enumerate(texts):
            if size and size + len(text) > MAX_CHARS_PER_PASS:
                passes.append((start, i))
                start, size = i, 0
            size += len(text)
        passes.append((start, len(texts)))
        if len(passes) == 1:
            return self._sign(texts)
        parts = [self._sign(texts[lo:hi]) for lo, hi in passes]
        return Signed(np.concatenate([p.signatures for p in parts]),
                      np.concatenate([p.counts for p in parts]),
                      np.concatenate([p.by_char for p in parts]),
                      [sketch for p in parts for sketch in p.sketches])

    def _sign(self, texts: list[str]) -> Signed:
        hashes, counts, by_char = self._shingle_hashes(texts)
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
        return Signed(np.ascontiguousarray(mins.T), counts, by_char, sketches_of(hashes, counts))

    def signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (uint32 signatures [len(texts), num_perm], shingle count per text).

        A text without shingles gets an all-0xFFFFFFFF row; callers skip it.
        """
        signed = self.sign(texts)
        return signed.signatures, signed.counts


def signatures_and_band_keys(texts: list[str], params: LshParams,
                             hasher: MinHasher | None = None):
    """Pure entry point: texts -> one ``(signature bytes, band keys)`` per text,
    ``None`` for a text without shingles (never a near-duplicate).  Pass a
    ``hasher`` made by ``MinHasher.from_params(params)`` to reuse its word cache."""
    hasher = hasher or MinHasher.from_params(params)
    signed = hasher.sign(texts)
    out = []
    for sig, count in zip(signed.signatures, signed.counts):
        if not count:
            out.append(None)
            continue
        sig = sig.tobytes()
        out.append((sig, band_keys(sig, params.bands, params.rows)))
    return out


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


def shingle_set(text: str, shingle_size: int = 5, shingle_unit: str = "auto") -> set:
    """Exact shingle set, by the module docstring's definition (for measuring true
    Jaccard in tests and benchmarks): tuples of words for a ``word`` document,
    strings of characters for a ``char`` one (so the two never intersect)."""
    if shingle_units([text], shingle_unit)[0]:
        chars = chars_of(text)
        if not chars:
            return set()
        if len(chars) < shingle_size:
            return {chars}
        return {chars[i:i + shingle_size] for i in range(len(chars) - shingle_size + 1)}
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
