"""The compiled filters (``transforms/reduction/filters/_fastfilters.c``) equal their
pure-Python references, field by field (issue 13, speed).

Every function of the extension is compared with the Python code it replaces on
generated text: random Unicode (CJK, combining marks, the odd whitespace of
``str.split`` such as ``\\x1c``-``\\x1f``, ``\\x85``, ``\\u2028``, NBSP), repeated
n-grams, lines and paragraphs.  The extension must import here: a missing build fails
these tests (no skip), and ``test_the_filters_use_the_extension`` proves the filters
take it.  The pure-Python path (what runs without the extension) is held to the frozen
reference too (``test_pure_python_path_decides_as_the_reference``).
"""
import random
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.filters_reference.base as old_base
from tests.filters_reference import gopher as old_gopher
from tests.filters_reference import text as old_text
from transforms.reduction.filters import _fastfilters as fast  # fails loudly when not built
from transforms.reduction.filters import c4, gopher, langid, native, ngrams, text
from transforms.reduction.filters.base import Document, DocView, FilterChain, dict_counter
from transforms.reduction.filters.recipes import load_recipe

# Characters every path must agree on: str.split()'s whitespace (ASCII and not), letters
# of several scripts, combining marks, digits, symbols, scripts written without spaces.
ODD_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_SPACE = "\u200b\ufeff\x00\x01\u180e"  # zero-width space, BOM, NUL: not whitespace to str.split
LETTERS = "abcxyzABCÉéßøñçŁıİ\u0301\u0308\u0627\u05d0\u0915\u093f\u0e01\u0e31中文日本語かなカナ한국\U00020000\U0001d400ǅⅣ²½"
PUNCT = ".,;:!?'\"()[]{}#-—–…•$%&*+/<=>@\\^_`|~\u2019\u201c\u201d\u00ab\u00bb\u3002\uff01"
ALPHABET = ODD_SPACE + NOT_SPACE + LETTERS + PUNCT + "0123456789"
WORDS = ["the", "be", "to", "of", "and", "that", "cannot", "CANNOT", "canNot", "Straße", "naïve",
         "don't", "e.g.", "U.S.", "3.14", "1,000", "x+y", "...", "…", "-", "•", "#", "中文",
         "ไทย", "İstanbul", "ǅemal", "Ⅳ", "http://a.b/c", "(x)", "a\u0301", "ab", "a", "b"]


@st.composite
def texts(draw):
    """Random text: characters of ALPHABET and whole words, with repeated stretches."""
    parts = draw(st.lists(st.one_of(st.text(alphabet=ALPHABET, max_size=12),
                                    st.sampled_from(WORDS),
                                    st.sampled_from(ODD_SPACE)), max_size=60))
    body = "".join(parts)
    repeat = draw(st.integers(0, 3))
    if repeat and body:
        cut = draw(st.integers(0, len(body)))
        sep = draw(st.sampled_from(["\n", "\n\n", " ", "\n\n\n", "\u2028", ""]))
        body = body + (sep + body[:cut]) * repeat
    return body


def test_the_filters_use_the_extension():
    """CI builds the extension (pip install) and the filters run on it, not the fallback."""
    assert native.FAST is fast
    for module in (text, ngrams, gopher, c4, langid):
        assert module.FAST is fast, module.__name__
    assert type(langid._identifier()).__name__ == "FastIdentifier"


# --- words -----------------------------------------------------------------------------

@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts())
def test_analyse_words_equals_python(doc):
    got = text.analyse_words(doc)
    assert got == text.analyse_words_py(doc)
    assert got.words == old_text.split_words(doc)


def test_analyse_words_on_every_code_point():
    """Each code point of the BMP (every whitespace character str.split() knows is there),
    and every 61st beyond, inside a word, at its start and alone: the same tokens and
    counts as the Python path (str.split()'s whitespace, str.isalpha())."""
    points = list(range(0x10000)) + list(range(0x10000, sys.maxunicode + 1, 61))
    assert [c for c in range(sys.maxunicode + 1) if chr(c).isspace()] == [
        c for c in points if chr(c).isspace()]
    step = 48
    for k in range(0, len(points), step):
        chars = [chr(c) for c in points[k:k + step]]
        doc = " ".join(f"ab{ch}cd {ch}x {ch}" for ch in chars)
        assert text.analyse_words(doc) == text.analyse_words_py(doc), hex(points[k])


def test_no_space_script_on_every_code_point():
    for block in range(0, sys.maxunicode + 1, 256):
        for c in range(block, min(block + 256, sys.maxunicode + 1)):
            ch = chr(c)
            assert fast.has_no_space_script("ab" + ch) == text.has_no_space_script_py("ab" + ch), hex(c)


# --- n-grams ---------------------------------------------------------------------------

word_lists = st.lists(st.one_of(st.sampled_from(["a", "b", "ab", "ba", "c", "abc", "bc", ".",
                                                 "", " ", "a b", "b c", "中", "é", "e\u0301"]),
                                st.text(alphabet="ab \u00e9\u4e2d", max_size=20)), max_size=90)


@settings(max_examples=400, deadline=None)
@given(word_lists, st.lists(st.integers(1, 12), min_size=1, max_size=6, unique=True))
def test_ngram_figures_equal_the_string_algorithms(words, ns):
    """Short words over few letters: many repeats, n-grams whose words differ but whose
    joined text is equal ('ab'+'c' vs 'a'+'bc'; 'a b'+'c' vs 'a'+'b c' with spaces), empty
    words, long words (past the 16-character fingerprint)."""
    top, dup = fast.ngram_figures(words, ns, ns)
    assert top == {n: old_gopher.top_ngram_chars(words, n) for n in ns}
    assert dup == {n: old_gopher.duplicate_ngram_chars(words, n) for n in ns}


@settings(max_examples=300, deadline=None)
@given(word_lists, st.lists(st.integers(1, 6), min_size=1, max_size=4, unique=True),
       st.integers(0, 200))
def test_ngram_top_bound_skips_only_figures_that_cannot_fire(words, ns, limit):
    fired = []
    top, _ = fast.ngram_figures(words, ns, (), lambda n, chars: fired.append(n) or chars > limit)
    for n in ns:
        exact = old_gopher.top_ngram_chars(words, n)
        if top[n] is None:
            assert exact <= limit and n in fired
        else:
            assert top[n] == exact


def test_ngram_figures_on_real_documents_and_long_repeats():
    rng = random.Random(3)
    vocab = ["the", "cat", "sat", "on", "mat", "a", "longerwordthansixteen", "x", "中文"]
    for _ in range(200):
        words = [rng.choice(vocab) for _ in range(rng.randrange(0, 400))]
        if words and rng.random() < 0.5:  # a long repeated stretch
            at = rng.randrange(len(words))
            words = words + words[at:at + rng.randrange(1, 80)] * rng.randrange(1, 4)
        ns = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15)
        assert fast.ngram_figures(words, ns, ns) == (
            {n: old_gopher.top_ngram_chars(words, n) for n in ns},
            {n: old_gopher.duplicate_ngram_chars(words, n) for n in ns})


def test_ngram_figures_reject_bad_input():
    with pytest.raises(ValueError, match="n must be >= 1"):
        fast.ngram_figures(["a"], (0,), ())
    with pytest.raises(TypeError, match="list of str"):
        fast.ngram_figures(["a", 1], (1,), ())


# --- lines, paragraphs, small helpers ------------------------------------------------------

line_texts = st.lists(st.sampled_from(["a", "b", "ab", "", " ", "\t", "x y", "\u2028", "中文", "\x85",
                                       "\n", "\n\n", "\n\n\n", "\r\n", " \n ", "…", "...", "- a",
                                       "\u2022 b", "  -", "end...", "end… ", "\u3000"]),
                      max_size=60).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(line_texts, texts()))
def test_repetition_lines_equal_python(doc):
    assert fast.repetition_lines(doc) == gopher.repetition_counts_py(doc)


@settings(max_examples=300, deadline=None)
@given(st.one_of(line_texts, texts()))
def test_line_marks_equal_python(doc):
    lines = doc.splitlines()
    assert fast.line_marks(lines, gopher._BULLETS, gopher._ELLIPSES) == (
        sum(1 for s in lines if s.lstrip().startswith(gopher._BULLETS)),
        sum(1 for s in lines if s.rstrip().endswith(gopher._ELLIPSES)))
    assert fast.line_marks(lines, (), ("",)) == (0, len(lines))


@settings(max_examples=300, deadline=None)
@given(texts(), st.integers(0, 8))
def test_split_stats_equal_str_split(doc, at_most):
    chunks = doc.split()
    assert fast.split_stats(doc, -1) == (len(chunks), max(map(len, chunks), default=0))
    # C4's use: fewer than at_most chunks exactly when str.split(None, at_most) gives fewer
    assert (fast.split_stats(doc, at_most)[0] < at_most) == (len(doc.split(None, at_most)) < at_most)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS + ["The", "AND", "with", "have", "é", ""]), max_size=40),
       st.lists(st.sampled_from(["the", "and", "with", "have", "é", "", "中文", "the"]), max_size=8))
def test_count_present_equals_a_set_intersection(words, candidates):
    assert fast.count_present(words, tuple(candidates)) == len(frozenset(candidates).intersection(words))


SENTENCE_ALPHABET = "ab.!?\u3002\uff01\uff1f \t\n\u3000\u00a0_,;:)(\"'-eMrgJZ9\u00e9\u4e2d\u0301"


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=SENTENCE_ALPHABET, max_size=80), st.integers(0, 5))
def test_sentence_end_equals_the_regex(line, cap):
    """Every match of C4's sentence-end regex, as finditer finds it (start, groups, end),
    and count_sentences with its cap, compiled and not."""
    want = [(m.start(), m.end(1) if m.group(1) is not None else -1,
             m.end(2) if m.group(2) is not None else -1, m.end())
            for m in c4._SENT_END_RE.finditer(line)]
    got, pos = [], 0
    while True:
        found = fast.sentence_end(line, pos)
        if found is None:
            break
        got.append(found)
        pos = found[3]
    assert got == want
    from tests.filters_reference import c4 as old_c4
    assert c4.count_sentences(line) == old_c4.count_sentences(line)
    assert c4.count_sentences(line, cap or None) == min(old_c4.count_sentences(line), cap or 10 ** 9)
    for module in (c4,):  # the Python path too
        saved = module.FAST
        module.FAST = None
        try:
            assert c4.count_sentences(line, cap or None) == min(old_c4.count_sentences(line), cap or 10 ** 9)
        finally:
            module.FAST = saved


# --- language ID ----------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_langid_features_equal_py3langid_visit_counts(data):
    from py3langid.langid import visit_counts
    ident = langid._identifier()
    want = visit_counts(ident.tk_nextmove, ident._rowbase, ident.tk_output, data) or {}
    for depth in (0, langid.MODEL_DEPTH):  # one walk; interleaved walks of segments
        ids, counts = fast.langid_features(data, *ident._native[:3], depth)
        import numpy as np
        assert np.frombuffer(ids, dtype=np.int64).tolist() == list(want)  # first-occurrence order
        assert np.frombuffer(counts, dtype=np.float32).tolist() == [float(v) for v in want.values()]


def test_language_scores_bit_for_bit_with_the_extension():
    import numpy as np
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    original = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    fast_ident = langid._identifier()
    rng = random.Random(7)
    samples = ["".join(rng.choice(ALPHABET + "     ") for _ in range(rng.randrange(1, 2500)))
               for _ in range(60)]
    samples += ["The quick brown fox jumps over the lazy dog. " * k for k in (1, 5, 40)]
    for sample in samples:
        assert np.array_equal(fast_ident._decide(sample), original._decide(sample))
    assert langid.detect_languages(samples) == [langid.detect_language(s) for s in samples]


# --- the fallback: the pure-Python path still decides as the reference -----------------------

def test_pure_python_path_decides_as_the_reference(monkeypatch):
    """Without the extension (every module's FAST None) the web recipe gives the frozen
    reference's decisions and counters, as it does with it (test_filters_speedup)."""
    from tests.test_filters_speedup import TEXTS, reference_chain
    for module in (text, ngrams, gopher, c4, langid):
        monkeypatch.setattr(module, "FAST", None)
    steps = load_recipe("web").steps
    want, want_counts = reference_chain(steps, TEXTS[:300])
    counts, inc = dict_counter()
    chain = FilterChain(load_recipe("web").build(), counter_inc_fn=inc)
    assert [chain(Document(str(i), t)) for i, t in enumerate(TEXTS[:300])] == want
    assert counts == want_counts
    view = DocView(Document("x", TEXTS[0]))
    assert text.analyse_words(view.text) == text.analyse_words_py(view.text)
    assert old_base.DocView(Document("x", TEXTS[0])).words == view.words


def test_without_the_extension_the_filters_warn_once_and_still_decide(tmp_path):
    """An install without the compiled module (no compiler): one RuntimeWarning naming it,
    FAST is None, and the filters decide through the Python path."""
    import subprocess
    script = tmp_path / "no_ext.py"
    script.write_text(
        "import sys, warnings\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.endswith('._fastfilters'):\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    from transforms.reduction.filters import native, text, gopher\n"
        "    from transforms.reduction.filters.base import Document\n"
        "    drop = gopher.GopherRepetitionFilter()(Document('a', 'x y z ' * 40))\n"
        "    import transforms.reduction.filters.ngrams\n"
        "print(native.FAST, drop.rule, len([w for w in caught if 'compiled filters' in str(w.message)]))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.split() == ["None", "top_2_gram", "1"], out.stdout + out.stderr
