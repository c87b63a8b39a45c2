"""prepare_corpus end to end on the configured runner, and the store it writes."""
import glob
import os

import orjson
import pytest
import zstandard
from apache_beam.testing.util import assert_that, equal_to

from pipelines import prepare_corpus, verify_store
from tests.corpora import EXPECTED_REMOVED, expected_dead, expected_kept, write_small_corpus
from transforms.storage.sharding import hash_order
from transforms.storage.store import ReadStore, load_manifest, replica_roots


# Both modes move refs (transforms.processing.refs); with near-dedup (the default) they also
# carry signatures.  Both must store the same (the small corpus has no near-duplicates).
DEDUP_MODES = pytest.mark.parametrize("mode", [[], ["--no_near_dedup"]],
                                      ids=["exact+near", "exact_only"])


def run_job(run_config, inputs, roots, *extra):
    argv = ["--input", ",".join(inputs), "--output_roots", ",".join(map(str, roots)),
            "--dataset", "ds", "--max_bad_fraction", "0.5", "--run_config", run_config, *extra]
    return prepare_corpus.run(argv)


def read_zst_lines(path) -> list[bytes]:
    with open(path, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read().splitlines()


def snapshot(roots) -> dict[str, bytes]:
    """Bytes of every shard and manifest under the roots (run report excluded)."""
    files = {}
    for root in roots:
        for path in sorted(glob.glob(os.path.join(str(root), "ds", "*"))):
            if os.path.basename(path).startswith(("shard-", "manifest")):
                files[path] = open(path, "rb").read()
    return files


@pytest.fixture
def corpus(tmp_path):
    return write_small_corpus(tmp_path / "in")


@DEDUP_MODES
def test_store_holds_exactly_the_kept_records(tmp_path, corpus, run_config, mode):
    roots = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    report = run_job(run_config, corpus, roots, "--replication", "2", "--num_shards", "3",
                     "--write_removed", *mode)
    manifest = load_manifest(str(roots[0] / "ds"))
    kept = expected_kept(corpus[0])
    stored, key_ranges = {}, []
    for shard in sorted(manifest["shards"], key=lambda s: s["index"]):
        assert len(shard["replicas"]) == 2
        copies = [read_zst_lines(os.path.join(r, "ds", shard["name"]))
                  for r in replica_roots(manifest, shard)]
        assert copies[0] == copies[1]
        ids = [orjson.loads(line)["id"] for line in copies[0]]
        assert ids == sorted(ids), "records inside a shard are sorted by id"
        keys = sorted(hash_order(i) + (i,) for i in ids)
        key_ranges += [(keys[0], keys[-1])] if keys else []
        assert shard["records"] == len(ids)
        stored.update(zip(ids, copies[0]))
    assert stored == kept
    # size-balanced shards are consecutive ranges of the id-hash order
    assert all(a[1] < b[0] for a, b in zip(key_ranges, key_ranges[1:]))
    assert manifest["records"] == 5 and manifest["num_shards"] == 3
    assert manifest["roots"] == [str(r) for r in roots]

    counters = report["counters"]
    assert counters["read/records"] == 8
    assert counters["read/lines"] == 13
    assert {k: v for k, v in counters.items() if k.startswith("read/bad.")} == {
        "read/bad.invalid_json": 1, "read/bad.not_an_object": 1,
        "read/bad.text_not_string": 1, "read/bad.missing_text": 1}
    assert counters["dedup/duplicates_removed"] == 3
    assert counters["dedup/kept"] == 5
    assert counters["store/shards"] == 3 and counters["store/replicas_written"] == 6
    for root in roots:
        report_path = root / "ds" / "_audit" / "run_report.json"
        assert orjson.loads(report_path.read_bytes())["counters"] == counters
    # audit outputs live apart from the data: the data globs match shards only
    for root in roots:
        data = glob.glob(str(root / "ds" / "*.jsonl.zst"))
        assert sorted(data) == sorted(glob.glob(str(root / "ds" / "shard-*")))
        assert {os.path.basename(p) for p in data} == {
            s["name"] for s in manifest["shards"] if str(root) in replica_roots(manifest, s)}

    dead = [orjson.loads(line)
            for path in glob.glob(str(roots[0] / "ds" / "_audit" / "dead_letters*"))
            for line in read_zst_lines(path)]
    assert {(d["file"], d["line"], d["reason"]) for d in dead} == expected_dead(*corpus)
    removed = [orjson.loads(line)
               for path in glob.glob(str(roots[0] / "ds" / "_audit" / "removed*"))
               for line in read_zst_lines(path)]
    assert {(r["removed"], r["kept"]) for r in removed} == EXPECTED_REMOVED


@DEDUP_MODES
def test_rerun_is_byte_identical(tmp_path, corpus, run_config, mode):
    roots = [tmp_path / "a", tmp_path / "b"]
    run_job(run_config, corpus, roots, "--num_shards", "2", *mode)
    first = snapshot(roots)
    assert len(first) == 6  # 2 shards x 2 replicas + 2 manifests
    run_job(run_config, corpus, roots, "--num_shards", "2", *mode)
    assert snapshot(roots) == first


@DEDUP_MODES
def test_shard_count_from_target_size(tmp_path, corpus, run_config, mode):
    roots = [tmp_path / "a"]
    run_job(run_config, corpus, roots, "--target_shard_bytes", "100", *mode)
    manifest = load_manifest(str(roots[0] / "ds"))
    kept = expected_kept(corpus[0])
    raw = sum(len(line) + 1 for line in kept.values())
    # Shard j of n = ceil(raw / 100) holds the records whose byte midpoint (in the
    # id-hash order) falls in [j*raw/n, (j+1)*raw/n); shards left empty by a record
    # longer than raw/n are dropped.  (The no-id record's length follows tmp_path.)
    n, before, used = -(-raw // 100), 0, set()
    for _, size in sorted((hash_order(i) + (i,), len(line) + 1) for i, line in kept.items()):
        used.add(int((before + size / 2) // (raw / n)))
        before += size
    assert manifest["num_shards"] == len(used)
    assert manifest["raw_bytes"] == raw
    assert manifest["replication"] == 1


@DEDUP_MODES
def test_fixed_shard_count_above_the_records_writes_empty_shards(tmp_path, corpus, run_config,
                                                                 mode):
    roots = [tmp_path / "a"]
    run_job(run_config, corpus, roots, "--num_shards", "8", *mode)
    manifest = load_manifest(str(roots[0] / "ds"))
    assert [s["index"] for s in manifest["shards"]] == list(range(8))
    assert sum(s["records"] for s in manifest["shards"]) == 5
    assert any(s["records"] == 0 for s in manifest["shards"])
    for shard in manifest["shards"]:
        assert len(read_zst_lines(str(roots[0] / "ds" / shard["name"]))) == shard["records"]


def test_spilled_runs_are_removed_and_stale_ones_from_a_failed_run_too(tmp_path, corpus,
                                                                     run_config):
    roots = [tmp_path / "a", tmp_path / "b"]
    stale = roots[0] / "ds" / ".runs-0123"
    stale.mkdir(parents=True)
    (stale / "file00000-run0-shard00000.jsonl").write_bytes(b"{}")
    run_job(run_config, corpus, roots, "--replication", "2", "--no_near_dedup")
    manifest = load_manifest(str(roots[0] / "ds"))
    for root in roots:
        names = sorted(os.listdir(root / "ds"))
        assert names == ["_audit", "manifest.json", manifest["shards"][0]["name"]]
        assert manifest["shards"][0]["name"].startswith("shard-00000-of-00001-")
        audit = sorted(os.listdir(root / "ds" / "_audit"))
        # the runner picks how many files the dead letters go to (2 on Spark/Flink here);
        # inputs-*: the lineage audit (file digests), beside them
        dead = [n for n in audit if n.startswith("dead_letters-")]
        lineage = [n for n in audit if n.startswith("inputs-")]
        assert bool(dead) == bool(lineage) == (root == roots[0])
        assert sorted(set(audit) - set(dead) - set(lineage)) == ["run_report.html", "run_report.json"]


def break_replicas(roots, manifest):
    """Delete one replica of shard 0 and corrupt one of shard 1; returns what was broken."""
    s0, s1 = manifest["shards"][0], manifest["shards"][1]
    missing = os.path.join(replica_roots(manifest, s0)[0], "ds", s0["name"])
    os.remove(missing)
    corrupt = os.path.join(replica_roots(manifest, s1)[1], "ds", s1["name"])
    data = bytearray(open(corrupt, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(corrupt, "wb").write(bytes(data))
    return missing, corrupt


@pytest.mark.standalone_cluster
@pytest.mark.cross_runner
def test_read_back_fails_over_and_verify_reports(tmp_path, corpus, run_config, make_pipeline,
                                                capsys):
    roots = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    run_job(run_config, corpus, roots, "--replication", "2", "--num_shards", "2")
    store = str(roots[0] / "ds")
    manifest = load_manifest(store)
    missing, corrupt = break_replicas(roots, manifest)

    with make_pipeline() as p:
        lines = p | ReadStore(store, parse=False)
        assert_that(lines, equal_to(list(expected_kept(corpus[0]).values())))

    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", store])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    statuses = {line.split()[0] + "@" + line.split()[1]: line.split()[2]
                for line in out.splitlines() if line.startswith(("shard-", "manifest"))}
    s0, s1 = manifest["shards"][0], manifest["shards"][1]
    r0, r1 = replica_roots(manifest, s0), replica_roots(manifest, s1)
    assert statuses == {
        "manifest.json@" + str(roots[0]): "ok", "manifest.json@" + str(roots[1]): "ok",
        "manifest.json@" + str(roots[2]): "ok",
        f"{s0['name']}@{r0[0]}": "missing", f"{s0['name']}@{r0[1]}": "ok",
        f"{s1['name']}@{r1[0]}": "ok", f"{s1['name']}@{r1[1]}": "corrupt",
    }

    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", store, "--repair"])
    assert exit_info.value.code == 0
    assert snapshot(roots)[missing] == open(
        os.path.join(r0[1], "ds", s0["name"]), "rb").read()


def test_all_replicas_bad_is_an_error_naming_the_shard(tmp_path, corpus, run_config,
                                                       make_pipeline):
    roots = [tmp_path / "a", tmp_path / "b"]
    run_job(run_config, corpus, roots, "--num_shards", "2")
    store = str(roots[0] / "ds")
    shard = load_manifest(store)["shards"][1]
    for root in roots:
        os.remove(root / "ds" / shard["name"])
    with pytest.raises(Exception, match=shard["name"]):
        with make_pipeline() as p:
            p | ReadStore(store)


@DEDUP_MODES
def test_too_many_bad_lines_fails_without_manifest(tmp_path, corpus, run_config, mode):
    roots = [tmp_path / "a"]
    argv = ["--input", ",".join(corpus), "--output_roots", str(roots[0]), "--dataset", "ds",
            "--run_config", run_config, "--max_bad_fraction", "0.2", *mode]
    with pytest.raises(Exception, match=r"4 of 12 lines are bad .*--max_bad_fraction 0.2"):
        prepare_corpus.run(argv)
    assert not (roots[0] / "ds" / "manifest.json").exists()


@DEDUP_MODES
def test_duplicate_ids_with_distinct_texts_fail_with_examples(tmp_path, run_config, mode):
    path = tmp_path / "conflict.jsonl"
    path.write_bytes(b'{"id": "x1", "text": "alpha"}\n{"id": "x1", "text": "beta"}\n'
                     b'{"id": "x2", "text": "gamma"}\n{"id": "x2", "text": "GAMMA"}\n')
    with pytest.raises(Exception, match=r"1 'id' value\(s\) name more than one distinct text, "
                                        r'e.g. "x1"; give every document a unique id'):
        prepare_corpus.run(["--input", str(path), "--output_roots", str(tmp_path / "a"),
                            "--run_config", run_config, *mode])
    assert not (tmp_path / "a" / "corpus" / "manifest.json").exists()


def test_replication_above_root_count_fails_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepare_corpus.run(["--output_roots", f"{tmp_path / 'a'},{tmp_path / 'b'}",
                            "--replication", "3"])
    assert "--replication 3 is more than the 2 root(s)" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_default_run_uses_bundled_sample(tmp_path, run_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = prepare_corpus.run(["--run_config", run_config])
    manifest = load_manifest(str(tmp_path / "out" / "a" / "corpus"))
    counters = report["counters"]
    assert manifest["records"] == counters["near_dedup/kept"] > 0
    assert counters["near_dedup/kept"] + counters["near_dedup/near_duplicates_removed"] == \
        counters["dedup/kept"]
    assert counters["dedup/duplicates_removed"] > 0
    assert counters["near_dedup/near_duplicates_removed"] > 0  # the sample plants some
    assert sum(v for k, v in report["counters"].items() if k.startswith("read/bad.")) > 0
    # the copies differ only in root_index (which root they live on)
    copies = [orjson.loads((tmp_path / "out" / r / "corpus" / "manifest.json").read_bytes())
              for r in "ab"]
    assert [c.pop("root_index") for c in copies] == [0, 1]
    assert copies[0] == copies[1]
