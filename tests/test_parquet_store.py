"""Parquet output (``--format parquet``): schema inference, shard bytes, the job's
store read back, verified, failed over and rewritten byte for byte."""
import glob
import shutil
import json
import os

import orjson
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import prepare_corpus, verify_store
from tests.corpora import expected_kept, write_small_corpus
from transforms.storage import parquet_shards as ps
from transforms.storage.store import ReadStore, load_manifest, replica_roots

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False,
                                                                      allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(json_values, json_values, json_values)
def test_type_merge_is_commutative_and_associative(a, b, c):
    ta, tb, tc = ps.value_type(a), ps.value_type(b), ps.value_type(c)
    assert ps.merge(ta, tb) == ps.merge(tb, ta)
    assert ps.merge(ps.merge(ta, tb), tc) == ps.merge(ta, ps.merge(tb, tc))
    assert ps.merge(ta, "null") == ta and ps.merge(ta, ps.JSON) == ps.JSON


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values, max_size=3),
                max_size=6))
def test_any_records_round_trip_through_a_parquet_shard(records):
    """Every record comes back with its values (ints of a float column as floats),
    absent fields as null, columns in schema order; the bytes are the same twice."""
    records = [{"id": str(i), "text": "t", **r} for i, r in enumerate(records)]
    lines = [json.dumps(r).encode() for r in records]
    schema = ps.store_schema(ps.run_schema(lines), ("id", "text"))
    stored = ps.shard_bytes(lines, schema, sum(map(len, lines)))
    assert ps.shard_bytes(lines, schema, sum(map(len, lines))) == stored
    back = [json.loads(x) for x in ps.shard_lines(stored, schema["json_columns"]).splitlines()]
    names = [c["name"] for c in schema["columns"]]
    assert [list(r) for r in back] == [names] * len(records)

    def widen(value, kind):   # what a float column does to an int
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(kind, tuple) and value is not None:
            if kind[0] == "list":
                return [widen(v, kind[1]) for v in value]
            fields = dict(kind[1])
            return {k: widen(value.get(k), fields[k]) for k in sorted(fields)}
        return value
    inferred = {c["name"]: ps._untuple(c["type"]) for c in schema["inferred"]}
    assert back == [{n: (r.get(n) if n in schema["json_columns"] else widen(r.get(n),
                                                                            inferred[n]))
                     for n in names} for r in records]


def test_schema_types_and_json_columns():
    lines = [b'{"id":"a","text":"x","n":1,"f":1,"mixed":1,"big":1,"tags":["a"],'
             b'"meta":{"b":1}}',
             b'{"id":"b","text":"y","f":2.5,"mixed":"one","big":99999999999999999999,'
             b'"tags":[],"meta":{"a":null,"b":2}}']
    schema = ps.store_schema(ps.run_schema(lines), ("id", "text"))
    assert schema["columns"] == [
        {"name": "id", "type": "string"}, {"name": "text", "type": "string"},
        {"name": "big", "type": "string"}, {"name": "f", "type": "double"},
        {"name": "meta", "type": "struct<a: null, b: int64>"},
        {"name": "mixed", "type": "string"}, {"name": "n", "type": "int64"},
        {"name": "tags", "type": "list<item: string>"}]
    assert schema["json_columns"] == ["big", "mixed"]
    stored = ps.shard_bytes(lines, schema, 100)
    assert ps.shard_lines(stored, schema["json_columns"]).splitlines() == [
        b'{"id":"a","text":"x","big":1,"f":1.0,"meta":{"a":null,"b":1},"mixed":1,"n":1,'
        b'"tags":["a"]}',
        b'{"id":"b","text":"y","big":99999999999999999999,"f":2.5,"meta":{"a":null,"b":2},'
        b'"mixed":"one","n":null,"tags":[]}']
    meta = pq.ParquetFile(__import__("io").BytesIO(stored)).metadata
    assert meta.created_by == ps.created_by()
    assert set(meta.metadata) == {b"ARROW:schema"}, "no time or host in the file"
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_row_groups_follow_the_raw_size(monkeypatch):
    monkeypatch.setattr(ps, "ROW_GROUP_BYTES", 100)
    lines = [orjson.dumps({"id": str(i), "text": "x" * 40}) for i in range(10)]
    schema = ps.store_schema(ps.run_schema(lines), ("id", "text"))
    stored = ps.shard_bytes(lines, schema, sum(len(x) + 1 for x in lines))
    meta = pq.ParquetFile(__import__("io").BytesIO(stored)).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [2] * 5


# ---------------------------------------------------------------- the job

def run_job(run_config, inputs, roots, *extra):
    return prepare_corpus.run(
        ["--input", ",".join(inputs), "--output_roots", ",".join(map(str, roots)),
         "--dataset", "ds", "--max_bad_fraction", "0.5", "--run_config", run_config,
         "--format", "parquet", *extra])


def snapshot(roots) -> dict:
    return {p: open(p, "rb").read() for r in roots
            for p in sorted(glob.glob(os.path.join(str(r), "ds", "*")))
            if os.path.basename(p).startswith(("shard-", "manifest"))}


def as_stored(line: bytes) -> dict:
    """A kept JSON line as a Parquet store returns it: id, text, then n (null if absent)."""
    record = orjson.loads(line)
    return {"id": record["id"], "text": record["text"], "n": record.get("n")}


@pytest.mark.parametrize("mode", [[], ["--no_near_dedup"]], ids=["exact+near", "exact_only"])
def test_parquet_store_reads_back_verifies_and_reruns_identically(tmp_path, run_config,
                                                                  make_pipeline, capsys, mode):
    corpus = write_small_corpus(tmp_path / "in")
    roots = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    run_job(run_config, corpus, roots, "--replication", "2", "--num_shards", "2", *mode)
    store = str(roots[0] / "ds")
    manifest = load_manifest(store)
    assert manifest["shard_format"] == "parquet"
    assert manifest["codec"] == {"name": "parquet", "compression": "zstd",
                                 "compression_level": 3}
    assert [c["name"] for c in manifest["parquet"]["columns"]] == ["id", "text", "n"]
    expected = sorted((as_stored(x) for x in expected_kept(corpus[0]).values()),
                      key=lambda r: r["id"])
    names = [s["name"] for s in manifest["shards"]]
    assert all(n.endswith(".parquet") for n in names) and len(names) == 2
    rows = []
    for shard in manifest["shards"]:
        path = os.path.join(replica_roots(manifest, shard)[0], "ds", shard["name"])
        table = pq.read_table(path)
        assert table.num_rows == shard["records"]
        ids = table.column("id").to_pylist()
        assert ids == sorted(ids), "rows inside a shard are sorted by id"
        rows += table.to_pylist()
    assert sorted(rows, key=lambda r: r["id"]) == expected

    with make_pipeline() as p:
        assert_that(p | ReadStore(store), equal_to(expected))
    before = snapshot(roots)
    run_job(run_config, corpus, roots, "--replication", "2", "--num_shards", "2", *mode)
    assert snapshot(roots) == before, "a rerun is byte-identical"

    # a missing and a corrupt replica: read through the other one; verify says which
    s0, s1 = manifest["shards"]
    os.remove(os.path.join(replica_roots(manifest, s0)[0], "ds", s0["name"]))
    broken = os.path.join(replica_roots(manifest, s1)[1], "ds", s1["name"])
    data = bytearray(open(broken, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(broken, "wb").write(bytes(data))
    with make_pipeline() as p:
        assert_that(p | "Again" >> ReadStore(store), equal_to(expected))
    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", store])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "missing" in out and "corrupt" in out
    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", store, "--repair"])
    assert exit_info.value.code == 0
    assert snapshot(roots) == before


def test_format_parquet_refuses_a_codec(tmp_path, run_config):
    corpus = write_small_corpus(tmp_path / "in")
    with pytest.raises(SystemExit):
        run_job(run_config, corpus, [tmp_path / "a"], "--codec", "gzip")


def _tree(root) -> dict:
    """Shards and manifest under a root (audit files aside), by relative path."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if "_audit" not in path and name.startswith(("shard-", "manifest")):
                out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


@pytest.mark.cross_runner
@pytest.mark.parametrize("direction", ["parquet_in", "parquet_out"])
def test_parquet_stores_are_byte_identical_to_the_direct_runner(run_config, tmp_path,
                                                                monkeypatch, direction):
    """Parquet in (split into units of row groups, near-dedup on) -> JSONL store, and
    JSON Lines in -> Parquet store: the same bytes as the DirectRunner's."""
    import pyarrow as pa
    from transforms.processing import parquet as parquet_input
    monkeypatch.setattr(parquet_input, "SPLIT_BYTES", 1)   # every row group a unit
    rows = [{"id": f"r{i:05d}",
             "text": " ".join(f"w{(i * j * 7919) % 5003}" for j in range(20 + i % 60)),
             "score": i / 7, "tags": [f"t{i % 3}"], "meta": {"k": i % 5}}
            for i in range(2000)]
    rows[17]["text"] = None
    os.makedirs(tmp_path / "in")
    if direction == "parquet_in":
        source = str(tmp_path / "in" / "x.parquet")
        pq.write_table(pa.Table.from_pylist(rows), source, row_group_size=150)
        flags = ("--format", "jsonl")
    else:
        source = str(tmp_path / "in" / "x.jsonl")
        with open(source, "wb") as f:
            f.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        flags = ("--format", "parquet", "--no_near_dedup")
    roots = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    snapshots = []
    for config in ("direct", run_config):
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
        prepare_corpus.run(["--run_config", config, "--input", source, "--output_roots",
                            ",".join(map(str, roots)), "--dataset", "ds", "--replication", "2",
                            "--target_shard_bytes", "100k", "--max_bad_fraction", "0.01",
                            *flags])
        snapshots.append({str(r): _tree(r) for r in roots})
    assert snapshots[1] == snapshots[0]
    manifest = load_manifest(str(roots[0] / "ds"))
    assert manifest["num_shards"] > 3 and 100 < manifest["records"] < 2000


@pytest.mark.parametrize("values, kind", [
    ([2 ** 53 + 1, 0.5], "json"),          # no float64 holds 2**53+1: not a float column
    ([-(2 ** 60), 1], "wide_int"),         # an int64 column, every value exact
    ([2 ** 53, 0.5], "float"),             # 2**53 is exact in a float64
    ([[2 ** 62], [1.5]], ("list", "json")),
])
def test_ints_beyond_2_53_never_become_floats(values, kind):
    """The fault hypothesis found: an int above 2**53 in a column that also holds a
    float made pyarrow refuse the shard (ArrowInvalid); widening would change it."""
    records = [{"id": str(i), "text": "t", "a": v} for i, v in enumerate(values)]
    lines = [json.dumps(r).encode() for r in records]
    schema = ps.store_schema(ps.run_schema(lines), ("id", "text"))
    inferred = {c["name"]: ps._untuple(c["type"]) for c in schema["inferred"]}
    assert inferred["a"] == kind
    stored = ps.shard_bytes(lines, schema, sum(map(len, lines)))
    back = [json.loads(x) for x in ps.shard_lines(stored, schema["json_columns"]).splitlines()]
    if kind != "float":
        assert back == records and [type(r["a"]) for r in back] == [type(v) for v in values]
