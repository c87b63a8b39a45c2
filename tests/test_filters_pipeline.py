"""ApplyFilters and SamplePerPartition on the configured runner: exact kept and removed sets."""
import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from transforms.reduction.filters.base import Document, FilterChain, Removed
from transforms.processing.refs import DocRef
from transforms.reduction.filters.beam import (
    ApplyFilters, KeepSmallestPerPartition, SamplePerPartition)
from transforms.reduction.filters.recipes import load_recipe
from transforms.reduction.filters.sampling import sample_hash
from transforms.storage.report import counters

GOOD = "\n".join([
    "The river town woke early, and the bakers were the first to light their ovens.",
    "By six the market square filled with carts of apples, cheese and fresh bread.",
    "Children ran between the stalls while their parents argued about the price of fish.",
    "An old man with a violin played the same three songs that he had played for years.",
    "Nobody minded, because the music made the cold morning feel a little warmer.",
    "When the church bell rang at noon, the traders began to pack up and go home.",
])
DOCS = [
    Document("a-good", GOOD),
    Document("b-short", "Too short to keep."),
    Document("c-curly", GOOD + "\nSome {braces} in a line."),
    Document("d-spam", "\n".join(["Buy cheap shoes now."] * 20)),
    Document("e-good", GOOD.replace("river", "harbour"), {"url": "https://example.org/e"}),
    Document("f-french", "\n".join(
        f"Voici la phrase numéro {w} de cette histoire, et elle continue avec une intrigue très longue."
        for w in ("un", "deux", "trois", "quatre", "cinq", "six"))),
]


def test_apply_filters_web_recipe_kept_and_removed(make_pipeline):
    recipe = load_recipe("web")
    expected_removed = []
    chain = FilterChain(recipe.build())
    for d in DOCS:
        drop = chain(d)
        if drop is not None:
            expected_removed.append(Removed(d.id, drop.reason, drop.detail))
    # the pure chain's answers, spelled out: the pipeline must give exactly these
    assert [(r.removed, r.reason) for r in expected_removed] == [
        ("b-short", "gopher_repetition.top_2_gram"),  # one bigram is 50% of 18 chars
        ("c-curly", "c4.curly_bracket"),
        ("d-spam", "gopher_repetition.dup_line_frac"),  # one paragraph, 19 of 20 lines repeated
        ("f-french", "language.not_in_languages"),
    ]
    with make_pipeline() as p:
        out = (p | beam.Create(DOCS).with_output_types(Document)
               | ApplyFilters(recipe.build, removed=True))
        assert_that(out.kept | "KeptIds" >> beam.Map(lambda d: (d.id, d.text, d.fields)),
                    equal_to([("a-good", GOOD, None),
                              ("e-good", DOCS[4].text, {"url": "https://example.org/e"})]),
                    label="kept")
        assert_that(out.removed | "AsJson" >> beam.Map(lambda r: r.to_json()),
                    equal_to([r.to_json() for r in expected_removed]), label="removed")


def test_apply_filters_counters_in_the_run_report(make_pipeline):
    p = make_pipeline()
    _ = (p | beam.Create(DOCS).with_output_types(Document)
         | ApplyFilters(load_recipe("web").build))
    result = p.run()
    result.wait_until_finish()
    assert {k: v for k, v in counters(result).items() if k.startswith("filters/")} == {
        "filters/language/kept": 5, "filters/language/dropped.not_in_languages": 1,
        "filters/gopher_repetition/kept": 3, "filters/gopher_repetition/dropped.top_2_gram": 1,
        "filters/gopher_repetition/dropped.dup_line_frac": 1,
        "filters/gopher_quality/kept": 3,
        "filters/c4/kept": 2, "filters/c4/dropped.curly_bracket": 1,
        "filters/fineweb/kept": 2,
    }


def test_apply_filters_without_removed_output(make_pipeline):
    with make_pipeline() as p:
        kept = (p | beam.Create(DOCS).with_output_types(Document)
                | ApplyFilters(load_recipe("minimal").build))
        assert_that(kept | beam.Map(lambda d: d.id),
                    equal_to(["a-good", "c-curly", "e-good", "f-french"]))


def test_sample_per_partition_keeps_the_n_smallest_hashes(make_pipeline):
    keyed = [(f"p{i % 3}", f"doc-{i:03d}") for i in range(90)]
    expected = []
    for part in ("p0", "p1", "p2"):
        ids = sorted((sample_hash(i, 11), i) for k, i in keyed if k == part)
        expected.append((part, [i for _, i in ids[:4]]))
    with make_pipeline() as p:
        out = p | beam.Create(keyed) | SamplePerPartition(4, seed=11)
        assert_that(out, equal_to(expected))


def test_keep_smallest_per_partition_takes_hashes_beyond_int64(make_pipeline):
    """A partition's n-th smallest hash may be >= 2**63 (here: fewer documents than n,
    all hashing that high): it crossed the runner under an int hint (VarIntCoder) and
    the run failed with OverflowError."""
    high = [f"x{i}" for i in range(200) if sample_hash(f"x{i}", 5) >= 2 ** 63][:3]
    low = [f"y{i}" for i in range(200) if sample_hash(f"y{i}", 5) < 2 ** 62][:5]
    refs = [DocRef(i, bytes(16), 0, n + 1, 10, False, False, p, b"")
            for n, (i, p) in enumerate([(i, b"a") for i in high] + [(i, b"b") for i in low])]
    smallest_b = sorted(low, key=lambda i: (sample_hash(i, 5), i))[:4]
    with make_pipeline() as p:
        out = (p | beam.Create([refs[:4], refs[4:]])
               | KeepSmallestPerPartition(4, 5, key_fn=lambda r: r.partition_value,
                                          removed=True))
        assert_that(out["kept"] | beam.FlatMap(lambda batch: [r.id for r in batch]),
                    equal_to(high + smallest_b), label="Kept")
        assert_that(out["removed"] | beam.Map(lambda r: (r.id, r.file, r.line, r.reason)),
                    equal_to([(i, 0, 4 + low.index(i), "sample_per_partition.not_sampled")
                              for i in low if i not in smallest_b]), label="Removed")
