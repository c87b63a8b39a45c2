"""FilterChain counters, config errors, recipes, language ID and sampling (pure, no Beam)."""
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.reduction.filters.base import Document, Drop, FilterChain, Removed, dict_counter
from transforms.reduction.filters.c4 import C4QualityConfig, C4QualityFilter
from transforms.reduction.filters.config import FilterConfigError
from transforms.reduction.filters.fineweb import FineWebQualityConfig
from transforms.reduction.filters.gopher import (GopherQualityConfig, GopherQualityFilter,
                                       GopherRepetitionConfig)
from transforms.reduction.filters.langid import LanguageConfig, LanguageFilter, detect_language
from transforms.reduction.filters.recipes import RecipeError, load_recipe, shipped_recipes
from transforms.reduction.filters.sampling import (HASH_SPACE, Sampler, SmallestHeap, keep_sample,
                                         sample_hash, sample_threshold)

PROSE = "\n".join(["The quick brown fox jumps over the lazy dog and runs with the wind."] * 1
                  + [f"Sentence number {w} of the story is here and it goes on with the plot."
                     for w in ("one", "two", "three", "four", "five")])


def test_chain_first_drop_wins_and_counts_per_filter():
    counts, inc = dict_counter()
    chain = FilterChain([GopherQualityFilter(), C4QualityFilter()], counter_inc_fn=inc)
    docs = [Document("keep", PROSE), Document("short", "Too short."),
            Document("c4", PROSE.replace("story", "{story}")), Document("also", PROSE)]
    results = [chain(d) for d in docs]
    assert results == [None, Drop("gopher_quality", "short_doc", "words=2 < 50"),
                       Drop("c4", "curly_bracket", "line contains '{'"), None]
    assert counts == {"gopher_quality/kept": 3, "gopher_quality/dropped.short_doc": 1,
                      "c4/kept": 2, "c4/dropped.curly_bracket": 1}
    assert results[1].reason == "gopher_quality.short_doc"
    assert Removed("short", results[1].reason, results[1].detail).to_json() == {
        "removed": "short", "reason": "gopher_quality.short_doc", "detail": "words=2 < 50"}
    assert FilterChain([GopherQualityFilter()])(Document("x", PROSE)) is None  # no counter: fine


def test_chain_rejects_duplicate_names():
    with pytest.raises(ValueError, match="repeated: gopher_quality"):
        FilterChain([GopherQualityFilter(), GopherQualityFilter()])


@pytest.mark.parametrize("cls,kwargs,name", [
    (GopherQualityConfig, {"min_doc_words": -1}, "GopherQualityConfig.min_doc_words"),
    (GopherQualityConfig, {"max_symbol_word_ratio": 1.5}, "GopherQualityConfig.max_symbol_word_ratio"),
    (GopherQualityConfig, {"stop_words": "the"}, "GopherQualityConfig.stop_words"),
    (GopherRepetitionConfig, {"top_n_grams": ((0, 0.2),)}, r"GopherRepetitionConfig.top_n_grams\[n\]"),
    (GopherRepetitionConfig, {"dup_n_grams": "x"}, "GopherRepetitionConfig.dup_n_grams"),
    (C4QualityConfig, {"filter_policy": "yes"}, "C4QualityConfig.filter_policy"),
    (C4QualityConfig, {"max_word_length": 0}, "C4QualityConfig.max_word_length"),
    (FineWebQualityConfig, {"short_line_thr": -0.1}, "FineWebQualityConfig.short_line_thr"),
    (FineWebQualityConfig, {"new_line_ratio": 0}, "FineWebQualityConfig.new_line_ratio"),
    (LanguageConfig, {"languages": ("en", "xx-bogus")}, "LanguageConfig.languages"),
    (LanguageConfig, {"threshold": 2}, "LanguageConfig.threshold"),
])
def test_config_errors_name_the_parameter(cls, kwargs, name):
    with pytest.raises(FilterConfigError, match=name):
        cls(**kwargs)


# ---------------------------------------------------------------- language ID

SAMPLES = {
    "en": "The committee will meet next week to discuss the budget for the coming year and the plans for new schools in the region.",
    "de": "Der Ausschuss wird sich nächste Woche treffen, um den Haushalt für das kommende Jahr und die Pläne für neue Schulen zu besprechen.",
    "fr": "Le comité se réunira la semaine prochaine pour discuter du budget de l'année à venir et des projets de nouvelles écoles dans la région.",
    "es": "El comité se reunirá la próxima semana para discutir el presupuesto del próximo año y los planes para nuevas escuelas en la región.",
    "zh": "委员会将于下周开会，讨论来年的预算以及在该地区新建学校的计划。会议将由主席主持，所有成员都应出席。",
    "ru": "Комитет соберется на следующей неделе, чтобы обсудить бюджет на предстоящий год и планы строительства новых школ в регионе.",
}


def test_detect_language_and_language_filter():
    for lang, text in SAMPLES.items():
        got, score = detect_language(text)
        assert got == lang and 0.85 <= score <= 1.0, (lang, got, score)
    assert detect_language("   ") == ("und", 0.0)
    f = LanguageFilter(LanguageConfig(languages=("en", "zh"), threshold=0.5))
    assert f(Document("en", SAMPLES["en"])) is None
    assert f(Document("zh", SAMPLES["zh"])) is None
    drop = f(Document("de", SAMPLES["de"]))
    assert drop.rule == "not_in_languages" and drop.detail.startswith("lang=de score=")
    strict = LanguageFilter(LanguageConfig(languages=(), threshold=1.0))
    assert strict(Document("mixed", "ok ok 123 fine")).rule == "low_score"


# ---------------------------------------------------------------- recipes

def test_shipped_recipes_load_and_resolve_every_parameter():
    assert shipped_recipes() == ["minimal", "web"]
    web = load_recipe("web")
    assert [s.name for s in web.steps] == ["language", "gopher_repetition", "gopher_quality", "c4", "fineweb"]
    resolved = web.resolved
    json.dumps(resolved)  # plain data for manifests and reports
    assert resolved["filters"][0] == {"filter": "language", "name": "language",
                                      "params": {"languages": ["en"], "threshold": 0.65, "max_chars": 2000}}
    assert resolved["filters"][2]["params"]["min_doc_words"] == 50
    assert resolved["filters"][1]["params"]["top_n_grams"] == [[2, 0.2], [3, 0.18], [4, 0.16]]
    filters = web.build()
    assert [f.name for f in filters] == [s.name for s in web.steps]
    chain = FilterChain(load_recipe("minimal").build())
    assert chain(Document("p", PROSE)) is None
    assert chain(Document("s", "few words")).reason == "gopher_quality.short_doc"


@pytest.mark.parametrize("body,error", [
    ("filters:\n  - filter: gopher_quality\n    params: {min_doc_wrds: 3}\n",
     r"bad\.yaml: filters\[0\]\.params\.min_doc_wrds: unknown parameter of gopher_quality \(known: "),
    ("filters:\n  - filter: gopher\n", r"bad\.yaml: filters\[0\]\.filter: unknown filter 'gopher'"),
    ("filter: []\n", r"bad\.yaml: filter: unknown key"),
    ("filters: []\n", r"bad\.yaml: filters: must be a non-empty list"),
    ("filters:\n  - filter: c4\n    prams: {}\n", r"bad\.yaml: filters\[0\]\.prams: unknown key"),
    ("filters:\n  - filter: c4\n    params: {min_num_sentences: -2}\n",
     r"bad\.yaml: filters\[0\]\.params: C4QualityConfig\.min_num_sentences must be"),
    ("filters:\n  - filter: c4\n  - filter: c4\n", r"bad\.yaml: filters\[1\]\.name: 'c4' is used twice"),
    ("filters: [\n", r"bad\.yaml: not valid YAML"),
])
def test_recipe_errors_are_one_line_naming_file_and_key(tmp_path, body, error):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(RecipeError, match=error) as info:
        load_recipe(str(path))
    assert "\n" not in str(info.value)


def test_recipe_missing_file():
    with pytest.raises(RecipeError, match=r"nope\.yaml: no such recipe file \(shipped recipes: minimal, web\)"):
        load_recipe(os.path.join("x", "nope.yaml"))


# ---------------------------------------------------------------- sampling

def test_sample_hash_is_seeded_xxh3_of_utf8():
    import xxhash
    assert sample_hash("doc-1", 7) == xxhash.xxh3_64_intdigest(b"doc-1", seed=7)
    assert sample_hash("naïve", 7) == sample_hash("naïve".encode(), 7)
    assert sample_hash("doc-1", 7) != sample_hash("doc-1", 8)
    assert sample_threshold(0.5) == 1 << 63 and sample_threshold(1) == HASH_SPACE
    assert not keep_sample("anything", 0.0) and keep_sample("anything", 1.0)
    with pytest.raises(FilterConfigError, match="fraction"):
        sample_threshold(1.5)


def test_keep_sample_fraction_and_stability():
    ids = [f"id-{i}" for i in range(20000)]
    kept = [i for i in ids if keep_sample(i, 0.1, seed=3)]
    assert 1800 <= len(kept) <= 2200
    grown = ids + [f"new-{i}" for i in range(5000)]
    assert [i for i in grown[:20000] if Sampler(0.1, 3)(i)] == kept  # growth changes no old decision
    assert set(kept) <= {i for i in ids if keep_sample(i, 0.2, seed=3)}  # nested fractions


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=8), max_size=60), st.integers(0, 12),
       st.randoms(use_true_random=False))
def test_smallest_heap_is_order_and_split_independent(ids, n, rnd):
    pairs = [(sample_hash(i, 1) % 16, i) for i in ids]  # % 16: many hash ties, broken by id
    expected = sorted(pairs)[:n]
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    cut = rnd.randint(0, len(shuffled))
    a, b = SmallestHeap(n), SmallestHeap(n)
    for h, i in shuffled[:cut]:
        a.push(h, i)
    for h, i in shuffled[cut:]:
        b.push(h, i)
    b.merge(a)
    assert b.items() == expected
    assert len(b._heap) <= n


# ---------------------------------------------------------------- the scan-pass call

def test_scan_filters_samples_filters_redacts_and_records_language():
    from transforms.reduction.filters.pii import PiiConfig
    from transforms.reduction.filters.scan import Decision, ScanFilters
    counts, inc = dict_counter()
    scan = ScanFilters(recipe=load_recipe("minimal"), pii=PiiConfig(), sample_fraction=0.5,
                       sample_seed=5, record_language=True, counter_inc_fn=inc)
    text = PROSE + "\nWrite to jane@example.org about it."
    ids = [f"d{i}" for i in range(40)]
    sampled = [i for i in ids if keep_sample(i, 0.5, 5)]
    decisions = {i: scan(i, text) for i in ids}
    assert {i for i, d in decisions.items() if d.kept} == set(sampled)
    d = decisions[sampled[0]]
    assert d == Decision(None, PROSE + "\nWrite to <EMAIL> about it.", {"EMAIL": 1}, "en", d.lang_score)
    assert d.lang_score > 0.9
    unsampled = next(i for i in ids if i not in sampled)
    assert decisions[unsampled] == Decision(Drop("sample", "not_sampled", "fraction=0.5"), text, {})
    n = len(sampled)
    assert counts == {"sample/kept": n, "sample/dropped.not_sampled": 40 - n,
                      "gopher_quality/kept": n, "gopher_repetition/kept": n, "pii/EMAIL": n}
    short = ScanFilters(recipe=load_recipe("minimal"), pii=PiiConfig())("s", "a@b.org only")
    assert short == Decision(Drop("gopher_quality", "short_doc", "words=2 < 50"), "a@b.org only", {})


def test_importing_the_job_loads_no_language_model():
    """The language-ID model (~2 s to load, ~100 MB) is loaded by the first use of a
    language filter, not by importing the job's modules: every process of every
    job imports them, filtering or not (a default argument once loaded it)."""
    import subprocess
    import sys
    code = ("import transforms.prepare, pipelines.prepare_corpus\n"
            "from transforms.reduction.filters import langid\n"
            "print(langid._IDENTIFIER is None)\n"
            "f = langid.LanguageFilter()\n"
            "print(f.config == langid.LanguageConfig(), sorted(f._keep))\n"
            "print(langid._IDENTIFIER is not None)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:3] == ["True", "True ['en']", "True"]
