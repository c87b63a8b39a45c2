"""ReadJsonl and ExactDedup as PTransforms, on the configured runner."""
import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from tests.corpora import EXPECTED_REMOVED, expected_dead, expected_kept, write_small_corpus
from transforms.dedup import ExactDedup, FindIdConflicts, key_by_text
from transforms.io import ReadJsonl


def test_read_jsonl_docs_and_dead_letters(tmp_path, make_pipeline):
    plain, packed = write_small_corpus(tmp_path)
    with make_pipeline() as p:
        docs, dead = p | ReadJsonl(f"{plain},{packed}")
        assert_that(docs | beam.Map(lambda d: d[0]),
                    equal_to(["d03", "d01", "d02", "d05", "d04", f"{plain}:7", "d06", "d08"]),
                    label="DocIds")
        assert_that(dead | beam.Map(lambda d: (d["file"], d["line"], d["reason"])),
                    equal_to(sorted(expected_dead(plain, packed))), label="DeadLetters")


def test_exact_dedup_keeps_smallest_id(tmp_path, make_pipeline):
    plain, packed = write_small_corpus(tmp_path)
    with make_pipeline() as p:
        docs, _ = p | ReadJsonl(f"{plain},{packed}")
        kept, removed = docs | beam.Map(key_by_text) | ExactDedup(with_removed=True)
        assert_that(kept, equal_to(sorted(expected_kept(plain).items())), label="Kept")
        assert_that(removed | beam.Map(lambda r: (r["removed"], r["kept"], r["reason"])),
                    equal_to([(a, b, "exact_duplicate") for a, b in EXPECTED_REMOVED]),
                    label="Removed")


def test_find_id_conflicts(make_pipeline):
    docs = [("a", "one", b""), ("a", "ONE ", b""), ("b", "two", b""), ("b", "three", b""),
            ("c", "x", b""), ("c", "y", b""), ("c", "z", b"")]
    with make_pipeline() as p:
        summary = (p | beam.Create(docs) | beam.Map(key_by_text)
                   | FindIdConflicts(max_examples=1))
        assert_that(summary, equal_to([{"count": 2, "examples": ["b"]}]))
