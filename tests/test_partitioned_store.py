"""prepare_corpus with --partition_by / --range_by / --placement, and reading partitions back."""
import hashlib
import os
import shutil
from collections import Counter

import orjson
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipelines import prepare_corpus
from transforms.core.partition_names import MISSING, OTHER, encode_value
from transforms.storage.store import (
    MANIFEST, ReadStore, StoreError, load_manifest, manifest_bytes, partition_for,
    read_shard_verified,
    replica_roots, select_shards, verify_store)

HOSTILE = ["../../x", "/etc/passwd", "a\x00b", "y" * 10_000, "Zh", "zh", "caf\u00e9",
           "cafe\u0301", "CON", "web"]


def write_input(path, rows):
    with open(path, "wb") as f:
        for row in rows:
            f.write(orjson.dumps(row) + b"\n")
    return str(path)


def hostile_rows():
    rows = []
    for i in range(120):
        row = {"id": f"doc-{i:04d}", "text": f"document {i} " + "word " * (i % 37 + 3)}
        if i % 12 != 11:
            row["source"] = HOSTILE[i % len(HOSTILE)]
        elif i % 24 == 11:
            row["source"] = None
        rows.append(row)
    return rows


def run(run_config, tmp_path, input_path, *flags, roots="a,b,c"):
    root_uris = [str(tmp_path / r.split("=")[0]) for r in roots.split(",")]
    weighted = ",".join(str(tmp_path / r) for r in roots.split(","))
    report = prepare_corpus.run([
        "--run_config", run_config, "--input", input_path, "--output_roots", weighted,
        "--max_bad_fraction", "0", *flags])
    return report, root_uris


def files_under(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if name not in ("run_report.json", "run_report.html"):
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_partition_by_hostile_field_values(run_config, make_pipeline, tmp_path):
    rows = hostile_rows()
    src = write_input(tmp_path / "in.jsonl", rows)
    report, roots = run(run_config, tmp_path, src, "--partition_by", "source",
                        "--target_shard_bytes", "600", "--replication", "2")
    store = os.path.join(roots[0], "corpus")
    manifest = load_manifest(store)

    # Every file is confined under its root's dataset folder, one level of partitions.
    for root in roots:
        real_root = os.path.realpath(os.path.join(root, "corpus"))
        for dirpath, dirs, names in os.walk(real_root):
            assert os.path.realpath(dirpath).startswith(real_root)
            assert os.path.relpath(dirpath, real_root).count(os.sep) == 0
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path.parent / "x")

    # Partitions: one per distinct value, names from the encoding, counts exact.
    expected = Counter(encode_value(r.get("source")) for r in rows)
    parts = {p["name"]: p for p in manifest["partitions"]}
    assert {n: p["records"] for n, p in parts.items()} == dict(expected)
    for name, part in parts.items():
        if name != MISSING:
            assert encode_value(part["value"]) == name
    assert parts["zh"]["value"] == "zh" and parts["_5ah"]["value"] == "Zh"
    assert manifest["partitioning"] == {"scheme": "field", "field": "source",
                                        "max_partitions": 256, "missing": MISSING,
                                        "overflow": OTHER}
    assert sum(p["num_shards"] for p in parts.values()) == manifest["num_shards"]
    assert {row["partition"]: row["records"] for row in report["partitions"]} == dict(expected)
    assert report["counters"][f"partition/records.{encode_value('zh')}"] == expected["zh"]

    # Every replica verifies; each partition reads back exactly its records.
    assert all(r["status"] == "ok" for r in verify_store(store))
    for value in ["../../x", "y" * 10_000, "cafe\u0301", None]:
        name = encode_value(value)
        want = [r for r in rows if r.get("source") == value]
        with make_pipeline() as p:
            got = p | f"Read{name[:10]}" >> ReadStore(store, partitions=[name])
            assert_that(got, equal_to(want))


def test_partitioned_rerun_is_byte_identical(run_config, tmp_path):
    src = write_input(tmp_path / "in.jsonl", hostile_rows())
    flags = ("--partition_by", "source", "--target_shard_bytes", "800")
    _, roots = run(run_config, tmp_path, src, *flags)
    first = {r: files_under(r) for r in roots}
    run(run_config, tmp_path, src, *flags)
    assert {r: files_under(r) for r in roots} == first
    assert any("/" in name for name in first[roots[0]])


def test_max_partitions_overflow_goes_to_other(run_config, tmp_path):
    rows = [{"id": f"d{i:03d}", "text": f"t {i}", "lang": lang}
            for i, lang in enumerate(["en"] * 6 + ["zh"] * 4 + ["fr", "de", "ja"])]
    src = write_input(tmp_path / "in.jsonl", rows)
    _, roots = run(run_config, tmp_path, src, "--partition_by", "lang", "--max_partitions", "3")
    manifest = load_manifest(os.path.join(roots[0], "corpus"))
    assert [(p["name"], p["records"]) for p in manifest["partitions"]] == \
        [(OTHER, 3), ("en", 6), ("zh", 4)]
    assert next(p for p in manifest["partitions"] if p["name"] == OTHER)["values"] == 3


def test_range_by_length_orders_shards_by_length(run_config, tmp_path):
    rows = [{"id": f"d{i:03d}", "text": "z" * ((i * 53) % 400 + 1)} for i in range(200)]
    src = write_input(tmp_path / "in.jsonl", rows)
    _, roots = run(run_config, tmp_path, src, "--range_by", "length", "--num_ranges", "4",
                   "--target_shard_bytes", "4k")
    store = os.path.join(roots[0], "corpus")
    manifest = load_manifest(store)
    assert manifest["partitioning"]["scheme"] == "range"
    assert manifest["partitioning"]["key"] == "length"
    bounds = manifest["partitioning"]["boundaries"]
    assert len(bounds) == 3 and bounds == sorted(bounds)
    lengths = []
    for part in manifest["partitions"]:
        for shard in sorted(select_shards(manifest, [part["name"]]), key=lambda s: s["index"]):
            raw = read_shard_verified(manifest, store, shard)
            for line in raw.splitlines():
                length = len(orjson.loads(line)["text"])
                lower, upper = part["lower"], part["upper"]
                assert (lower is None or length >= lower) and (upper is None or length < upper)
                lengths.append(length)
    assert lengths == sorted(lengths) and len(lengths) == 200
    counts = [p["records"] for p in manifest["partitions"]]
    assert max(counts) - min(counts) <= 10  # about equal counts


def test_placement_pins_partitions_to_roots(run_config, tmp_path):
    rows = [{"id": f"d{i:03d}", "text": f"text {i}", "lang": ["zh", "en"][i % 2]}
            for i in range(80)]
    src = write_input(tmp_path / "in.jsonl", rows)
    r = {n: str(tmp_path / n) for n in ("asia1", "asia2", "a", "b")}
    _, roots = run(run_config, tmp_path, src, "--partition_by", "lang",
                   "--target_shard_bytes", "300", "--replication", "2",
                   "--placement", f"lang=zh:{r['asia1']},{r['asia2']};*:{r['a']},{r['b']}",
                   roots="asia1=2,asia2,a,b")
    manifest = load_manifest(os.path.join(roots[0], "corpus"))
    assert manifest["placement"] == [
        {"match": "lang=zh", "roots": [r["asia1"], r["asia2"]]},
        {"match": "*", "roots": [r["a"], r["b"]]}]
    for shard in manifest["shards"]:
        pinned = {r["asia1"], r["asia2"]} if shard["partition"] == "zh" else {r["a"], r["b"]}
        assert set(replica_roots(manifest, shard)) == pinned
    # the manifest is on every root (each copy naming its root), so any root opens the store
    for index, root in enumerate(roots):
        with open(os.path.join(root, "corpus", MANIFEST), "rb") as f:
            assert f.read() == manifest_bytes({**manifest, "root_index": index})


@pytest.mark.parametrize("placement,message", [
    ("lang=zh:{a};*:{a},{b}", "fewer than the replication factor 2"),
    ("lang=zh:{a},/nowhere", "not in --output_roots"),
])
def test_placement_errors_stop_before_running(run_config, tmp_path, capsys, placement, message):
    src = write_input(tmp_path / "in.jsonl", [{"id": "1", "text": "x", "lang": "zh"}])
    spec = placement.format(a=tmp_path / "a", b=tmp_path / "b")
    with pytest.raises(SystemExit):
        run(run_config, tmp_path, src, "--partition_by", "lang", "--replication", "2",
            "--placement", spec, roots="a,b")
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_unpartitioned_manifest_keeps_its_format(run_config, tmp_path):
    src = write_input(tmp_path / "in.jsonl", hostile_rows())
    _, roots = run(run_config, tmp_path, src, "--target_shard_bytes", "1k")
    manifest = load_manifest(os.path.join(roots[0], "corpus"))
    assert set(manifest) == {
        "format", "format_version", "dataset", "roots", "replication", "codec", "num_shards",
        "records", "raw_bytes", "stored_bytes", "checksum_algorithm", "shards", "kind",
        "id_field", "text_field", "sorted_by", "generation", "previous", "digest",
        "root_index", "inputs"}  # inputs: lineage (issue 12)
    assert all(set(s) == {"name", "index", "records", "raw_bytes", "stored_bytes", "checksum",
                          "replicas"} for s in manifest["shards"])
    assert all("/" not in s["name"] for s in manifest["shards"])
    largest = max(len(orjson.dumps(r)) + 1 for r in hostile_rows())
    assert all(0 < s["raw_bytes"] <= 1024 + largest for s in manifest["shards"])


def test_load_manifest_rejects_paths_outside_the_store(tmp_path):
    store = tmp_path / "root" / "corpus"
    store.mkdir(parents=True)
    for bad in ["../../etc/passwd", "/abs/shard", "a/b/c", "..", "x/../y", "A/shard"]:
        manifest = {"format": "beam-dataprep-store", "format_version": 1,
                    "shards": [{"name": bad}]}
        (store / MANIFEST).write_bytes(manifest_bytes(manifest))
        with pytest.raises(StoreError, match="unsafe shard path"):
            load_manifest(str(store))


def test_read_store_rejects_unknown_partition(run_config, tmp_path):
    src = write_input(tmp_path / "in.jsonl", hostile_rows())
    _, roots = run(run_config, tmp_path, src, "--partition_by", "source")
    with pytest.raises(StoreError, match="no partition"):
        ReadStore(os.path.join(roots[0], "corpus"), partitions=["nope"])


def test_partition_for_finds_a_partition_from_the_manifest_alone():
    field = {"partitioning": {"scheme": "field"},
             "partitions": [{"name": n} for n in ["zh", "_5ah", MISSING, OTHER]]}
    assert partition_for(field, "zh") == "zh"
    assert partition_for(field, "Zh") == "_5ah"
    assert partition_for(field, None) == MISSING
    assert partition_for(field, "rare") == OTHER
    ranged = {"partitioning": {"scheme": "range", "boundaries": [10, 20]},
              "partitions": [{"name": f"range-0000{i}"} for i in range(3)]}
    assert [partition_for(ranged, k) for k in (0, 10, 19, 20, 99)] == \
        ["range-00000", "range-00001", "range-00001", "range-00002", "range-00002"]
    with pytest.raises(StoreError, match="no partition holds"):
        partition_for(ranged, None)
    with pytest.raises(StoreError, match="not partitioned"):
        partition_for({"shards": []}, "x")


def test_max_partitions_zero_means_no_cap(run_config, tmp_path):
    rows = [{"id": f"d{i:03d}", "text": f"t {i}", "lang": lang}
            for i, lang in enumerate(["en"] * 6 + ["zh"] * 4 + ["fr", "de", "ja"])]
    src = write_input(tmp_path / "in.jsonl", rows)
    _, roots = run(run_config, tmp_path, src, "--partition_by", "lang", "--max_partitions", "0")
    manifest = load_manifest(os.path.join(roots[0], "corpus"))
    assert [(p["name"], p["records"]) for p in manifest["partitions"]] == \
        [("de", 1), ("en", 6), ("fr", 1), ("ja", 1), ("zh", 4)]
    assert manifest["partitioning"]["max_partitions"] is None


@pytest.mark.standalone_cluster
@pytest.mark.cross_runner
@pytest.mark.parametrize("flags", [
    ("--partition_by", "source", "--target_shard_bytes", "700"),
    ("--range_by", "length", "--num_ranges", "3", "--target_shard_bytes", "20k"),
])
def test_partitioned_store_is_byte_identical_to_the_direct_runner(run_config, tmp_path, flags):
    rows = hostile_rows() + [{"id": f"r{i:05d}", "text": "w " * ((i * 7919) % 700 + 1),
                              "source": ["web", "books"][i % 2]} for i in range(3000)]
    src = write_input(tmp_path / "in.jsonl", rows)
    snapshots = []
    for config in ("direct", run_config):
        for name in "abc":
            shutil.rmtree(tmp_path / name, ignore_errors=True)
        _, roots = run(config, tmp_path, src, "--replication", "2", *flags)
        snapshots.append({r: files_under(r) for r in roots})
    assert snapshots[1] == snapshots[0]
    assert sum(len(files) for files in snapshots[0].values()) > 10
