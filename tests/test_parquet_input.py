"""Parquet input: the row -> JSON mapping, bad rows, units of row groups, and the job
reading Parquet (alone, mixed with JSON Lines, split across workers)."""
import datetime
import decimal
import glob
import os

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import prepare_corpus
from transforms.core.parquet_json import row_json, table_rows
from transforms.processing import io as io_module
from transforms.processing import parquet as parquet_module
from transforms.processing.io import BadRecord, InputError, probe_inputs
from transforms.processing.parquet import (ParquetSource, parquet_units, picked_lines,
                                           row_document)
from transforms.storage.store import load_manifest


def _lines(table):
    return [row_json(row) for row in table_rows(table)]


def test_every_arrow_type_maps_to_documented_json():
    table = pa.table({
        "i8": pa.array([-3], pa.int8()), "u64": pa.array([2**64 - 1], pa.uint64()),
        "f32": pa.array([0.1], pa.float32()), "f64": pa.array([float("nan")]),
        "b": pa.array([True]), "s": pa.array(["é"]), "bin": pa.array([b"\x00\xff"]),
        "dec": pa.array([decimal.Decimal("1.20")], pa.decimal128(5, 2)),
        "d": pa.array([datetime.date(2024, 2, 29)]),
        "t": pa.array([1_500], pa.time64("us")),
        "ts_s": pa.array([0], pa.timestamp("s")),
        "ts_ns": pa.array([1_000_000_123], pa.timestamp("ns")),
        "ts_tz": pa.array([3_600_000], pa.timestamp("ms", tz="Europe/Paris")),
        "dur": pa.array([5], pa.duration("ms")),
        "l": pa.array([[1, None]]), "st": pa.array([{"z": 1, "a": "x"}]),
        "m": pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())),
        "dict": pa.array(["v"]).dictionary_encode(),
        "n": pa.array([None], pa.null()),
    })
    assert _lines(table) == [
        b'{"i8":-3,"u64":18446744073709551615,"f32":0.10000000149011612,"f64":null,'
        b'"b":true,"s":"\xc3\xa9","bin":"AP8=","dec":"1.20","d":"2024-02-29",'
        b'"t":"00:00:00.001500","ts_s":"1970-01-01T00:00:00",'
        b'"ts_ns":"1970-01-01T00:00:01.000000123","ts_tz":"1970-01-01T01:00:00.000Z",'
        b'"dur":5,"l":[1,null],"st":{"z":1,"a":"x"},"m":[["k",1]],"dict":"v","n":null}']


def test_nested_nulls_and_timestamps_inside_lists_and_structs():
    kind = pa.struct([("when", pa.timestamp("us")), ("xs", pa.list_(pa.int32()))])
    table = pa.table({"s": pa.array([{"when": 0, "xs": [1]}, None, {"when": None, "xs": None}],
                                    kind)})
    assert _lines(table) == [b'{"s":{"when":"1970-01-01T00:00:00.000000","xs":[1]}}',
                             b'{"s":null}', b'{"s":{"when":null,"xs":null}}']


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
                          st.one_of(st.none(), st.text(max_size=20)),
                          st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))), max_size=20))
def test_rows_read_back_as_the_values_written(rows):
    """Ints, strings, finite floats and nulls survive the mapping exactly."""
    table = pa.table({"i": pa.array([r[0] for r in rows], pa.int64()),
                      "s": pa.array([r[1] for r in rows], pa.string()),
                      "f": pa.array([r[2] for r in rows], pa.float64())})
    assert [orjson.loads(line) for line in _lines(table)] == [
        {"i": i, "s": s, "f": f} for i, s, f in rows]


@pytest.mark.parametrize("row,reason", [
    ({"id": 1, "text": None}, "missing_text"),
    ({"id": 1}, "missing_text"),
    ({"id": 1, "text": 5}, "text_not_string"),
    ({"id": 1, "text": b"bytes"}, "text_not_string"),
    ({"id": 1, "text": "  "}, "empty_text"),
    ({"id": 1.5, "text": "x"}, "bad_id"),
    ({"id": True, "text": "x"}, "bad_id"),
    ({"id": 1, "text": "x" * 100}, "line_too_long"),
])
def test_bad_rows_have_reason_codes(row, reason):
    with pytest.raises(BadRecord) as err:
        row_document(row, "id", "text", "f:1", max_line_bytes=50)
    assert err.value.reason == reason


def test_missing_or_null_id_gets_the_default():
    assert row_document({"text": "x", "id": None}, "id", "text", "f:3") == (
        "f:3", "x", b'{"text":"x","id":"f:3"}')
    assert row_document({"text": "x"}, "id", "text", "f:3") == (
        "f:3", "x", b'{"text":"x","id":"f:3"}')
    assert row_document({"id": 7, "text": "x"}, "id", "text", "f:3") == (
        "7", "x", b'{"id":7,"text":"x"}')


def _write(path, rows, row_group_size=4, schema=None):
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path,
                   row_group_size=row_group_size)
    return str(path)


def test_units_cut_files_by_row_groups(tmp_path):
    path = _write(tmp_path / "a.parquet", [{"id": i, "text": "x" * 100} for i in range(10)],
                  row_group_size=3)   # groups of 3, 3, 3, 1 rows
    assert parquet_units(5, path) == [(5, path, 0, 4)]
    assert parquet_units(5, path, split_bytes=1) == [
        (5, path, 0, 1), (5, path, 1, 2), (5, path, 2, 3), (5, path, 3, 4)]
    sizes = [pq.ParquetFile(path).metadata.row_group(g).total_byte_size for g in range(4)]
    two = parquet_units(5, path, split_bytes=sizes[0] + sizes[1])
    assert two == [(5, path, 0, 2), (5, path, 2, 4)]
    with ParquetSource(path) as source:
        assert source.first_rows == [1, 4, 7, 10, 11]
    # pass 2 yields the picked rows (a row past the end is not there), digest last
    got = list(picked_lines(path, [2, 5, 10, 11], "id", "text"))
    assert [n for n, _ in got[:-1]] == [2, 5, 10] and got[-1][0] == "digest"
    assert got[1][1] == b'{"id":4,"text":"' + b"x" * 100 + b'"}'


def test_unreadable_parquet_is_an_input_error_naming_the_file(tmp_path):
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b'{"id": 1, "text": "not parquet"}\n')
    with pytest.raises(InputError, match=r"fake\.parquet: cannot read Parquet: no Parquet footer"):
        ParquetSource(str(fake))
    with pytest.raises(InputError, match=r"fake\.parquet"):
        probe_inputs([str(fake)], "text")
    real = _write(tmp_path / "x.parquet", [{"id": 1, "text": "t"}])
    named = tmp_path / "x.jsonl"
    named.write_bytes(open(real, "rb").read())
    with pytest.raises(InputError, match="is a Parquet file, not JSON Lines: name it .parquet"):
        probe_inputs([str(named)], "text")
    assert probe_inputs([real], "text")["fields"] == ["id", "text"]
    with pytest.raises(ValueError, match="no record has field 'body'"):
        probe_inputs([real], "body")
    with pytest.raises(ValueError, match="non-numeric"):
        probe_inputs([real], "text", numeric_field="text")


# ---------------------------------------------------------------- the job

ROWS = [
    {"id": "p03", "text": "The quick brown fox.", "n": 1, "tags": ["a"]},
    {"id": "p01", "text": "the  QUICK brown\nfox.", "n": 2, "tags": []},
    {"id": "p02", "text": "Parquet only text.", "n": None, "tags": ["b", "c"]},
    {"id": "p04", "text": None, "n": 4, "tags": None},
    {"id": None, "text": "No id in Parquet.", "n": 5, "tags": ["d"]},
    {"id": "p05", "text": "   ", "n": 6, "tags": []},
    {"id": "p06", "text": "Another document entirely.", "n": 7, "tags": ["e"]},
]
JSONL = [b'{"id": "j01", "text": "Another document entirely."}',
         b'{"id": "j02", "text": "JSONL only."}', b'not json']


def _job(run_config, inputs, root, *extra):
    return prepare_corpus.run(
        ["--input", ",".join(inputs), "--output_roots", str(root), "--dataset", "ds",
         "--max_bad_fraction", "0.5", "--run_config", run_config, *extra])


def _stored(root) -> dict:
    lines = []
    for path in sorted(glob.glob(os.path.join(str(root), "ds", "shard-*"))):
        with open(path, "rb") as f:
            lines += zstandard.ZstdDecompressor().stream_reader(f).read().splitlines()
    return {orjson.loads(line)["id"]: line for line in lines}


def _dead(root) -> list[dict]:
    found = []
    for path in glob.glob(os.path.join(str(root), "ds", "_audit", "dead_letters-*")):
        with open(path, "rb") as f:
            found += [orjson.loads(x) for x in
                      zstandard.ZstdDecompressor().stream_reader(f).read().splitlines()]
    return sorted(found, key=lambda d: (d["file"], d["line"]))


@pytest.mark.parametrize("mode", [[], ["--no_near_dedup"]], ids=["exact+near", "exact_only"])
@pytest.mark.parametrize("split", [False, True], ids=["whole", "split"])
def test_job_reads_parquet_mixed_with_jsonl(tmp_path, run_config, monkeypatch, mode, split):
    if split:   # every row group its own unit of work
        monkeypatch.setattr(parquet_module, "SPLIT_BYTES", 1)
    os.makedirs(tmp_path / "in")
    pq_path = _write(tmp_path / "in" / "a.parquet", ROWS, row_group_size=2)
    jl_path = str(tmp_path / "in" / "b.jsonl")
    with open(jl_path, "wb") as f:
        f.write(b"\n".join(JSONL) + b"\n")
    report = _job(run_config, [str(tmp_path / "in")], tmp_path / "out", *mode)
    default = f"{pq_path}:5"
    assert _stored(tmp_path / "out") == {
        "p01": b'{"id":"p01","text":"the  QUICK brown\\nfox.","n":2,"tags":[]}',
        "p02": b'{"id":"p02","text":"Parquet only text.","n":null,"tags":["b","c"]}',
        default: b'{"id":"%s","text":"No id in Parquet.","n":5,"tags":["d"]}'
                 % default.encode(),
        "j01": JSONL[0],
        "j02": JSONL[1],
    }
    assert [(d["file"], d["line"], d["reason"], d.get("row_group"), d.get("row"))
            for d in _dead(tmp_path / "out")] == [
        (pq_path, 4, "missing_text", 1, 1), (pq_path, 6, "empty_text", 2, 1),
        (jl_path, 3, "invalid_json", None, None)]
    counters = report["counters"]
    assert counters["read/records"] == 7 and counters["read/lines"] == 10
    assert counters["dedup/kept"] == 5
    # pass 2: the JSON Lines file whole; the Parquet file as one unit, or (split) as
    # the units holding a kept row: row groups 0 (p01), 1 (p02), 2 (the default id)
    assert (counters["read/files_reread"], counters["read/units_reread"]) == (
        (1, 3) if split else (1, 1))
    manifest = load_manifest(str(tmp_path / "out" / "ds"))
    assert [i["path"] for i in manifest["inputs"]] == [pq_path, jl_path]


def test_parquet_input_stores_what_the_same_jsonl_stores(tmp_path, run_config):
    """A Parquet file and the JSON Lines of its rows (as mapped) give byte-identical shards."""
    rows = [{"id": i, "text": f"document {i % 13} " * (1 + i % 5), "score": i / 3,
             "when": datetime.datetime(2024, 1, 1, 0, 0, i % 60)} for i in range(200)]
    table = pa.Table.from_pylist(rows)
    os.makedirs(tmp_path / "p")
    os.makedirs(tmp_path / "j")
    pq.write_table(table, tmp_path / "p" / "x.parquet", row_group_size=32)
    with open(tmp_path / "j" / "x.jsonl", "wb") as f:
        f.write(b"".join(line + b"\n" for line in _lines(table)))
    _job(run_config, [str(tmp_path / "p" / "x.parquet")], tmp_path / "out_p",
         "--num_shards", "3", "--no_near_dedup")
    _job(run_config, [str(tmp_path / "j" / "x.jsonl")], tmp_path / "out_j", "--num_shards", "3",
         "--no_near_dedup")
    shards = [sorted(glob.glob(os.path.join(str(tmp_path / d), "ds", "shard-*")))
              for d in ("out_p", "out_j")]
    assert [os.path.basename(p) for p in shards[0]] == [os.path.basename(p) for p in shards[1]]
    assert [open(p, "rb").read() for p in shards[0]] == [open(p, "rb").read()
                                                         for p in shards[1]]
    assert len(_stored(tmp_path / "out_p")) == 65   # distinct (i % 13, i % 5)
