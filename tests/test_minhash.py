"""The MinHash/LSH pure core against a plain, loop-by-loop reference."""
import unicodedata
from fractions import Fraction

import numpy as np
import pytest
import regex
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.hashing import normalise_for_hash
from transforms.reduction.minhash import (
    CHAR_OFFSET, MASK64, NO_SPACE_SCRIPTS, SKETCH_SIZE, WORD_WEIGHTS, LshParams, MinHasher,
    band_keys, estimated_jaccard, optimal_bands_rows, shingle_set, shingle_units,
    signatures_and_band_keys, sketch_jaccard, sketches_of, true_jaccard, words_of)


def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


_LETTER = regex.compile(r"[\p{L}\p{M}]")
_NO_SPACE = regex.compile("|".join(r"\p{scx=%s}" % s for s in NO_SPACE_SCRIPTS))


def reference_unit(text: str, shingle_unit: str = "auto") -> str:
    """The docstring's unit rule, one character at a time."""
    if shingle_unit != "auto":
        return shingle_unit
    folded = unicodedata.normalize("NFC", text).casefold()
    letters = [c for c in folded if _LETTER.fullmatch(c)]
    no_space = [c for c in letters if _NO_SPACE.fullmatch(c)]
    if letters and Fraction(len(no_space), len(letters)) >= Fraction(1, 5):
        return "char"
    return "word"


def _token_hash(token: str, unit: str) -> int:
    if unit == "word":
        return xxhash.xxh3_64_intdigest(token.encode("utf-8", "surrogatepass"))
    return _fmix64((ord(token) + CHAR_OFFSET) & MASK64)


def reference_signature(text: str, num_perm: int, shingle_size: int, hasher: MinHasher,
                        shingle_unit: str = "word"):
    """The module docstring's definition, one shingle and one permutation at a time."""
    unit = reference_unit(text, shingle_unit)
    tokens = (normalise_for_hash(text).split() if unit == "word"
              else list(normalise_for_hash(text)))
    if not tokens:
        return None
    runs = ([tokens[i:i + shingle_size] for i in range(len(tokens) - shingle_size + 1)]
            if len(tokens) >= shingle_size else [tokens])
    hashes = []
    for run in runs:
        acc = 0
        for j, token in enumerate(run):
            acc = (acc + _token_hash(token, unit) * WORD_WEIGHTS[j]) & MASK64
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
CJK_TEXTS = [
    "我们今天去公园散步，天气非常好。明天还要继续工作，希望一切顺利。",
    "  我们今天去公园散步，\n天气非常好。  ",
    "東京は日本の首都です。カタカナのコーヒーを飲みました。",
    "ﾃｽﾄ ﾃﾞｰﾀ",  # half-width katakana (NFC keeps it)
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "我们使用 Apache Beam 处理数据",  # mixed: 8 of 18 letters are Han
    "中文",  # fewer characters than a shingle
    "한국어 문장은 띄어쓰기를 합니다",  # Hangul: words
    "数据\x00\ud800表",  # NUL and a lone surrogate are characters too
    "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(20000)),  # several numpy blocks
]


@pytest.mark.parametrize("shingle_unit", ["word", "char", "auto"])
@pytest.mark.parametrize("shingle_size", [1, 3, 5])
def test_signatures_equal_reference(shingle_size, shingle_unit):
    hasher = MinHasher(32, shingle_size, seed=7, shingle_unit=shingle_unit)
    texts = TEXTS + CJK_TEXTS
    signed = hasher.sign(texts)
    sigs, counts = hasher.signatures(texts)
    assert sigs.tolist() == signed.signatures.tolist() and counts.tolist() == signed.counts.tolist()
    assert sigs.dtype == np.uint32 and sigs.shape == (len(texts), 32)
    assert signed.by_char.tolist() == [reference_unit(t, shingle_unit) == "char" for t in texts]
    for text, sig, count, by_char in zip(texts, sigs, counts, signed.by_char):
        expected = reference_signature(text, 32, shingle_size, hasher, shingle_unit)
        if expected is None:
            assert count == 0
        else:
            norm = normalise_for_hash(text)
            tokens = len(norm) if by_char else len(norm.split())
            assert count == max(tokens - shingle_size + 1, 1)
            assert sig.tolist() == expected, text[:40]


def test_auto_units_of_known_documents():
    units = shingle_units(TEXTS + CJK_TEXTS).tolist()
    assert units == [False] * len(TEXTS) + [True, True, True, True, True, True, True, False,
                                             True, True]
    # the rule's boundary: a fifth of the letters (1 Han of 5 letters) is char, 1 of 6 is not
    # ー (U+30FC) is Script=Common but Script_Extensions=Hiragana, Katakana; 、 is no letter
    assert shingle_units(["ab 中 cd", "abc 中 de", "12345 !?", "ＡＢＣ ｄｅｆ", "ー", "、。"]).tolist() \
        == [True, False, False, False, True, False]
    with pytest.raises(ValueError, match="shingle unit"):
        shingle_units(["x"], "chars")


_MIXED = st.text(alphabet=st.sampled_from(list("ab cdé\nЖж한") + ["中", "文", "か", "ナ", "ไ", "ー", "、"]),
                 max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(_MIXED, max_size=10))
def test_unit_rule_equals_reference(texts):
    assert shingle_units(texts).tolist() == [reference_unit(t) == "char" for t in texts]


@settings(max_examples=80, deadline=None)
@given(st.lists(_MIXED, max_size=12), st.sampled_from(["word", "char", "auto"]))
def test_mixed_batches_equal_reference_and_are_independent_of_grouping(texts, unit):
    """A batch mixing word and char documents: each text's signature is the
    reference one and does not depend on its batch neighbours."""
    hasher = MinHasher(16, 3, seed=3, shingle_unit=unit)
    together = hasher.sign(texts)
    for i, text in enumerate(texts):
        alone = hasher.sign([text])
        assert together.signatures[i].tolist() == alone.signatures[0].tolist()
        assert together.counts[i] == alone.counts[0]
        expected = reference_signature(text, 16, 3, hasher, unit)
        assert (together.signatures[i].tolist() == expected) if expected is not None \
            else together.counts[i] == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("ab cdéß\nЖж한글Ω1.,!")), max_size=60),
                max_size=10))
def test_auto_is_word_for_text_without_no_space_letters(texts):
    """What ran before character shingles existed: bit-identical under auto."""
    auto = MinHasher(16, 3, seed=5).sign(texts)
    word = MinHasher(16, 3, seed=5, shingle_unit="word").sign(texts)
    assert not auto.by_char.any()
    assert auto.signatures.tolist() == word.signatures.tolist()
    assert auto.counts.tolist() == word.counts.tolist()


def test_signatures_and_band_keys_is_the_hasher_plus_band_keys():
    lsh = LshParams.resolve(0.8, shingle_unit="auto")
    texts = [CJK_TEXTS[0], "", TEXTS[0]]
    out = signatures_and_band_keys(texts, lsh)
    sigs, counts = MinHasher.from_params(lsh).signatures(texts)
    assert out[1] is None
    for i in (0, 2):
        assert out[i] == (sigs[i].tobytes(), band_keys(sigs[i].tobytes(), lsh.bands, lsh.rows))


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


def test_estimated_jaccard_tracks_true_jaccard_of_character_shingles():
    """Chinese pairs at known similarity: the estimate is within 4 sigma of the truth."""
    rng = np.random.default_rng(6)
    alphabet = [chr(0x4E00 + i) for i in range(3000)]
    hasher = MinHasher(256, 5, seed=1)
    errors = []
    for rate in (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 1.0):
        for _ in range(5):
            chars = list(rng.choice(alphabet, 600))
            edited = [alphabet[rng.integers(3000)] if rng.random() < rate else c for c in chars]
            a, b = "".join(chars), "".join(edited)
            truth = true_jaccard(shingle_set(a), shingle_set(b))
            signed = hasher.sign([a, b])
            assert signed.by_char.all()
            estimate = estimated_jaccard(signed.signatures[0], signed.signatures[1])
            sigma = max(np.sqrt(truth * (1 - truth) / 256), 1 / 256)
            assert abs(estimate - truth) <= 4 * sigma + 1e-9, (rate, truth, estimate)
            errors.append(estimate - truth)
    assert abs(np.mean(errors)) < 0.02


def test_check_s_curve_and_describe():
    bad = LshParams.resolve(0.8, bands=13, rows=60)
    check = bad.check_s_curve()
    assert check.misses_threshold and not check.flags_far_below
    assert check.at_threshold == pytest.approx(1 - (1 - 0.8 ** 60) ** 13)
    loose = LshParams.resolve(0.8, bands=40, rows=2)
    assert loose.check_s_curve().flags_far_below and not loose.check_s_curve().misses_threshold
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        for num_perm in (64, 128, 256):  # the chosen settings always pass the rule
            check = LshParams.resolve(threshold, num_perm).check_s_curve()
            assert not check.misses_threshold and not check.flags_far_below
    assert LshParams.resolve(0.8, shingle_unit="char").describe() == {
        "threshold": 0.8, "num_perm": 128, "bands": 14, "rows": 9, "shingle_unit": "char",
        "shingle_size": 5, "seed": 1,
        "candidate_probability_at_threshold": round(1 - (1 - 0.8 ** 9) ** 14, 6),
        "candidate_probability_at_threshold_minus_0.2": round(1 - (1 - 0.6 ** 9) ** 14, 6)}
    with pytest.raises(ValueError, match="shingle unit"):
        LshParams.resolve(0.8, shingle_unit="token")


def test_shingle_set_and_true_jaccard():
    assert shingle_set("a b c", 5) == {("a", "b", "c")}
    assert shingle_set("A  b c d", 2) == {("a", "b"), ("b", "c"), ("c", "d")}
    assert shingle_set("中文 字符\n串", 3) == {"中文 ", "文 字", " 字符", "字符 ", "符 串"}
    assert shingle_set("中文", 5) == {"中文"} and shingle_set(" \n", 5, "char") == set()
    assert shingle_set("Ab c", 2, "char") == {"ab", "b ", " c"}
    assert shingle_set("ab c", 2, "word") == {("ab", "c")}
    assert true_jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3)
    assert true_jaccard(set(), set()) == 0.0


def test_sign_in_passes_bounded_by_characters_equals_one_pass(monkeypatch):
    """A batch of long texts is signed in several passes; the result is the same."""
    import transforms.reduction.minhash as minhash
    texts = TEXTS + CJK_TEXTS + ["", "中文" * 300]
    hasher = MinHasher(32, 5, seed=2)
    whole = hasher.sign(texts)
    monkeypatch.setattr(minhash, "MAX_CHARS_PER_PASS", 100)
    passes = hasher.sign(texts)
    assert passes.signatures.tolist() == whole.signatures.tolist()
    assert passes.counts.tolist() == whole.counts.tolist()
    assert passes.by_char.tolist() == whole.by_char.tolist()


# ---------------------------------------------------------------- verification sketches

def reference_sketch_jaccard(text_a: str, text_b: str, hasher: MinHasher, size: int) -> float:
    """The module docstring's sketch rule on Python sets: the top-32-bit shingle
    hashes of each text; exact Jaccard when both have at most ``size``, else of
    the ``size`` smallest hashes of the union, the share held by both."""
    sets = []
    for text in (text_a, text_b):
        hashes, _ = hasher.shingle_hashes([text])
        sets.append({int(h) >> 32 for h in hashes})
    a, b = sets
    if not a or not b:
        return 0.0
    if len(a) <= size and len(b) <= size:
        return len(a & b) / len(a | b)
    bottom = sorted(a | b)[:size]
    return sum(x in a and x in b for x in bottom) / len(bottom)


_CJK = st.text(alphabet=st.sampled_from(
    [chr(0x4E00 + i) for i in range(12)] + list("のにはをかナニー、。ab ")),
    min_size=0, max_size=120)


def _edit(text: str, edits: list) -> str:
    chars = list(text)
    for at, ch in edits:
        if chars:
            chars[at % len(chars)] = ch
    return "".join(chars)


@settings(max_examples=150, deadline=None)
@given(_CJK, st.lists(st.tuples(st.integers(0, 500), st.sampled_from(list("丁七の ナx"))),
                      max_size=6),
       st.sampled_from([2, 8, 64, SKETCH_SIZE]), st.sampled_from(["char", "auto", "word"]))
def test_sketch_jaccard_equals_reference(text, edits, size, unit):
    """Chinese, Japanese and mixed-script texts and edited copies: the sketch's
    Jaccard is the reference's (exact while both fit, bottom-k beyond)."""
    hasher = MinHasher(16, 5, seed=3, shingle_unit=unit)
    other = _edit(text, edits)
    hashes, counts = hasher.shingle_hashes([text, other])
    sketches = sketches_of((hashes >> np.uint64(32)).astype(np.uint32), counts, size)
    want = reference_sketch_jaccard(text, other, hasher, size)
    assert sketch_jaccard(*sketches) == pytest.approx(want, abs=1e-12)
    assert sketch_jaccard(*reversed(sketches)) == pytest.approx(want, abs=1e-12)
    if size == SKETCH_SIZE:  # what sign() spills
        assert hasher.sign([text, other]).sketches == sketches
        # exact: the true Jaccard of the shingle sets (no 32-bit collision in these few)
        truth = true_jaccard(shingle_set(text, 5, unit), shingle_set(other, 5, unit))
        assert sketch_jaccard(*sketches) == pytest.approx(truth, abs=1e-12)


def test_sketch_layout_and_bound():
    hasher = MinHasher(8)
    rng = np.random.default_rng(2)
    long_text = "".join(chr(0x4E00 + int(i)) for i in rng.integers(0, 20000, 6000))
    signed = hasher.sign([long_text, "", "中文"])
    big, empty, short = signed.sketches
    assert empty == b""
    distinct = len({int(h) >> 32 for h in hasher.shingle_hashes([long_text])[0]})
    assert int.from_bytes(big[:4], "little") == distinct > SKETCH_SIZE
    values = np.frombuffer(big, dtype="<u4", offset=4)
    assert len(big) == 4 + 4 * SKETCH_SIZE and (np.diff(values.astype(np.int64)) > 0).all()
    assert len(short) == 8 and int.from_bytes(short[:4], "little") == 1
    assert sketch_jaccard(big, big) == 1.0 and sketch_jaccard(big, b"") == 0.0


def test_sketch_estimate_beyond_the_bound_is_tight():
    """Documents above SKETCH_SIZE distinct shingles: the bottom-k estimate is
    within 4 sigma = 4 sqrt(J(1-J)/SKETCH_SIZE) of the truth (sigma 0.0125 at 0.8)."""
    rng = np.random.default_rng(9)
    alphabet = [chr(0x4E00 + i) for i in range(3000)]
    hasher = MinHasher(8)
    for rate in (0.005, 0.01, 0.02, 0.04):
        chars = list(rng.choice(alphabet, 9000))
        edited = [alphabet[rng.integers(3000)] if rng.random() < rate else c for c in chars]
        a, b = "".join(chars), "".join(edited)
        truth = true_jaccard(shingle_set(a), shingle_set(b))
        estimate = sketch_jaccard(*hasher.sign([a, b]).sketches)
        assert abs(estimate - truth) <= 4 * np.sqrt(truth * (1 - truth) / SKETCH_SIZE), rate


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), unique=True, max_size=1500),
       st.integers(0, 5000))
def test_sketch_spill_form_round_trips(hashes, extra):
    """encode_sketch / decode_sketch: any sorted distinct uint32 hashes (including 0
    and 2**32-1, gaps up to 2**32-1) and any count come back byte for byte."""
    from transforms.reduction.minhash import decode_sketch, encode_sketch
    values = np.array(sorted(hashes), dtype="<u4")
    sketch = (len(hashes) + extra).to_bytes(4, "little") + values.tobytes() if hashes else b""
    encoded = encode_sketch(sketch)
    assert len(encoded) == len(sketch) and decode_sketch(encoded) == sketch
