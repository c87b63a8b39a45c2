"""Stores on object storage: s3:// roots against a real S3 server (SeaweedFS, tests/s3_server.py).

Beam's S3 filesystem (boto3) talks to the server through the S3Options flags
(`--s3_endpoint_url`, keys, region) that a user gives on the command line or
in a run config; the jobs pass them to FileSystems before touching storage, and
the runner passes them to its workers.  Each test checks the bytes and records
through the S3 API itself (boto3), not through our own reader.

Every store test runs with roots on two S3 buckets and with one S3 and one local
root (``LAYOUTS``): a crash between commit steps (``$DATAPREP_KILL_AT=N@manifest.json``
kills the job before the Nth manifest copy) leaves the committed generation intact
and readable and a rerun commits the next; a failed run changes no byte; writers
racing for the lock or for the commit: one wins (S3 conditional writes).
"""
import json
import os
import platform
import re
import subprocess
import sys
import threading

import apache_beam as beam
import pytest
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import prepare_corpus, verify_store
from pipelines import run_config as run_configs
from tests import store_faults as sf
from tests.corpora import expected_kept, write_small_corpus
from tests import test_spill_runs as spill_tests   # the module, so pytest collects its tests once
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from transforms.processing.runner_guards import keep_direct_runner_local
from transforms.storage import commit, spill
from transforms.storage import store as store_module
from transforms.storage.store import ReadStore, read_manifest_copy

# Runs on direct and on the full-suite portable runner (prism in CI), not on every
# runner: no test here is `cross_runner` (each starts several store jobs; the suite
# takes about 4 min on direct, BENCHMARKS.md "CI from an empty HOME").  The tests
# without a runner fixture (lock, compare-and-swap, kill points) run on direct only.
BUCKETS = ["bucket-a", "bucket-b"]


@pytest.fixture(scope="module")
def s3():
    with S3Server(BUCKETS) as server:
        yield server


@pytest.fixture
def prefix(request):
    """A fresh key prefix per test, so tests share the server without seeing each other."""
    return f"{request.node.name.replace('[', '-').replace(']', '')}-{os.getpid()}"


def objects(s3, bucket, prefix) -> dict[str, bytes]:
    client = s3.client()
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def data_objects(found: dict[str, bytes]) -> dict[str, bytes]:
    """Shards and manifests by name (run report and audit outputs left out)."""
    return {key.rsplit("/", 1)[-1]: data for key, data in found.items()
            if key.rsplit("/", 1)[-1].startswith(("shard-", "manifest"))}


def stored_lines(shards: dict[str, bytes]) -> list[bytes]:
    lines = []
    for name, data in sorted(shards.items()):
        if name.startswith("shard-"):
            lines += zstandard.ZstdDecompressor().stream_reader(data).read().splitlines()
    return lines


def run(run_config, s3, inputs, roots, *extra):
    return prepare_corpus.run(["--input", ",".join(inputs), "--output_roots", ",".join(roots),
                               "--dataset", "ds", "--max_bad_fraction", "0.5", "--num_shards", "3",
                               "--run_config", run_config, *s3.beam_flags, *extra])


def test_a_store_on_two_s3_roots_is_complete_verified_and_rerun_identically(
        tmp_path, s3, prefix, run_config, capsys):
    inputs = write_small_corpus(tmp_path / "in")
    roots = [f"s3://{bucket}/{prefix}" for bucket in BUCKETS]
    run(run_config, s3, inputs, roots)
    first = {b: data_objects(objects(s3, b, prefix)) for b in BUCKETS}
    # R=2 of N=2: every shard and the manifest on both buckets, byte for byte.
    names = sorted(first["bucket-a"])
    assert names[0] == "manifest.json" and len(names) == 4
    assert [re.fullmatch(r"shard-(\d{5})-of-00003-[0-9a-f]{16}\.jsonl\.zst", n).group(1)
            for n in names[1:]] == ["00000", "00001", "00002"]
    shards = {b: {n: d for n, d in first[b].items() if n.startswith("shard-")} for b in BUCKETS}
    assert shards["bucket-a"] == shards["bucket-b"]
    # The manifest copies differ only in which root they sit on (relocatable stores).
    copies = [json.loads(first[b]["manifest.json"]) for b in BUCKETS]
    assert [c.pop("root_index") for c in copies] == [0, 1]
    assert copies[0] == copies[1]
    assert sorted(stored_lines(first["bucket-a"])) == sorted(expected_kept(inputs[0]).values())
    # The same job into local roots stores the same shard bytes.
    local = [str(tmp_path / "a"), str(tmp_path / "b")]
    run(run_config, s3, inputs, local)
    for name, data in first["bucket-a"].items():
        if name.startswith("shard-"):
            with open(os.path.join(local[0], "ds", name), "rb") as f:
                assert f.read() == data, name
    # verify_store reads the S3 store with the same flags; a rerun changes no byte.
    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", f"{roots[0]}/ds", *s3.beam_flags])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().endswith("0 problem(s)")
    run(run_config, s3, inputs, roots)
    assert {b: data_objects(objects(s3, b, prefix)) for b in BUCKETS} == first


LAYOUTS = ["two_s3", "s3_and_local"]


def layout_roots(layout, prefix, tmp_path) -> list[str]:
    if layout == "two_s3":
        return [f"s3://{bucket}/{prefix}" for bucket in BUCKETS]
    return [f"s3://bucket-a/{prefix}", str(tmp_path / "local")]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_read_back_fails_over_and_repair_restores_an_s3_replica(
        tmp_path, s3, prefix, run_config, beam_flags, capsys, layout):
    inputs = write_small_corpus(tmp_path / "in")
    roots = layout_roots(layout, prefix, tmp_path)
    run(run_config, s3, inputs, roots)
    store = f"{roots[0]}/ds"
    client = s3.client()
    keys = sorted(k for k in objects(s3, "bucket-a", prefix) if "/shard-" in k)
    assert len(keys) == 3
    FileSystems.set_options(PipelineOptions(s3.beam_flags))
    good = snapshot(s3, roots, prefix)
    client.delete_object(Bucket="bucket-a", Key=keys[0])  # a lost replica
    body = bytearray(client.get_object(Bucket="bucket-a", Key=keys[1])["Body"].read())
    body[len(body) // 2] ^= 0x01  # one flipped bit
    client.put_object(Bucket="bucket-a", Key=keys[1], Body=bytes(body))

    expected = sorted(expected_kept(inputs[0]))
    # The runner's workers read S3 too: the S3 flags go with the pipeline's options.
    pipeline = BeamTestPipeline(options=PipelineOptions(beam_flags + s3.beam_flags), blocking=True)
    keep_direct_runner_local(pipeline)   # as the jobs do (runner_guards)
    ids = pipeline | ReadStore(store) | "Ids" >> beam.Map(lambda d: d["id"])
    assert_that(ids, equal_to(expected))
    pipeline.run()

    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", store, *s3.beam_flags])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out
    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", store, "--repair", *s3.beam_flags])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().endswith("0 problem(s)")
    # Every replica and manifest copy byte-identical to before the damage.
    assert snapshot(s3, roots, prefix) == good


# ---------------------------------------------------------------- crashes, failed runs, lock, CAS

def snapshot(s3, roots, prefix) -> dict[str, bytes]:
    """Every object / file of the dataset on every root, outside ``_audit/`` -> bytes."""
    found = {}
    for index, root in enumerate(roots):
        if root.startswith("s3://"):
            bucket = root[len("s3://"):].split("/", 1)[0]
            for key, data in objects(s3, bucket, prefix).items():
                if "/_audit/" not in key:
                    found[f"{index}:{key.split('/ds/', 1)[1]}"] = data
        else:
            base = os.path.join(root, "ds")
            for dirpath, dirnames, names in os.walk(base):
                dirnames[:] = [d for d in dirnames if d != "_audit"]
                for name in names:
                    path = os.path.join(dirpath, name)
                    with open(path, "rb") as f:
                        found[f"{index}:{os.path.relpath(path, base)}"] = f.read()
    return found


def text_argv(source, roots, run_config, s3, shards=3) -> list[str]:
    return ["--input", source, "--output_roots", ",".join(roots), "--replication", "2",
            "--dataset", "ds", "--num_shards", str(shards), "--no_near_dedup",
            "--max_bad_fraction", "0", "--run_config", run_config, *s3.beam_flags]


def manifests(roots) -> list:
    return [read_manifest_copy(f"{root}/ds/manifest.json") for root in roots]


def killed_run(argv, kill_at):
    """The job in a subprocess that SIGKILLs itself at write step ``kill_at``."""
    env = {**os.environ, commit.KILL_ENV: kill_at, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "pipelines.prepare_corpus", *argv], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, (proc.returncode, proc.stderr[-2000:])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_crash_between_commit_steps_keeps_the_committed_generation_and_a_rerun_commits_the_next(
        tmp_path, s3, prefix, run_config, layout, capsys):
    roots = layout_roots(layout, prefix, tmp_path)
    old_src = sf.text_input(tmp_path / "old.jsonl", seed=1)
    new_src = sf.text_input(tmp_path / "new.jsonl", seed=2)
    FileSystems.set_options(PipelineOptions(s3.beam_flags))
    prepare_corpus.run(text_argv(old_src, roots, run_config, s3))
    first = manifests(roots)
    assert [c.status for c in first] == ["ok", "ok"]
    gen1 = first[0].manifest
    assert gen1["generation"] == 1 and {c.manifest["digest"] for c in first} == {gen1["digest"]}
    committed = snapshot(s3, roots, prefix)
    old = sf.contents(sf.TEXT, f"{roots[0]}/ds")
    assert len(old) == 240
    argv = text_argv(new_src, roots, run_config, s3, shards=2)

    # 1. Killed after writing every new shard, before the first manifest copy: every
    #    object of generation 1 is byte-identical and reads through every root.
    killed_run(argv, "1@manifest.json")
    after = snapshot(s3, roots, prefix)
    assert {k: after[k] for k in committed} == committed
    added = sorted(k.split(":", 1)[1] for k in set(after) - set(committed))
    # what the killed run left: its lock, its new shards, its spill files (.runs-*/)
    assert ".lock" in added and all(
        n == ".lock" or re.fullmatch(r"shard-0000[01]-of-00002-[0-9a-f]{16}\.jsonl\.zst", n)
        or re.fullmatch(r"\.runs-[0-9a-f]{32}/[^/]+", n) for n in added), added
    for root in roots:
        assert sf.contents(sf.TEXT, f"{root}/ds") == old
    assert [c.manifest["digest"] for c in manifests(roots)] == [gen1["digest"]] * 2

    # 2. Killed between the manifest copies (the S3 copy is written first): the
    #    first root holds generation 2, the other still a complete generation 1;
    #    readers through either root take generation 2 and read it completely.
    killed_run(argv + ["--break_lock"], "2@manifest.json")
    split = manifests(roots)
    assert [c.manifest["generation"] for c in split] == [2, 1]
    assert split[0].manifest["previous"] == gen1["digest"]
    assert split[1].manifest["digest"] == gen1["digest"]
    after = snapshot(s3, roots, prefix)
    assert {k: after[k] for k in committed if not k.endswith("manifest.json") or
            k.startswith("1:")} == {k: v for k, v in committed.items()
                                    if not k.endswith("manifest.json") or k.startswith("1:")}
    new = sf.contents(sf.TEXT, f"{roots[1]}/ds")
    assert sf.contents(sf.TEXT, f"{roots[0]}/ds") == new and new != old and len(new) == 240

    # 3. The rerun (breaking the killed run's lock) finishes the commit: generation 2
    #    on both roots, generation 1's shards collected, verify clean.
    prepare_corpus.run(argv + ["--break_lock"])
    done = manifests(roots)
    assert [c.manifest["generation"] for c in done] == [2, 2]
    assert {c.manifest["digest"] for c in done} == {split[0].manifest["digest"]}
    final = snapshot(s3, roots, prefix)
    assert sorted(k.split(":", 1)[1] for k in final) == sorted(
        ["manifest.json"] * 2 + [s["name"] for s in done[0].manifest["shards"]] * 2)
    for root in roots:
        assert sf.contents(sf.TEXT, f"{root}/ds") == new
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", f"{roots[1]}/ds", *s3.beam_flags])
    assert exit_info.value.code == 0, capsys.readouterr().out
    assert capsys.readouterr().out.strip().endswith("0 problem(s)")

    # 4. A rerun with other data commits the next generation on top.
    prepare_corpus.run(text_argv(old_src, roots, run_config, s3))
    third = manifests(roots)
    assert [c.manifest["generation"] for c in third] == [3, 3]
    assert third[0].manifest["previous"] == done[0].manifest["digest"]
    assert sf.contents(sf.TEXT, f"{roots[1]}/ds") == old


def s3_run_config(run_config, s3, path) -> str:
    """The runner's run config plus the server's S3Options, as a user would keep them."""
    config = {**run_configs.load(run_config), "s3_endpoint_url": s3.endpoint,
              "s3_access_key_id": ACCESS_KEY, "s3_secret_access_key": SECRET_KEY,
              "s3_region_name": REGION}
    return run_configs.write(config, str(path))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_failed_run_leaves_the_committed_s3_dataset_unchanged(
        tmp_path, s3, prefix, run_config, layout, capsys):
    roots = layout_roots(layout, prefix, tmp_path)
    src = sf.text_input(tmp_path / "in.jsonl")
    # The S3 options come from the run config here, not from flags.
    FileSystems.set_options(PipelineOptions([]))
    config = s3_run_config(run_config, s3, tmp_path / "s3.yaml")
    argv = [a for a in text_argv(src, roots, config, s3) if not a.startswith("--s3_")]
    prepare_corpus.run(argv)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", f"{roots[0]}/ds", "--run_config", config])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().endswith("0 problem(s)")
    before = snapshot(s3, roots, prefix)
    digests = [c.manifest["digest"] for c in manifests(roots)]
    old = sf.contents(sf.TEXT, f"{roots[0]}/ds")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "fine", "text": "a good line"}\n{"id": "broken", "text": \n')
    # One bad line beyond --max_bad_fraction 0: the run writes its shards, then
    # fails at the manifest gate and removes them.
    with pytest.raises(Exception, match="not writing the manifest: 1 of 242 lines are bad"):
        prepare_corpus.run(text_argv(f"{src},{bad}", roots, run_config, s3, shards=2))
    assert snapshot(s3, roots, prefix) == before   # bytes, manifests, no lock left
    assert [c.manifest["digest"] for c in manifests(roots)] == digests
    for root in roots:
        assert sf.contents(sf.TEXT, f"{root}/ds") == old


def test_of_writers_racing_for_the_s3_lock_exactly_one_gets_it(s3, prefix):
    FileSystems.set_options(PipelineOptions(s3.beam_flags))
    directories = [f"s3://{bucket}/{prefix}/ds" for bucket in BUCKETS]
    locks = [commit.DatasetLock(directories, job=f"writer{i}") for i in range(8)]
    outcomes = [None] * len(locks)

    def take(i):
        try:
            locks[i].acquire()
            outcomes[i] = "held"
        except commit.DatasetLocked as err:
            outcomes[i] = str(err)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(locks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in enumerate(outcomes) if o == "held"]
    assert len(winners) == 1, outcomes
    winner = locks[winners[0]]
    for i, o in enumerate(outcomes):
        if i != winners[0]:
            # the holder runs (this process): wait for it, no --break_lock suggested
            assert f"is held by writer{winners[0]} pid {os.getpid()}" in o and "still running" in o
            assert locks[i].held == []
    for bucket in BUCKETS:
        lock = json.loads(objects(s3, bucket, prefix)[f"{prefix}/ds/.lock"])
        assert lock["token"] == winner.token and lock["job"] == f"writer{winners[0]}"
    winner.release()
    assert all(objects(s3, b, prefix) == {} for b in BUCKETS)
    # --break_lock takes a lock left by a killed run (its process gone), never a live one
    live = commit.DatasetLock(directories, job="live")
    live.acquire()
    with pytest.raises(commit.DatasetLocked, match="is held by live .*still running"):
        commit.DatasetLock(directories, job="next", break_lock=True).acquire()
    client = s3.client()
    for bucket in BUCKETS:
        client.put_object(Bucket=bucket, Key=f"{prefix}/ds/.lock", Body=json.dumps(
            {"pid": 2 ** 22 + 7, "host": platform.node(), "job": "killed", "token": "t"}))
    with pytest.raises(commit.DatasetLocked, match="is held by killed .*the lock is stale"):
        commit.DatasetLock(directories, job="next").acquire()
    with commit.DatasetLock(directories, job="next", break_lock=True) as lock:
        assert json.loads(objects(s3, "bucket-b", prefix)[f"{prefix}/ds/.lock"])["token"] \
            == lock.token
    assert all(objects(s3, b, prefix) == {} for b in BUCKETS)


def _body(roots, note):
    return {"format": commit.FORMAT, "format_version": commit.FORMAT_VERSION, "dataset": "ds",
            "roots": roots, "shards": [], "num_shards": 0, "records": 0, "note": note}


def test_two_commits_from_the_same_generation_one_wins_on_s3(s3, prefix, monkeypatch):
    """The manifest compare-and-swap is a conditional PUT on each s3:// copy: a writer
    that passed the generation check but lost the race to another commit is refused
    by the server at the first copy and writes no manifest."""
    FileSystems.set_options(PipelineOptions(s3.beam_flags))
    roots = [f"s3://{bucket}/{prefix}" for bucket in BUCKETS]
    gen1 = commit.commit_generation(_body(roots, "one"), "ds", roots, None)
    with pytest.raises(commit.ConcurrentWriteError, match="committed by another writer"):
        commit.commit_generation(_body(roots, "lost"), "ds", roots, None)
    stale = commit.survey_roots(roots, "ds")   # what a slower writer B read
    stale_gets = {f"{r}/ds/manifest.json": commit.s3_get(f"{r}/ds/manifest.json")
                  for r in roots}
    gen2 = commit.commit_generation(_body(roots, "A"), "ds", roots, gen1["digest"])
    assert gen2["generation"] == 2 and gen2["previous"] == gen1["digest"]
    after_a = {b: objects(s3, b, prefix) for b in BUCKETS}
    # B passes the generation check (it sees the survey of before A's commit) and
    # reads the manifest before A replaced it: the server refuses its PUT.
    monkeypatch.setattr(commit, "survey_roots", lambda *a: stale)
    monkeypatch.setattr(commit, "s3_get", lambda path: stale_gets[path])
    with pytest.raises(commit.ConcurrentWriteError, match="replaced by another writer") as err:
        commit.commit_generation(_body(roots, "B"), "ds", roots, gen1["digest"])
    assert "copies before it" not in str(err.value)   # refused at the first copy
    assert {b: objects(s3, b, prefix) for b in BUCKETS} == after_a
    monkeypatch.undo()
    assert [c.manifest["digest"] for c in commit.survey_roots(roots, "ds")] == [gen2["digest"]] * 2


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_retried_shard_writer_on_s3_yields_its_sidecar_and_reads_no_run(
        s3, prefix, tmp_path, monkeypatch, layout):
    """The shard writer's retry path (``store._WriteShard``, ``spill``) with its runs and
    sidecar on S3: the first attempt writes the shard on both roots, records its entry
    in a sidecar and deletes the runs (one batched delete); a retried bundle yields the
    same entry, counts as the first did and reads no run; once a replica it promises is
    gone, a retry fails naming the shard and that replica."""
    FileSystems.set_options(PipelineOptions(s3.beam_flags))
    roots = layout_roots(layout, prefix, tmp_path)
    spill_dir = f"s3://bucket-a/{prefix}/ds/{commit.SPILL_PREFIX}test"
    shard = ("", 0, 1)
    runs, lines = spill_tests._runs(spill_dir, shard)
    key = f"{prefix}/ds/{commit.SPILL_PREFIX}test/"
    assert sorted(k for k in objects(s3, "bucket-a", key)) == sorted(
        key + os.path.basename(r.path) for r in runs[1:])
    first = spill_tests._writer(roots, spill_dir=spill_dir)
    [entry] = list(first.process((shard, runs), {}))
    assert entry["records"] == 4 and sorted(entry["replicas"]) == [0, 1]
    # the runs are gone; the sidecar (the entry and the runs' digest) is all that is left
    assert list(objects(s3, "bucket-a", key)) == [
        key + os.path.basename(spill.written_path(spill_dir, shard))]
    assert spill.read_written(spill_dir, shard) == entry
    stored = [FileSystems.open(f"{root}/ds/{entry['name']}",
                               compression_type=CompressionTypes.UNCOMPRESSED).read()
              for root in roots]
    assert stored[0] == stored[1] and len(stored[0]) == entry["stored_bytes"]
    assert zstandard.ZstdDecompressor().decompress(stored[0]).splitlines() == lines

    def no_read(*_):
        raise AssertionError("a retried writer read a run")
    monkeypatch.setattr(spill, "run_lines", no_read)
    monkeypatch.setattr(store_module, "shard_lines", no_read)
    retry = spill_tests._writer(roots, spill_dir=spill_dir)
    assert list(retry.process((shard, runs), {})) == [entry]
    assert spill_tests._counters(retry) == spill_tests._counters(first)
    # a replica the sidecar promises is gone (the runs too): the retry cannot rewrite it
    gone = f"{roots[1]}/ds/{entry['name']}"
    FileSystems.delete([gone])
    with pytest.raises(store_module.StoreError,
                       match=f"shard {entry['name']}: its replica {re.escape(gone)}"):
        list(spill_tests._writer(roots, spill_dir=spill_dir).process((shard, runs), {}))
    spill.delete_spill(spill_dir)
    assert objects(s3, "bucket-a", key) == {}


def test_kill_points_can_be_named_by_file(monkeypatch):
    """``$DATAPREP_KILL_AT=N@NAME`` counts only the steps of files called NAME."""
    killed = []
    monkeypatch.setattr(commit.os, "kill", lambda pid, sig: killed.append(commit._steps["count"]))
    monkeypatch.setitem(commit._steps, "count", 0)
    monkeypatch.setenv(commit.KILL_ENV, "2@manifest.json")
    for name in ["shard-00000-of-00001.jsonl.zst", "manifest.json", ".lock", "manifest.json",
                 "manifest.json"]:
        commit.fault_point("before put", name)
    assert killed == [2]
    monkeypatch.setitem(commit._steps, "count", 0)
    monkeypatch.setenv(commit.KILL_ENV, "3")
    for name in ["a", "b", "c", "d"]:
        commit.fault_point("step", name)
    assert killed == [2, 3]


def test_a_server_that_cannot_start_is_an_error_naming_its_log(monkeypatch):
    """CI must fail, never skip, when SeaweedFS does not come up."""
    import tests.s3_server as s3_server
    monkeypatch.setattr(s3_server, "weed_binary", lambda: "/bin/false")
    server = s3_server.S3Server(["bucket-a"], start_timeout=10)
    with pytest.raises(s3_server.S3ServerError, match=r"did not start on http://127\.0\.0\.1:\d+ "
                       r"within 10 s \(3 attempt\(s\).*; log: .*weed\.log; its last lines:\n"):
        server.start()
    assert server.process is None
    assert os.path.exists(os.path.join(server.folder, "weed.log"))
    import shutil
    shutil.rmtree(server.folder)


def test_a_server_that_exits_at_once_is_started_again_on_new_ports(monkeypatch):
    """A port picked free can be taken before `weed` binds it (CI's check once failed in
    3 s beside other set-up): an exit at start is retried on fresh ports."""
    import tests.s3_server as s3_server
    real = s3_server.weed_binary()
    binaries = iter(["/bin/false", real])
    monkeypatch.setattr(s3_server, "weed_binary", lambda: next(binaries))
    with s3_server.S3Server(["bucket-a"]) as server:
        client = server.client()
        client.put_object(Bucket="bucket-a", Key="k", Body=b"v")
        assert client.get_object(Bucket="bucket-a", Key="k")["Body"].read() == b"v"

