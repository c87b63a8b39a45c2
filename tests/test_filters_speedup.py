"""The fast filters decide exactly as the former implementation (issue 13, speed).

``tests/filters_reference`` is a frozen copy of the filters before the speed-up
(word splitting in one Python loop, Gopher n-grams as Python strings, C4
counting every sentence, py3langid's own byte walk).  Every test here holds the
current implementation equal to it: the same ``Drop`` (filter, rule and detail
string) or keep for every document and filter, the same tokens and counts, the
same language scores bit for bit.
"""
import itertools
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.filters_reference.base as old_base
from benchmarks.corpus import generate
from benchmarks.filter_corpus import make_documents
from tests.filters_reference import c4 as old_c4
from tests.filters_reference import fineweb as old_fineweb
from tests.filters_reference import gopher as old_gopher
from tests.filters_reference import langid as old_langid
from tests.filters_reference import text as old_text
from transforms.reduction.filters import c4, fineweb, gopher, langid, ngrams, text
from transforms.reduction.filters.base import Document, DocView, FilterChain, dict_counter
from transforms.reduction.filters.recipes import load_recipe

MULTILINGUAL = [
    "Der schnelle braune Fuchs springt über den faulen Hund, und die Katze schläft im Garten.",
    "Le renard brun rapide saute par-dessus le chien paresseux; l'été est très chaud à Paris.",
    "El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está la biblioteca?",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Это очень хороший день.",
    "敏捷的棕色狐狸跳过了懒狗。今天天气很好，我们去公园散步吧。",
    "素早い茶色の狐がのろまな犬を飛び越える。今日はとても良い天気です。",
    "الثعلب البني السريع يقفز فوق الكلب الكسول. هذا يوم جميل جدا.",
    "Il veloce volpe marrone salta sopra il cane pigro. Oggi è una bella giornata.",
    "SHOUTING IN CAPITALS IS STILL ENGLISH TEXT, ISN'T IT?",
    "", "   ", "a", "ab", "x" * 3000, "\x00\x01 \u2028 \ud800 tail",
]

# Filters with their defaults, and with thresholds moved so that other rules decide.
CONFIGS = [
    ("gopher_repetition", gopher.GopherRepetitionConfig()),
    ("gopher_repetition", gopher.GopherRepetitionConfig(
        dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None, dup_para_char_frac=None,
        top_n_grams=((1, 0.05), (2, 0.03), (3, 0.3), (3, 0.02), (4, 0.02)),
        dup_n_grams=((1, 0.2), (2, 0.1), (5, 0.02), (7, 0.01), (12, 0.01)))),
    ("gopher_quality", gopher.GopherQualityConfig()),
    ("gopher_quality", gopher.GopherQualityConfig(min_doc_words=3, max_avg_word_length=6,
                                                 max_symbol_word_ratio=0.5)),
    ("gopher_quality", gopher.GopherQualityConfig(min_doc_words=1, min_avg_word_length=None,
                                                 max_avg_word_length=None,
                                                 max_symbol_word_ratio=None,
                                                 max_bullet_lines_ratio=None,
                                                 max_ellipsis_lines_ratio=None,
                                                 min_alpha_words_ratio=0.95)),
    ("c4", c4.C4QualityConfig()),
    ("c4", c4.C4QualityConfig(min_num_sentences=2, min_words_per_line=1, max_word_length=8,
                              badwords=("spam", "cheap"))),
    ("c4", c4.C4QualityConfig(min_num_sentences=40, filter_no_terminal_punct=False,
                              remove_citations=False)),
    ("fineweb", fineweb.FineWebQualityConfig()),
    ("language", langid.LanguageConfig(languages=("en",), threshold=0.65)),
    ("language", langid.LanguageConfig(languages=(), threshold=0.9, max_chars=50)),
]
NEW = {"gopher_repetition": gopher.GopherRepetitionFilter, "gopher_quality": gopher.GopherQualityFilter,
       "c4": c4.C4QualityFilter, "fineweb": fineweb.FineWebQualityFilter,
       "language": langid.LanguageFilter}
OLD = {"gopher_repetition": old_gopher.GopherRepetitionFilter,
       "gopher_quality": old_gopher.GopherQualityFilter, "c4": old_c4.C4QualityFilter,
       "fineweb": old_fineweb.FineWebQualityFilter, "language": old_langid.LanguageFilter}


def generated_texts():
    """A varied corpus: real-looking web pages (stdlib prose, code, spam, lists, ...),
    the Zipf-word documents of the 100k benchmark corpus (exact and near copies too),
    other languages and edge cases."""
    texts = [d["text"] for d in make_documents(500, seed=3)]
    import orjson
    texts += [orjson.loads(line)["text"] for line, _ in generate(150, seed=5, max_bytes=12000)]
    texts += MULTILINGUAL
    rng = random.Random(11)
    for _ in range(40):  # pages glued from pieces of others: repeats across lines and paragraphs
        pieces = rng.sample(texts[:500], 3)
        texts.append("\n\n".join(p[: rng.randint(50, 800)] for p in pieces for _ in range(rng.randint(1, 3))))
    return texts


TEXTS = generated_texts()


def _decisions(kind, config, texts):
    new_filter, old_filter = NEW[kind](config), OLD[kind](config)
    new = [new_filter(DocView(Document(str(i), t))) for i, t in enumerate(texts)]
    old = [old_filter(old_base.DocView(Document(str(i), t))) for i, t in enumerate(texts)]
    return new, old


@pytest.mark.parametrize("kind,config", CONFIGS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CONFIGS)])
def test_each_filter_decides_as_before_on_a_generated_corpus(kind, config):
    new, old = _decisions(kind, config, TEXTS)
    assert new == old
    if kind != "language":  # the corpus reaches both answers of every filter
        assert any(d is None for d in new) and any(d is not None for d in new)


def reference_chain(steps, texts) -> tuple[list, dict]:
    """The frozen implementation's decision per text (the first drop, or None) and
    its counters, running ``steps`` in order as a FilterChain does."""
    old_filters = [OLD[s.key](s.config, name=s.name) for s in steps]
    decisions, counts = [], {}
    for i, t in enumerate(texts):
        view, want = old_base.DocView(Document(str(i), t)), None
        for f in old_filters:
            want = f(view)
            key = f"{f.name}/dropped.{want.rule}" if want is not None else f"{f.name}/kept"
            counts[key] = counts.get(key, 0) + 1
            if want is not None:
                break
        decisions.append(want)
    return decisions, counts


def test_web_recipe_chain_decides_and_counts_as_before():
    steps = load_recipe("web").steps
    counts, inc = dict_counter()
    chain = FilterChain(load_recipe("web").build(), counter_inc_fn=inc)
    want, old_counts = reference_chain(steps, TEXTS)
    for i, t in enumerate(TEXTS):
        assert chain(Document(str(i), t)) == want[i], t[:200]
    assert counts == old_counts
    rules = {k for k in counts if "/dropped." in k}
    assert len(rules) >= 6, rules  # the corpus exercises many rules, not one


# --- property tests: texts built from tokens every rule reacts to ------------------------

TOKENS = ["the", "be", "to", "of", "and", "that", "a", "bc", "ab", "c", "abc", "cannot", "CanNot",
          "don't", "it's", "e.g.", "U.S.", "Mr.", "etc.", "3.14", "1,000", "x+y", "f(x", "#", "##",
          "...", "…", "-", "•", "--", "(", ")", "[1]", "[edit]", "{", "}", "lorem", "ipsum",
          "javascript", "cookie", "policy", "word.", "word,", "end!", "why?", "\"quoted\"",
          "'tis", "naïve", "Straße", "中文", "日本", "ไทย", "²", "½", "_", "__init__", "http://x.y/z",
          ":)", "C++", "\x00", "a-b", "A.B", "don’t", "x" * 30]
SEPARATORS = [" ", " ", " ", "  ", "\n", "\n\n", "\t", "\u00a0", "\u2028", "\x1c", "\r\n", " \n "]


@st.composite
def documents(draw):
    tokens = draw(st.lists(st.sampled_from(TOKENS), min_size=0, max_size=120))
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(tokens), max_size=len(tokens)))
    body = "".join(t + s for t, s in zip(tokens, seps))
    repeat = draw(st.integers(0, 3))
    if repeat and body:  # repeated stretches: duplicate lines, paragraphs and n-grams
        cut = draw(st.integers(0, len(body)))
        body = body + (body[:cut] + draw(st.sampled_from(SEPARATORS))) * repeat
    return body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_words_and_counts_as_before(doc):
    info = text.analyse_words(doc)
    words = old_text.split_words(doc)
    assert info.words == words
    assert info.symbols == sum(1 for w in words if old_text.is_symbol(w))
    assert info.symbol_chars == sum(len(w) for w in words if old_text.is_symbol(w))
    assert info.no_alpha == sum(1 for w in words if not any(ch.isalpha() for ch in w))
    assert info.chars == sum(map(len, words))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_every_filter_decides_as_before_on_generated_documents(doc):
    for kind, config in CONFIGS:
        if kind == "language":
            continue  # language ID: its own tests below (and the corpus tests above)
        new, old = _decisions(kind, config, [doc])
        assert new == old, (kind, config)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "ab", "ba", "aa", "c", "abc", ".", "a b"[:1]]),
                max_size=80),
       st.lists(st.integers(1, 12), min_size=1, max_size=5, unique=True))
def test_ngram_index_equals_the_string_algorithms(words, ns):
    """Short words over two letters: many repeats, and n-grams whose words differ but whose
    concatenations are equal ("ab"+"c" vs "a"+"bc"), the duplicate rule's key."""
    want = ({n: old_gopher.top_ngram_chars(words, n) for n in ns},
            {n: old_gopher.duplicate_ngram_chars(words, n) for n in ns})
    assert ngrams.NgramIndex(words).compute(ns, ns) == want             # compiled
    assert ngrams.NgramIndex(words).compute_numpy(ns, ns) == want       # numpy (no extension)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "ab", "c", "bc"]), max_size=60),
       st.lists(st.integers(1, 8), min_size=1, max_size=4, unique=True))
def test_ngram_index_falls_back_on_hash_collisions(words, ns):
    """With every hash forced equal, each answer's string check fails and the string
    algorithm answers: still exact."""
    saved = ngrams._MIX
    ngrams._MIX = 0  # every n-gram's key becomes 0: one group per row
    try:
        top, dup = ngrams.NgramIndex(words).compute_numpy(ns, ns)
    finally:
        ngrams._MIX = saved
    assert top == {n: old_gopher.top_ngram_chars(words, n) for n in ns}
    assert dup == {n: old_gopher.duplicate_ngram_chars(words, n) for n in ns}


def test_long_documents_take_the_string_algorithms(monkeypatch):
    words = ("ab c a bc the cat sat on the mat " * 40).split()
    want = ({n: old_gopher.top_ngram_chars(words, n) for n in (2, 3)},
            {n: old_gopher.duplicate_ngram_chars(words, n) for n in (2, 5)})
    assert ngrams.NgramIndex(words).compute_numpy((2, 3), (2, 5)) == want
    monkeypatch.setattr(ngrams, "MAX_INDEXED_CHARS", 100)
    called = []
    string_top = ngrams.top_ngram_chars
    monkeypatch.setattr(ngrams, "top_ngram_chars", lambda w, n: called.append(n) or string_top(w, n))
    assert ngrams.NgramIndex(words).compute_numpy((2, 3), (2, 5)) == want
    assert called == [2, 3]


def test_top_ngram_bound_only_skips_figures_that_cannot_fire():
    words = ("the cat sat on the mat and the cat sat on the hat " * 5).split()
    exact, _ = ngrams.NgramIndex(words).compute((2, 3), ())
    for limit, compute in itertools.product((0, 10, exact[2] - 1, exact[2], 10_000),
                                            ("compute", "compute_numpy")):
        top, _ = getattr(ngrams.NgramIndex(words), compute)((2, 3), (), lambda n, chars: chars > limit)
        for n in (2, 3):
            assert top[n] is None or top[n] == exact[n]
            if top[n] is None:  # skipped: then the exact figure keeps too
                assert not exact[n] > limit
            if exact[n] > limit:
                assert top[n] == exact[n]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab.!? Mr.e.g.J\u3002x\n")), max_size=120),
       st.integers(0, 6))
def test_count_sentences_stops_at_the_cap(line, cap):
    assert c4.count_sentences(line, cap) == min(c4.count_sentences(line), cap)
    assert c4.count_sentences(line) == old_c4.count_sentences(line)


# --- language ID ---------------------------------------------------------------------------

def _original_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def test_language_scores_bit_for_bit_as_py3langid():
    fast, original = langid._identifier(), _original_identifier()
    assert type(fast).__name__ == "FastIdentifier"  # the model has the verified shape
    rng = random.Random(5)
    samples = MULTILINGUAL + [t[:2000] for t in TEXTS[::7]]
    samples += ["".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(1, 300)))
                for _ in range(40)]
    for sample in samples:
        if not sample:
            continue
        assert np.array_equal(fast._decide(sample), original._decide(sample)), sample[:80]
        assert fast.classify(sample) == original.classify(sample)
    for sample in MULTILINGUAL:
        assert langid.detect_language(sample) == old_langid.detect_language(sample)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_language_walk_equals_py3langid_walk_on_any_bytes(data):
    """The numpy walk gives py3langid's feature sequence for every byte string (short ones,
    shorter than the automaton's depth, included)."""
    from py3langid.langid import visit_counts
    fast = langid._identifier()
    got = langid._walk_features(fast, data).tolist()
    want = visit_counts(fast.tk_nextmove, fast._rowbase, fast.tk_output, data)
    assert (sorted(set(got)), len(got)) == (sorted(want or {}), sum((want or {}).values()))
    assert list(dict.fromkeys(got)) == list(want or {})  # first-occurrence order, as the Counter


def test_langid_model_is_an_aho_corasick_automaton():
    """Why the walk can be computed per position: every state's transitions are those of
    an Aho-Corasick automaton over its trie (goto to a child, else the failure state's
    transition), and no trie node is deeper than ``MODEL_DEPTH`` bytes; so the state after
    a byte is the walk from the root over the last ``MODEL_DEPTH`` bytes."""
    ident = langid._identifier()
    nm = np.asarray(ident.tk_nextmove, dtype=np.int64)
    rowbase = np.asarray(ident.tk_row, dtype=np.int64) * 256
    n_states = len(rowbase)
    byte = np.arange(256)
    depth = np.full(n_states, -1)
    parent = np.full(n_states, -1)
    last = np.full(n_states, -1)
    depth[0], frontier, d = 0, np.array([0]), 0
    while len(frontier):  # breadth first: each state's trie parent and byte
        nxt = nm[rowbase[frontier][:, None] + byte[None, :]]
        new = depth[nxt] < 0
        found, first = np.unique(nxt[new], return_index=True)
        depth[found] = d + 1
        parent[found] = np.repeat(frontier, 256).reshape(-1, 256)[new][first]
        last[found] = np.broadcast_to(byte, nxt.shape)[new][first]
        frontier, d = found, d + 1
    assert depth.min() == 0 and depth.max() == langid.MODEL_DEPTH
    fail = np.zeros(n_states, dtype=np.int64)
    for level in range(2, depth.max() + 1):
        at = np.flatnonzero(depth == level)
        fail[at] = nm[rowbase[fail[parent[at]]] + last[at]]
    for level in range(depth.max() + 1):
        for at in np.array_split(np.flatnonzero(depth == level), 64):
            moves = nm[rowbase[at][:, None] + byte[None, :]]
            child = (parent[moves] == at[:, None]) & (last[moves] == byte) & (depth[moves] == level + 1)
            other = 0 if level == 0 else nm[rowbase[fail[at]][:, None] + byte[None, :]]
            assert np.array_equal(moves, np.where(child, moves, other)), level
