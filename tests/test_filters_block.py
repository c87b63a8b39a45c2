"""The scan judges a whole block of documents at once, exactly as one by one (issue 13, speed).

``ScanFilters.block`` / ``FilterStage.decide_block`` (what the scan pass calls per
block of up to 4,096 documents) runs the recipe filter by filter over the
documents still kept (``FilterChain.judge_block``); language ID detects the
block's languages in one set of numpy calls (``langid.detect_languages``).
Every test here holds the block path to the per-document path (and so, through
``tests/test_filters_speedup.py``, to the frozen reference): the same
``Decision`` for every document (drop, rule, detail string, text, PII counts,
language and score bit for bit) and the same counters.
"""
import random
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.filters_reference.base as old_base
from tests.filters_reference import langid as old_langid
from tests.test_filters_speedup import (CONFIGS, MULTILINGUAL, NEW, OLD, TEXTS, documents,
                                        reference_chain)
from transforms.reduction.filters import langid
from transforms.reduction.filters.base import Document, DocView, FilterChain, dict_counter
from transforms.reduction.filters.pii import PiiConfig
from transforms.reduction.filters.recipes import load_recipe
from transforms.reduction.filters.scan import ScanFilters
from transforms.reduction.filters.stage import FilterStage

CJK = ["敏捷的棕色狐狸跳过了懒狗。今天天气很好，我们去公园散步吧。" * 3,
       "素早い茶色の狐がのろまな犬を飛び越える。今日はとても良い天気です。" * 4,
       "ภาษาไทยเขียนติดกันโดยไม่มีช่องว่าง " * 5, "中文 mixed with English words and 中文字符 again."]
EDGES = ["", " ", "\n\n", "a", "ab", "abcde", "abcdef", "\x00\x01 \u2028 \ud800 tail",
         "SHOUTING IN CAPITALS IS STILL ENGLISH TEXT, ISN'T IT?", "é" * 5, "x" * 5000]


def _long_page(rng: random.Random) -> str:
    """A page longer than language ID's 2,000 characters and than most blocks' documents."""
    return "\n\n".join(rng.sample(TEXTS[:500], 8)) * 3


texts_strategy = st.one_of(documents(), st.sampled_from(CJK + EDGES + MULTILINGUAL),
                           st.text(max_size=300), st.sampled_from(TEXTS[:200]))


def _scan(**kw):
    counts, inc = dict_counter()
    return ScanFilters(counter_inc_fn=inc, **kw), counts


SCANS = [dict(recipe=load_recipe("web")),
         dict(recipe=load_recipe("web"), pii=PiiConfig(), record_language=True),
         dict(recipe=load_recipe("minimal"), sample_fraction=0.7, sample_seed=3,
              record_language=True),
         dict(record_language=True)]


def _one_by_one_and_block(kw, docs, cuts=()):
    single, single_counts = _scan(**kw)
    want = [single(doc_id, text) for doc_id, text in docs]
    batched, block_counts = _scan(**kw)
    got, start = [], 0
    for stop in sorted(set(cuts)) + [len(docs)]:  # the scan's block boundaries
        got += batched.block(docs[start:stop])
        start = stop
    return want, got, single_counts, block_counts


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(texts_strategy, max_size=24), st.lists(st.integers(0, 24), max_size=4),
       st.sampled_from(range(len(SCANS))))
def test_block_decides_and_counts_as_one_by_one(texts, cuts, which):
    """Random documents (token soup with repeats, CJK and Thai, empty, blank, short,
    random Unicode, real-looking pages), random block boundaries, four stage settings."""
    docs = [(f"d{i}", t) for i, t in enumerate(texts)]
    want, got, single_counts, block_counts = _one_by_one_and_block(
        SCANS[which], docs, [c for c in cuts if c <= len(docs)])
    assert got == want
    assert block_counts == single_counts


def test_block_on_the_generated_corpus_with_long_pages_and_every_edge():
    rng = random.Random(7)
    texts = TEXTS + CJK + EDGES + [_long_page(rng) for _ in range(5)]
    docs = [(str(i), t) for i, t in enumerate(texts)]
    for kw in SCANS:
        want, got, single_counts, block_counts = _one_by_one_and_block(kw, docs, [1, 2, 300])
        assert got == want
        assert block_counts == single_counts
        assert any(d.drop is None for d in got)
        if "recipe" in kw:  # both answers reached
            assert any(d.drop is not None for d in got)
        if kw.get("record_language"):
            assert all(d.lang is not None for d in got if d.drop is None)
        if "recipe" not in kw:  # nothing drops other languages
            assert {d.lang for d in got} >= {"en", "zh", "ja", "de", "ru"}


def test_chain_judge_block_decides_and_counts_as_the_reference():
    """The web recipe's chain over a block against the frozen reference, one by one."""
    steps = load_recipe("web").steps
    counts, inc = dict_counter()
    got = FilterChain(load_recipe("web").build(), counter_inc_fn=inc).judge_block(
        [Document(str(i), t) for i, t in enumerate(TEXTS)])
    want, old_counts = reference_chain(steps, TEXTS)
    for i, t in enumerate(TEXTS):
        assert got[i] == want[i], t[:200]
    assert counts == old_counts


@pytest.mark.parametrize("kind,config", [c for c in CONFIGS if c[0] == "language"])
def test_language_filter_judge_block_equals_the_reference(kind, config):
    new = NEW[kind](config).judge_block([DocView(Document(str(i), t)) for i, t in enumerate(TEXTS)])
    old_filter = OLD[kind](config)
    assert new == [old_filter(old_base.DocView(Document(str(i), t))) for i, t in enumerate(TEXTS)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40).map(
    lambda b: b.decode("latin-1")), st.sampled_from(CJK + EDGES + MULTILINGUAL)), max_size=12),
    st.integers(1, 64), st.integers(1, 3000))
def test_detect_languages_equals_detect_language(texts, block_bytes, max_chars):
    """Any texts (short ones under the automaton's depth, blank, CJK, longer than
    ``max_chars``), walked in blocks of any size (a document longer than a block alone)."""
    old = langid.BLOCK_BYTES
    langid.BLOCK_BYTES = block_bytes
    try:
        got = langid.detect_languages(texts, max_chars)
    finally:
        langid.BLOCK_BYTES = old
    assert got == [langid.detect_language(t, max_chars) for t in texts]


def test_detect_languages_scores_bit_for_bit_as_py3langid():
    texts = MULTILINGUAL + CJK + [t for t in TEXTS[::5]]
    got = langid.detect_languages(texts)
    assert got == [old_langid.detect_language(t) for t in texts]
    assert len({lang for lang, _ in got}) >= 8  # many languages, not one answer


def test_block_walk_equals_the_single_walk():
    ident = langid._identifier()
    rng = np.random.default_rng(3)
    docs = [bytes(rng.integers(0, 256, size=int(n), dtype=np.uint8)) for n in
            [0, 1, 5, 6, 7, 300, 0, 2]] + [t.encode("utf-8", "surrogatepass") for t in MULTILINGUAL]
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    doc, features = langid._block_features(ident, np.frombuffer(b"".join(docs), dtype=np.uint8),
                                           starts, lengths)
    for i, data in enumerate(docs):
        assert features[doc == i].tolist() == langid._walk_features(ident, data).tolist()


def test_filter_stage_decide_block_equals_decide():
    stage = FilterStage(recipe=load_recipe("web"), redact_pii=True, record_language=True)
    counts_a, inc_a = dict_counter()
    counts_b, inc_b = dict_counter()
    one, block = FilterStage(**stage.__dict__), FilterStage(**stage.__dict__)
    one.setup(inc_a)
    block.setup(inc_b)
    docs = [(str(i), t) for i, t in enumerate(TEXTS[:300] + CJK + EDGES)]
    assert block.decide_block(docs) == [one.decide(i, t) for i, t in docs]
    assert counts_a == counts_b


@pytest.mark.parametrize("text_bytes", [1, 7_000, 1 << 30])
def test_scan_outputs_do_not_depend_on_where_blocks_end(tmp_path, text_bytes):
    """The scan pass (``refs._ScanFile``) over one file with the web recipe, PII
    redaction, recorded languages, removed records and ``--partition_by lang``: the
    refs, removed records, dead letters and drop count are the same whether every
    block holds one document (the per-document path), a few, or the whole file."""
    import json

    from apache_beam.pvalue import TaggedOutput

    from transforms.processing.refs import Bounds, ScanSpec, _ScanFile
    rng = random.Random(4)
    texts = TEXTS[:100] + TEXTS[500:600] + CJK + EDGES + [_long_page(rng)] + [
        t.replace(". ", ". Mail jane.doe@example.com or call +1 415 555 2671. ", 1)
        for t in TEXTS[600:610]]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts))
                    + "\n")

    def scan(block_bytes):
        stage = FilterStage(recipe=load_recipe("web"), redact_pii=True, record_language=True)
        spec = ScanSpec(filters=stage, filter_removed=True, partition_by="lang")
        fn = _ScanFile("id", "text", spec, Bounds(batch_bytes=2000, text_bytes=block_bytes))
        fn.setup()
        refs, tagged = [], {}
        for out in fn.process((0, str(path))):
            if isinstance(out, TaggedOutput):
                tagged.setdefault(out.tag, []).append(out.value)
            else:
                refs.extend(out)
        return refs, tagged

    refs, tagged = scan(text_bytes)
    want_refs, want_tagged = scan(1)
    assert refs == want_refs
    assert tagged == want_tagged
    assert len(refs) > 50 and len(tagged["filtered"]) > 20  # both answers, many times
    assert sum(r.redacted for r in refs) >= 5 and {r.partition_value for r in refs} == {b'"en"'}


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "numpy-block"])
def test_detect_languages_keeps_each_threads_scores(monkeypatch, fast):
    """Two threads classifying at once each get their own document's language: the score
    detect_languages hands to classify() is per thread (a runner may run bundles in
    threads).  Thread B is held inside classify() after computing its score while
    thread A classifies: with one shared slot A would read B's score."""
    texts = {"en": "The quick brown fox jumps over the lazy dog and keeps running far away.",
             "de": "Der schnelle braune Fuchs springt über den faulen Hund und läuft weit weg."}
    expected = {k: langid.detect_languages([v])[0] for k, v in texts.items()}
    assert expected["en"][0] == "en" and expected["de"][0] == "de"
    if not fast:
        monkeypatch.setattr(langid, "FAST", None)
    ident = langid._identifier()
    real = type(ident).classify
    b_inside, a_done, got = threading.Event(), threading.Event(), {}

    def b():
        got["de"] = langid.detect_languages([texts["de"]])[0]

    thread_b = threading.Thread(target=b, name="B")

    def classify(self, text):
        if threading.current_thread() is thread_b:
            b_inside.set()
            a_done.wait(10)
        elif text == texts["en"]:
            thread_b.start()
            assert b_inside.wait(10)
        return real(self, text)

    monkeypatch.setattr(type(ident), "classify", classify)
    got["en"] = langid.detect_languages([texts["en"]])[0]
    a_done.set()
    thread_b.join(10)
    assert got == expected
