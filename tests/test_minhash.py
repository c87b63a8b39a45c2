"""The MinHash/LSH pure core against a plain, loop-by-loop reference."""
import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.hashing import normalise_for_hash
from transforms.minhash import (
    MASK64, WORD_WEIGHTS, LshParams, MinHasher, band_keys, estimated_jaccard,
    optimal_bands_rows, shingle_set, true_jaccard, words_of)


def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


def reference_signature(text: str, num_perm: int, shingle_size: int, hasher: MinHasher):
    """The module docstring's definition, one shingle and one permutation at a time."""
    words = normalise_for_hash(text).split()
    if not words:
        return None
    runs = ([words[i:i + shingle_size] for i in range(len(words) - shingle_size + 1)]
            if len(words) >= shingle_size else [words])
    hashes = []
    for run in runs:
        acc = 0
        for j, word in enumerate(run):
            acc = (acc + xxhash.xxh3_64_intdigest(word.encode("utf-8")) * WORD_WEIGHTS[j]) & MASK64
        hashes.append(_fmix64(acc) >> 32)
    return [min((int(a) * h + int(b)) & 0xFFFFFFFF for h in hashes)
            for a, b in zip(hasher.a, hasher.b)]


TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    "  THE quick   brown fox jumps over the lazy dog near the river bank today. ",
    "one two three",
    "single",
    "",
    "   \n\t ",
    "Ünïcödé wörds, ﬁne ligatures and Straße " * 3,
    " ".join(f"w{i % 37}" for i in range(2000)),  # spans several numpy blocks
]


@pytest.mark.parametrize("shingle_size", [1, 3, 5])
def test_signatures_equal_reference(shingle_size):
    hasher = MinHasher(32, shingle_size, seed=7)
    sigs, counts = hasher.signatures(TEXTS)
    assert sigs.dtype == np.uint32 and sigs.shape == (len(TEXTS), 32)
    for text, sig, count in zip(TEXTS, sigs, counts):
        expected = reference_signature(text, 32, shingle_size, hasher)
        if expected is None:
            assert count == 0
        else:
            words = len(normalise_for_hash(text).split())
            assert count == max(words - shingle_size + 1, 1)
            assert sig.tolist() == expected, text[:40]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab cdé\n", max_size=40), max_size=12))
def test_batches_are_independent_of_grouping(texts):
    """A text's signature does not depend on its batch neighbours."""
    hasher = MinHasher(16, 3, seed=3)
    together, _ = hasher.signatures(texts)
    for i, text in enumerate(texts):
        alone, _ = hasher.signatures([text])
        assert together[i].tolist() == alone[0].tolist()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_words_are_the_normalised_texts_words(text):
    assert words_of(text) == normalise_for_hash(text).split()


def test_large_text_spanning_blocks_matches_reference():
    hasher = MinHasher(8, 5, seed=11)
    rng = np.random.default_rng(0)
    text = " ".join(f"t{x}" for x in rng.integers(0, 5000, 30000))
    sigs, _ = hasher.signatures(["short text here", text, "another short one"])
    assert sigs[1].tolist() == reference_signature(text, 8, 5, hasher)


def test_estimated_jaccard_tracks_true_jaccard():
    """Pairs at known similarity: the estimate is within 4 sigma of the truth."""
    rng = np.random.default_rng(5)
    vocab = [f"v{i}" for i in range(3000)]
    hasher = MinHasher(256, 5, seed=1)
    errors = []
    for rate in (0.0, 0.01, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0):
        for _ in range(5):
            words = list(rng.choice(vocab, 400))
            edited = [vocab[rng.integers(3000)] if rng.random() < rate else w for w in words]
            a, b = " ".join(words), " ".join(edited)
            truth = true_jaccard(shingle_set(a), shingle_set(b))
            sigs, _ = hasher.signatures([a, b])
            estimate = estimated_jaccard(sigs[0], sigs[1])
            sigma = max(np.sqrt(truth * (1 - truth) / 256), 1 / 256)
            assert abs(estimate - truth) <= 4 * sigma + 1e-9, (rate, truth, estimate)
            errors.append(estimate - truth)
    assert abs(np.mean(errors)) < 0.02  # unbiased


def test_estimated_jaccard_of_bytes_and_arrays():
    a = np.array([1, 2, 3, 4], dtype=np.uint32)
    b = np.array([1, 9, 3, 9], dtype=np.uint32)
    assert estimated_jaccard(a, b) == 0.5
    assert estimated_jaccard(a.tobytes(), b.tobytes()) == 0.5


def test_band_keys_identify_equal_bands():
    a = np.arange(12, dtype=np.uint32)
    b = a.copy()
    b[5] = 99  # band 1 of 3x4 differs
    ka, kb = band_keys(a.tobytes(), 3, 4), band_keys(b.tobytes(), 3, 4)
    assert [x == y for x, y in zip(ka, kb)] == [True, False, True]
    assert len({k[:2] for k in ka}) == 3 and all(len(k) == 10 for k in ka)


def test_optimal_bands_rows():
    bands, rows = optimal_bands_rows(0.8, 128)
    assert bands * rows <= 128
    params = LshParams.resolve(0.8)
    assert (params.bands, params.rows, params.num_perm) == (bands, rows, 128)
    # recall-leaning: pairs at 0.85 are candidates with high probability
    assert params.candidate_probability(0.85) > 0.95
    assert params.candidate_probability(0.3) < 0.01
    # an equal-weight choice is stricter (fewer bands per row)
    strict = optimal_bands_rows(0.8, 128, 0.5, 0.5)
    assert strict[1] >= rows


def test_resolve_explicit_and_invalid():
    assert LshParams.resolve(0.8, bands=20, rows=5).num_perm == 100
    assert LshParams.resolve(0.8, num_perm=64, bands=8).rows == 8
    with pytest.raises(ValueError, match="more than num_perm"):
        LshParams.resolve(0.8, num_perm=10, bands=4, rows=4)
    with pytest.raises(ValueError, match="threshold"):
        LshParams.resolve(1.5)
    with pytest.raises(ValueError, match="shingle size"):
        LshParams.resolve(0.8, shingle_size=0)


def test_shingle_set_and_true_jaccard():
    assert shingle_set("a b c", 5) == {("a", "b", "c")}
    assert shingle_set("A  b c d", 2) == {("a", "b"), ("b", "c"), ("c", "d")}
    assert true_jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3)
    assert true_jaccard(set(), set()) == 0.0
