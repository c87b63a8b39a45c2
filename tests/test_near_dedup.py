"""NearDedup on the configured runner: equal to the in-memory reference, and good enough
against the exact Jaccard similarities of the corpus."""
import apache_beam as beam
import orjson
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from pipelines import run_config as run_configs
from tests.near_dup_corpus import near_dup_corpus, reference_near_dedup, true_similarities
from transforms.core.records import pack
from transforms.processing.runner_guards import keep_direct_runner_local
from transforms.reduction.minhash import LshParams, MinHasher
from transforms.reduction.near_dedup import (
    AuditedJoin, AuditGate, Doc, NearDedup, NearDedupConfig, Signed, _Compare, _DropRooted,
    _doc_bytes, _needed_signatures, _Anchor, Anchored, Scored, _send_signature,
    cluster_histogram, size_bucket)

THRESHOLD = 0.8


def _lines(docs):
    return [(doc_id, orjson.dumps({"id": doc_id, "text": text, "n": i}))
            for i, (doc_id, text) in enumerate(sorted(docs.items()))]


@pytest.fixture(scope="module")
def corpus():
    docs = near_dup_corpus(seed=0)
    return docs, true_similarities(docs)


def test_near_dedup_equals_reference_and_meets_quality(corpus, make_pipeline):
    docs, sims = corpus
    lsh = LshParams.resolve(THRESHOLD)
    expected = reference_near_dedup(docs, lsh)
    kept_ids = set(docs) - set(expected)
    with make_pipeline() as p:
        result = p | beam.Create(_lines(docs)) | NearDedup(NearDedupConfig(lsh), with_removed=True)
        assert_that(result["kept"] | beam.Map(lambda d: d[0]), equal_to(sorted(kept_ids)),
                    label="Kept")
        assert_that(result["removed"], equal_to(
            [{"removed": r, "kept": k, "reason": "near_duplicate", "jaccard": j}
             for r, (k, j) in expected.items()]), label="Removed")
        assert_that(result["gate"], equal_to([""]), label="Converged")

    # Quality of exactly that result, against the exact shingle-set Jaccard.
    similar = [pair for pair, j in sims.items() if j >= 0.85]
    caught = [(a, b) for a, b in similar if not (a in kept_ids and b in kept_ids)]
    assert len(similar) > 100
    assert len(caught) / len(similar) >= 0.95
    close = [r for r, (k, _) in expected.items() if sims.get((min(r, k), max(r, k)), 0) >= 0.7]
    assert len(expected) > 80
    assert len(close) / len(expected) >= 0.98
    assert all(k in kept_ids for k, _ in expected.values())  # every kept root survives


def test_without_verification_matches_reference(corpus, make_pipeline):
    docs, _ = corpus
    lsh = LshParams.resolve(THRESHOLD)
    expected = reference_near_dedup(docs, lsh, verify=False)
    assert len(expected) > len(reference_near_dedup(docs, lsh))  # verification matters
    with make_pipeline() as p:
        result = (p | beam.Create(_lines(docs))
                  | NearDedup(NearDedupConfig(lsh, verify=False)))
        assert_that(result["kept"] | beam.Map(lambda d: d[0]),
                    equal_to(sorted(set(docs) - set(expected))))
        assert "removed" not in result


def test_documents_without_text_or_words_are_kept(make_pipeline):
    text = " ".join(f"word{i}" for i in range(40))
    docs = [("a", orjson.dumps({"id": "a", "text": text})),
            ("b", orjson.dumps({"id": "b", "text": text + " tail"})),
            ("c", orjson.dumps({"id": "c", "text": text + " other tail"})),
            ("e1", orjson.dumps({"id": "e1", "text": ""})),
            ("e2", orjson.dumps({"id": "e2", "text": " \n"})),
            ("n", orjson.dumps({"id": "n", "body": text})),
            ("x", b"not json")]
    lsh = LshParams.resolve(THRESHOLD, num_perm=256)
    with make_pipeline() as p:
        result = p | beam.Create(docs) | NearDedup(NearDedupConfig(lsh), with_removed=True)
        assert_that(result["kept"], equal_to([d for d in docs if d[0] not in ("b", "c")]),
                    label="Kept")
        assert_that(result["removed"] | beam.Map(lambda r: (r["removed"], r["kept"])),
                    equal_to([("b", "a"), ("c", "a")]), label="Removed")


def test_size_buckets_and_histogram():
    assert [size_bucket(n) for n in (2, 3, 4, 5, 8, 9, 100)] == \
        [(2, 2), (3, 4), (3, 4), (5, 8), (5, 8), (9, 16), (65, 128)]
    counters = {"near_dedup/clusters_size_3_to_4": 2, "near_dedup/clusters_size_2_to_2": 5,
                "near_dedup/kept": 9, "dedup/kept": 1}
    assert cluster_histogram(counters) == [
        {"min_size": 2, "max_size": 2, "clusters": 5},
        {"min_size": 3, "max_size": 4, "clusters": 2}]


def test_near_dedup_on_the_multi_process_direct_runner(corpus):
    """Where a wrong kept set was once written (a runner data-plane race, see
    transforms.processing.runner_guards): the exact reference result, the joins balanced."""
    docs, _ = corpus
    lsh = LshParams.resolve(THRESHOLD)
    expected = reference_near_dedup(docs, lsh)
    flags = run_configs.flags_from("direct_multiprocess") + ["--direct_num_workers=2"]
    with beam.Pipeline(options=PipelineOptions(flags)) as p:
        keep_direct_runner_local(p)   # this runner, not the Prism Beam would try first
        result = p | beam.Create(_lines(docs)) | NearDedup(NearDedupConfig(lsh), with_removed=True)
        assert_that(result["kept"] | beam.Map(lambda d: d[0]),
                    equal_to(sorted(set(docs) - set(expected))), label="Kept")
        assert_that(result["removed"] | beam.Map(lambda r: (r["removed"], r["kept"])),
                    equal_to([(r, k) for r, (k, _) in expected.items()]), label="Removed")
        assert_that(result["gate"], equal_to([""]), label="Gate")


class _DropOneRoot(beam.PTransform):
    """A CoGroupByKey whose shuffle loses the root of document "b" (what the runner did)."""

    def expand(self, pcolls):
        def drop(joined):
            key, groups = joined
            if key == "b":
                groups = {**groups, "root": []}
            return key, groups
        return pcolls | beam.CoGroupByKey() | beam.Map(drop)


@pytest.mark.cross_runner
def test_audited_join_balances_and_reports_a_lossy_shuffle(make_pipeline):
    docs = [("a", b"1"), ("b", b"2"), ("c", b"3")]
    roots = [("b", "a"), ("c", "a")]
    with make_pipeline() as p:
        inputs = {"doc": p | "Docs" >> beam.Create(docs), "root": p | "Roots" >> beam.Create(roots)}
        joined, balance = inputs | AuditedJoin("JoinRoots")
        _, lossy_balance = inputs | AuditedJoin("LossyJoin", group=_DropOneRoot())
        assert_that(joined | beam.MapTuple(lambda k, g: (k, sorted(g["doc"]), sorted(g["root"]))),
                    equal_to([("a", [b"1"], []), ("b", [b"2"], ["a"]), ("c", [b"3"], ["a"])]),
                    label="Joined")
        assert_that(balance | "Good" >> AuditGate(), equal_to([""]), label="Balanced")
        assert_that(lossy_balance | "Bad" >> AuditGate(), equal_to([
            "a shuffle lost or duplicated values (join/input: sent minus received): "
            "LossyJoin/root +1"]), label="Lossy")


def test_join_consumers_read_each_group_once():
    """Each consumer of grouped values makes one pass (Beam promises only an iterable)."""
    signed = MinHasher(16).sign(["x y z w v", "x y z w u"])
    sig_a, sig_b = (s.tobytes() for s in signed.signatures)
    sk_a, sk_b = signed.sketches
    once = iter
    assert list(_send_signature(("a", {"sig": once([sk_a]), "to": once(["b", "c"])}))) == \
        [("b", ("a", sk_a)), ("c", ("a", sk_a))]
    compare = _Compare()
    assert list(compare.process(("a", {"sig": once([sk_a]), "from": once([("b", sk_b)])}))) \
        == [Scored("b", "a", 0.0)]
    keep = _DropRooted(batch_bytes=1 << 20, size_of=_doc_bytes)
    keep.setup()
    docs = [Doc("a", b"line a"), Doc("b", b"line b"), Doc("c", b"line c")]
    assert list(keep.process((0, {"records": once([docs[:2], docs[2:]]),
                                  "root": once([("b", "a")])}))) == [[docs[0], docs[2]]]
    # survivors of the bucket are re-batched across its incoming batches, packed or not
    keep = _DropRooted(batch_bytes=len("a") + len(b"line a") + 16, size_of=_doc_bytes)
    keep.setup()
    assert list(keep.process((0, {"records": once([pack(docs[:1]), docs[1:]]),
                                  "root": once([("b", "a")])}))) == [[docs[0]], [docs[2]]]
    needed = _needed_signatures((0, {"need": once(["b"]), "sig": once(
        [[Signed("a", sig_a, sk_a), Signed("b", sig_b, sk_b)]])}))
    assert list(needed) == [("b", sk_b)]
    # "x y z w v" and "x y z w u": one 5-word shingle each, none shared: J = 0
    for threshold, want in ((None, [Anchored("b", "a", 0.0)]), (0.5, [])):
        anchor = _Anchor(threshold)
        anchor.setup()
        assert list(anchor.process(Scored("b", "a", 0.0))) == want


def test_star_edges_read_the_bucket_once():
    """Beam promises only an iterable of grouped values: one pass."""
    from transforms.reduction.near_dedup import _StarEdges
    star = _StarEdges()
    star.setup()
    bucket = [[(b"k", b"D", "d"), (b"k", b"B", "b"), (b"j", b"X", "x")],
              [(b"k", b"C", "c"), (b"k", b"B", "b")]]
    assert list(star.process((0, iter(bucket)))) == [("c", "b"), ("d", "b")]
    assert list(star.process((0, iter([[(b"k", b"A", "a")]])))) == []
    # copies of one text (one text key) count once, by their smallest id
    copies = [[(b"k", b"T", "t2"), (b"k", b"T", "t1"), (b"k", b"U", "u"), (b"j", b"T", "t3")]]
    assert list(star.process((0, iter(copies)))) == [("u", "t1")]
    assert list(star.process((0, iter([[(b"k", b"T", "t2"), (b"k", b"T", "t1")]])))) == []


def test_jaccards_from_spill_score_every_pair_from_the_scan_spill(tmp_path, make_pipeline):
    """Pairs scored from the scan's sketch spill (compressed, spill form) equal
    sketch_jaccard of the texts' own sketches, whatever bucket each end is in; a
    pair with an end without a sketch scores 0.0; nothing lost (audit balanced)."""
    from transforms.processing.refs import SpillWriter
    from transforms.reduction.minhash import sketch_jaccard
    from transforms.reduction.near_dedup import SketchesFromSpill, Signer, AuditGate
    from transforms.core.hashing import text_key
    signer = Signer(NearDedupConfig(LshParams.resolve(0.8, num_perm=32)), num_buckets=3)
    signer.setup()
    words = [f"w{i}" for i in range(40)]
    texts = {f"d{i}": " ".join(words[i:i + 12] + words[:i % 5]) for i in range(12)}
    texts["\u00e9t\u00e9"] = " ".join(words[3:14])
    ids = sorted(texts)
    writers = [SpillWriter(s, 0, 200) for s in signer.spills(str(tmp_path))]
    signer.spill(ids, [text_key(texts[i]) for i in ids], [texts[i] for i in ids], writers)
    for w in writers:
        w.close()
    own = {i: signer.sign([texts[i]])[0].sketch for i in ids}
    pairs = [(a, b) for a in ids for b in ids if a < b] + [("d1", "nobody"), ("nobody", "d2")]
    want = [Scored(a, b, sketch_jaccard(own.get(a, b""), own.get(b, b""))) for a, b in pairs]
    assert sum(s.jaccard > 0 for s in want) > 20
    with make_pipeline() as p:
        written = p | "Written" >> beam.Create([True])
        sketches = SketchesFromSpill(signer, str(tmp_path), written)
        scored = p | beam.Create(pairs) | "Score" >> sketches.jaccards("Test")
        assert_that(scored, equal_to(want), label="Scored")
        gate = sketches.balances | "Balances" >> beam.Flatten() | AuditGate()
        assert_that(gate, equal_to([""]), label="Balanced")
