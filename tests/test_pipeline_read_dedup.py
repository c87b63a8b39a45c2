"""ReadJsonl, ScanJsonl and ExactDedup as PTransforms, on the configured runner."""
import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from tests.corpora import EXPECTED_REMOVED, expected_dead, expected_kept, write_small_corpus
from transforms.reduction.dedup import ExactDedup
from transforms.core.hashing import text_key
from transforms.processing.io import ReadJsonl
from transforms.processing.refs import Bounds, DocRef, ScanJsonl


def test_read_jsonl_docs_and_dead_letters(tmp_path, make_pipeline):
    plain, packed = write_small_corpus(tmp_path)
    with make_pipeline() as p:
        docs, dead = p | ReadJsonl(f"{plain},{packed}")
        assert_that(docs | beam.Map(lambda d: d[0]),
                    equal_to(["d03", "d01", "d02", "d05", "d04", f"{plain}:7", "d06", "d08"]),
                    label="DocIds")
        assert_that(dead | beam.Map(lambda d: (d["file"], d["line"], d["reason"])),
                    equal_to(sorted(expected_dead(plain, packed))), label="DeadLetters")


def _ref(doc_id, text, line):
    return DocRef(doc_id, text_key(text), 0, line, 10, False, False, b"", b"")


def test_exact_dedup_keeps_smallest_id(tmp_path, make_pipeline):
    plain, packed = write_small_corpus(tmp_path)
    kept_lines = expected_kept(plain)
    with make_pipeline() as p:
        scanned = p | ScanJsonl(f"{plain},{packed}", bounds=Bounds(batch_bytes=150))
        out = scanned["refs"] | ExactDedup(num_buckets=4, with_removed=True)
        assert_that(out["kept"] | beam.FlatMap(lambda batch: [(r.id, r.size) for r in batch]),
                    equal_to([(i, len(line) + 1) for i, line in kept_lines.items()]),
                    label="Kept")
        assert_that(out["removed"] | beam.Map(lambda r: (r.id, r.kept, r.reason)),
                    equal_to([(a, b, "dedup.exact_duplicate") for a, b in EXPECTED_REMOVED]),
                    label="Removed")
        assert_that(out["id_conflicts"], equal_to([{"count": 0, "examples": []}]),
                    label="NoConflicts")


def test_exact_dedup_hot_text_across_batches(make_pipeline):
    """Many copies of one text spread over batches: one survivor, every loser listed."""
    batches = [[_ref(f"id{b:02d}{i}", " Same   TEXT ", b * 10 + i) for i in range(5)]
               + [_ref(f"u{b}", f"unique {b}", 99)] for b in range(6)]
    with make_pipeline() as p:
        out = p | beam.Create(batches) | ExactDedup(num_buckets=3, with_removed=True,
                                                    batch_bytes=100)
        assert_that(out["kept"] | beam.FlatMap(lambda batch: [r.id for r in batch]),
                    equal_to(["id000"] + [f"u{b}" for b in range(6)]), label="Kept")
        assert_that(out["removed"] | beam.Map(lambda r: (r.id, r.kept, r.file, r.line)),
                    equal_to([(f"id{b:02d}{i}", "id000", 0, b * 10 + i) for b in range(6)
                              for i in range(5) if (b, i) != (0, 0)]), label="Removed")


def test_exact_dedup_reports_id_conflicts(make_pipeline):
    batches = [[_ref("a", "one", 1), _ref("b", "two", 2), _ref("c", "x", 3)],
               [_ref("a", "ONE ", 4), _ref("b", "three", 5), _ref("c", "y", 6),
                _ref("c", "z", 7)]]
    with make_pipeline() as p:
        out = p | beam.Create(batches) | ExactDedup(num_buckets=2, max_conflict_examples=1)
        assert_that(out["id_conflicts"], equal_to([{"count": 2, "examples": ["b"]}]))
