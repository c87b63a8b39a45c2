"""DedupRecords, NearDedupRecords and WriteRecords: the adapters that run our
dedup and store on a PCollection of the user's own dicts."""
import os

import orjson
import pytest
import zstandard
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings, strategies as st

from transforms import DedupRecords, NearDedupRecords, WriteRecords
from transforms.core.hashing import normalise_for_hash
from transforms.core.ids import id_order_key
from transforms.processing.runner_guards import keep_direct_runner_local
from transforms.reduction.record_dedup import BadRecord, key_record, record_refs
from transforms.storage.store import load_manifest, root_paths, verify_store
from transforms.storage.write_records import record_line

BASE = "the quick brown fox jumps over the lazy dog while the cat sleeps on the mat"


def test_key_record_reasons():
    rec = key_record({"id": 7, "text": "a b", "x": [1]})
    assert (rec.id, rec.text, rec.record) == ("7", "a b", {"id": 7, "text": "a b", "x": [1]})
    assert rec.size == len(orjson.dumps(rec.record, option=orjson.OPT_SORT_KEYS))
    # the digest is of the canonical JSON: key order does not matter
    assert key_record({"x": [1], "text": "a b", "id": 7}).digest == rec.digest
    assert 0 <= rec.digest < 1 << 63
    cases = [({"text": "t"}, "missing_id"), ({"id": None, "text": "t"}, "missing_id"),
             ({"id": 1.5, "text": "t"}, "bad_id"), ({"id": False, "text": "t"}, "bad_id"),
             ({"id": 1}, "missing_text"), ({"id": 1, "text": 3}, "text_not_string"),
             ({"id": 1, "text": " \n"}, "empty_text"), (["id", 1], "not_an_object"),
             ({"id": 1, "text": "t", "b": b"\x00"}, "not_json")]
    for record, reason in cases:
        with pytest.raises(BadRecord) as err:
            key_record(record)
        assert err.value.reason == reason, record
    assert key_record({"id": 1, "text": " "}, keep_empty=True).text == " "


def test_record_refs_carry_text_key_and_digest():
    recs = [key_record({"id": "a", "text": "Hello  World"}), key_record({"id": 2, "text": "x"})]
    refs = record_refs(recs)
    assert [(r.id, r.file, r.line, r.size) for r in refs] == [
        ("a", 0, recs[0].digest, recs[0].size + 1), ("2", 0, recs[1].digest, recs[1].size + 1)]
    assert refs[0].key == record_refs([key_record({"id": "z", "text": "hello world"})])[0].key


def run_dedup(make_pipeline, records, transform):
    out = {}
    with make_pipeline() as p:
        import apache_beam as beam
        result = p | beam.Create(records, reshuffle=False) | transform
        for name in ("kept", "removed", "dead_letters"):
            assert_that(result[name] | f"Json{name}" >> beam.Map(
                lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)),
                equal_to(out.setdefault(name, [])), label=f"Check{name}")
        assert_that(result["gate"], equal_to([""]), label="CheckGate")
    return out


def expected_exact(records, id_field="id", text_field="text"):
    """The rule, computed plainly: per normalised text the smallest (id, digest of the
    canonical JSON)."""
    best = {}
    for r in records:
        key = normalise_for_hash(r[text_field])
        rank = (id_order_key(str(r[id_field])), key_record(r, id_field, text_field).digest)
        if key not in best or rank < best[key][0]:
            best[key] = (rank, r)
    return best


def test_dedup_records_exact(make_pipeline):
    import apache_beam as beam
    records = [
        {"id": "b", "text": "Hello  world", "n": 1},
        {"id": "a", "text": "hello world", "n": 2},
        {"id": 10, "text": "other"}, {"id": 2, "text": "OTHER "},
        {"id": "s", "text": "same id", "n": 2}, {"id": "s", "text": "same id", "n": 1},
        {"id": "t", "text": "twin"}, {"id": "t", "text": "twin"},     # equal copies: one
        {"id": "u"},
    ]
    with make_pipeline() as p:
        result = p | beam.Create(records, reshuffle=False) | DedupRecords(with_removed=True)
        assert_that(result["kept"], equal_to([records[1], records[3], records[5], records[6]]),
                    label="Kept")
        assert_that(result["removed"], equal_to([
            {"removed": "b", "kept": "a", "reason": "exact_duplicate"},
            {"removed": "10", "kept": "2", "reason": "exact_duplicate"},
            {"removed": "s", "kept": "s", "reason": "exact_duplicate"}]), label="Removed")
        assert_that(result["dead_letters"], equal_to([
            {"reason": "missing_text", "detail": "no field 'text'", "record": '{"id":"u"}'}]),
            label="Dead")
        assert_that(result["gate"], equal_to([""]), label="Gate")


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from(["a b", "A  b", "c", "d e", "D E "]),
                          st.integers(0, 2)), min_size=1, max_size=25))
def test_dedup_records_matches_the_rule(rows):
    """Any records whose ids name one text each: kept = the plain rule's winners."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    text_of = {}
    records = []
    for doc_id, text, extra in rows:
        text = text_of.setdefault(doc_id, text)   # an id names one text
        records.append({"id": doc_id, "text": text, "extra": extra})
    expected = [r for _, r in expected_exact(records).values()]
    with TestPipeline() as p:
        keep_direct_runner_local(p)   # as the jobs do (runner_guards)
        kept = (p | beam.Create(records, reshuffle=False)
                | DedupRecords(num_buckets=3, batch_bytes=200))["kept"]
        assert_that(kept | beam.Map(lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)),
                    equal_to([orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in expected]))


def test_dedup_records_fails_on_an_id_naming_two_texts(make_pipeline):
    import apache_beam as beam
    with pytest.raises(Exception, match=r"1 'id' value\(s\) name more than one distinct "
                                         r"text, e.g. 7; give every record"):
        with make_pipeline() as p:
            (p | beam.Create([{"id": 7, "text": "one"}, {"id": "7", "text": "two"}])
             | DedupRecords())


def test_near_dedup_records(make_pipeline):
    import apache_beam as beam
    other = "completely different words that share nothing at all with the others here"
    records = [{"id": 3, "text": BASE + " today"}, {"id": 1, "text": BASE, "k": [1]},
               {"id": 2, "text": BASE + " again"}, {"id": "z", "text": other},
               {"id": "w", "text": "short"}, {"id": "q", "text": 5}]
    with make_pipeline() as p:
        result = (p | beam.Create(records, reshuffle=False)
                  | NearDedupRecords(0.8, with_removed=True, num_buckets=4))
        assert_that(result["kept"], equal_to([records[1], records[3], records[4]]), label="Kept")
        assert_that(result["removed"] | beam.Map(lambda r: (r["removed"], r["kept"], r["reason"])),
                    equal_to([("3", "1", "near_duplicate"), ("2", "1", "near_duplicate")]),
                    label="Removed")
        assert_that(result["dead_letters"] | beam.Map(lambda d: d["reason"]),
                    equal_to(["text_not_string"]), label="Dead")
        assert_that(result["gate"], equal_to([""]), label="Gate")


def test_record_line_and_its_errors():
    record = record_line({"id": 12, "b": 1, "a": "x"})
    assert (record.partition, record.id, record.payload) == ("", "12", b'{"id":12,"b":1,"a":"x"}')
    for bad in ({"id": None}, {"x": 1}, {"id": True}, {"id": 1.0}):
        with pytest.raises(ValueError, match="'id' must be a string or an integer"):
            record_line(bad)


def test_write_records_round_trip_bytes(make_pipeline, tmp_path):
    import apache_beam as beam
    records = [{"id": i, "text": "x" * (i % 50), "n": {"deep": [i, None]}} for i in range(300)]
    roots = [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")]
    with make_pipeline() as p:
        manifest = (p | beam.Create(records)
                    | WriteRecords(roots, "mine", 2, target_shard_bytes=4000, batch_bytes=500))
        assert_that(manifest | beam.Map(lambda m: (m["dataset"], m["generation"],
                                                   sum(s["records"] for s in m["shards"]))),
                    equal_to([("mine", 1, 300)]))
    store = os.path.join(roots[0], "mine")
    manifest = load_manifest(store)
    assert manifest["replication"] == 2 and len(manifest["shards"]) > 3
    assert {r["status"] for r in verify_store(store)} == {"ok"}
    lines = []
    for shard in manifest["shards"]:
        path = f"{root_paths(manifest, store)[shard['replicas'][1]]}/mine/{shard['name']}"
        raw = zstandard.ZstdDecompressor().decompress(open(path, "rb").read())
        assert len(raw) == shard["raw_bytes"]
        shard_lines = raw.splitlines()
        assert [orjson.loads(x)["id"] for x in shard_lines] == sorted(
            orjson.loads(x)["id"] for x in shard_lines)
        lines += shard_lines
    assert sorted(lines) == sorted(orjson.dumps(r) for r in records)
    # nothing temporary left on any root
    assert all(not n.startswith(".") for r in roots for n in os.listdir(os.path.join(r, "mine")))


def test_write_records_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="replication"):
        WriteRecords([str(tmp_path / "a")], "mine", 2)
    with pytest.raises(ValueError):
        WriteRecords([str(tmp_path / "a")], "../x")
