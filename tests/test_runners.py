"""Runner portability: shipped run configs, shared services, and cross-runner determinism.

The determinism tests run a job on the configured runner (``--run_config``)
and on the in-process DirectRunner, into the same root paths (placement
depends on root names), and require byte-identical shards and manifests and
equal run-report counters.  On the direct config they still check that a rerun
is identical; CI runs them on prism, flink_local, spark_local, flink_cluster
and spark_cluster.
"""
import glob
import json
import os
import shutil
import socket

import numpy as np
import orjson
import pytest
import zstandard

from pipelines import compress_arrays, prepare_corpus
from pipelines import run_config as run_configs
from pipelines.job_services import RunnerServices, ServiceError

DIRECT = "direct"
pytestmark = pytest.mark.cross_runner


# ---------------------------------------------------------------- run configs

def test_every_shipped_run_config_is_valid():
    names = sorted(os.path.basename(p)[:-5] for p in glob.glob(
        os.path.join(run_configs.CONFIG_DIR, "*.yaml")))
    assert {"direct", "prism", "flink_local", "spark_local", "flink_cluster", "spark_cluster",
            "dataflow"} <= set(names)
    for name in names:
        config = run_configs.load(name)
        assert config["runner"] in {"DirectRunner", "PrismRunner", "FlinkRunner", "SparkRunner",
                                    "DataflowRunner"}, name


def test_home_relative_paths_expand_for_the_current_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    flags = run_configs.flags_from("prism")
    assert f"--prism_location={tmp_path}/.apache_beam/cache/prism/bin/prism" in flags
    assert (f"--flink_job_server_jar={tmp_path}/.apache_beam/cache/jars/"
            "beam-dataprep-flink-1.19-job-server.jar") in run_configs.flags_from("flink_local")
    # inside a JVM property, after '=' and after each ':' of a class path
    assert run_configs.to_flags({"job_server_jvm_properties": ["-Dcp=~/a.jar:~/b/*", "-Dx=a~/b"]}) == [
        f"--job_server_jvm_properties=-Dcp={tmp_path}/a.jar:{tmp_path}/b/*",
        "--job_server_jvm_properties=-Dx=a~/b"]
    assert (f"-Dspark.executor.extraClassPath={tmp_path}/.apache_beam/cache/jars/"
            "beam-dataprep-spark-3-job-server.executor-first/*") in " ".join(
                run_configs.flags_from("spark_cluster"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("flags, hint", [
    (["--runner=FlinkRunner", "--flink_master=localhost:{port}"], "scripts/flink_cluster.sh"),
    (["--runner=SparkRunner", "--spark_master_url=spark://localhost:{port}"],
     "scripts/spark_cluster.sh"),
])
def test_a_cluster_that_is_down_is_an_error_not_a_skip(flags, hint):
    port = _free_port()
    with pytest.raises(ServiceError, match=hint):
        RunnerServices([f.format(port=port) for f in flags]).start()


def test_a_job_server_that_cannot_start_says_why(tmp_path):
    missing = tmp_path / "no-such-prism"
    with pytest.raises(ValueError, match="no-such-prism"):
        RunnerServices(["--runner=PrismRunner", f"--prism_location={missing}"]).start()


# ---------------------------------------------------------------- determinism

def _corpus(directory) -> list[str]:
    """Two files, 400 documents: duplicates across files, ids out of order, bad lines."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(7)
    words = ["alpha", "beta", "gamma", "delta", "Epsilon", "zeta", "Eta", "theta", "iota"]
    paths = []
    for part in range(2):
        lines = []
        for i in range(200):
            n = int(rng.integers(0, 150))  # ~150 distinct texts over 400 docs: many duplicates
            text = " ".join(words[(n + k) % len(words)] for k in range(n % 7 + 1)) + f" {n}"
            if i % 5 == 0:
                text = text.upper()  # equal after normalisation
            lines.append(orjson.dumps({"id": f"doc-{(i * 37 + part) % 1000:04d}-{part}",
                                       "text": text, "i": i}))
        lines[17] = b'{"id": "broken", "text": '
        lines[99] = b'{"id": "no-text"}'
        paths.append(_write_part(directory, part, lines))
    return paths


def _snapshot(roots, dataset) -> tuple[dict[str, bytes], dict[str, list]]:
    """(bytes of store files, decoded records of audit files) under the roots.

    Store files (shards, manifest) must be byte-identical; audit files
    (dead letters, inputs) are written by WriteToText, whose file count and
    line order are the runner's choice, so their records are compared as sets
    (removed records too here; their bytes:
    ``test_removed_records_are_byte_identical_on_every_runner_and_worker_count``).
    """
    store, audit = {}, {}
    for root in roots:
        for path in sorted(glob.glob(os.path.join(str(root), dataset, "*"))
                           + glob.glob(os.path.join(str(root), dataset, "_audit", "*"))):
            name = os.path.basename(path)
            key = f"{os.path.basename(str(root))}/{name}"
            if name in ("run_report.json", "run_report.html", "_audit"):
                continue
            if name.startswith(("dead_letters", "removed", "inputs")):
                kind = name.split("-")[0]
                with open(path, "rb") as f:
                    lines = zstandard.ZstdDecompressor().stream_reader(f).read().splitlines()
                audit.setdefault(kind, []).extend(lines)
            else:
                with open(path, "rb") as f:
                    store[key] = f.read()
    return store, {kind: sorted(lines) for kind, lines in audit.items()}


def _run_twice(job, run_config, roots, dataset):
    """The job on the DirectRunner, then on the configured runner, into the same roots."""
    outputs = []
    for config in (DIRECT, run_config):
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
        report = job(config)
        outputs.append((_snapshot(roots, dataset), report["counters"]))
    return outputs


@pytest.mark.standalone_cluster
@pytest.mark.parametrize("mode", [[], ["--no_near_dedup"]], ids=["exact+near", "exact_only"])
def test_prepare_corpus_is_byte_identical_to_the_direct_runner(tmp_path, run_config, mode):
    inputs = _corpus(tmp_path / "in")
    roots = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]

    def job(config):
        return prepare_corpus.run([
            "--input", ",".join(inputs), "--output_roots", ",".join(map(str, roots)),
            "--replication", "2", "--num_shards", "4", "--write_removed",
            "--max_bad_fraction", "0.1", "--run_config", config, *mode])

    (direct, direct_counters), (other, other_counters) = _run_twice(
        job, run_config, roots, "corpus")
    direct_store, direct_audit = direct
    store, audit = other
    assert sorted(store) == sorted(direct_store)
    assert sum(name.startswith(f"{r.name}/shard-") for name in store for r in roots) == 8
    for name, data in direct_store.items():
        assert store[name] == data, f"{name} differs from the DirectRunner's"
    assert audit == direct_audit
    assert len(audit["dead_letters"]) == 4
    assert len(audit["inputs"]) == len(inputs)  # lineage: one digest per file, same on both
    assert other_counters == direct_counters
    assert direct_counters["read/records"] == 396
    assert direct_counters["store/records"] + direct_counters["dedup/duplicates_removed"] == 396


def _removed_corpus(directory) -> list[str]:
    """Two files, 300 documents: integer ids (some beyond 64 bits), strings of digits and
    words; exact copies (case), near-duplicates (a family's 5 words repeated 2-4
    times: the same shingles), a bad line; ids out of order."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(16)
    paths = []
    for part in range(2):
        lines = []
        for i in range(150):
            n = part * 150 + i
            doc_id = [n, 10 ** 22 + n, str(1000 + n), f"doc-{(n * 37) % 300:03d}"][n % 4]
            family, repeats = int(rng.integers(0, 40)), 2 + int(rng.integers(0, 3))
            words = [f"f{family}w{k}" for k in range(5)] * repeats
            if rng.random() < 0.3:
                words[0] = words[0].upper()   # an exact copy after normalisation
            lines.append(json.dumps({"id": doc_id, "text": " ".join(words)}).encode())
        lines[40] = b'{"id": "broken", "text": '
        paths.append(_write_part(directory, part, lines))
    return paths


def _write_part(directory, part, lines) -> str:
    """``lines`` (bytes) -> ``<directory>/part-<part>.jsonl``, its path."""
    path = os.path.join(directory, f"part-{part}.jsonl")
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.standalone_cluster
@pytest.mark.parametrize("mode", [[], ["--no_near_dedup"]], ids=["exact+near", "exact_only"])
def test_removed_records_are_byte_identical_on_every_runner_and_worker_count(
        tmp_path, run_config, mode):
    """The removed-records files (names and bytes) do not depend on the runner or its
    workers: sorted by (file, line), grouped and compressed apart from the bundles."""
    inputs = _removed_corpus(tmp_path / "in")
    root = tmp_path / "a"
    written = {}
    # the worker count: the DirectRunner in one process and in several (the direct
    # suite); another runner against the DirectRunner (its own suite)
    others = ["direct_multiprocess"] if run_config == DIRECT else [run_config]
    for config in [DIRECT, *others]:
        shutil.rmtree(root, ignore_errors=True)
        prepare_corpus.run([
            "--input", ",".join(inputs), "--output_roots", str(root), "--write_removed",
            "--sample_per_partition", "25", "--max_bad_fraction", "0.1",
            "--run_config", config, *mode])
        written[config] = {p.name: p.read_bytes()
                           for p in sorted((root / "corpus" / "_audit").glob("removed*"))}
    first = written[DIRECT]
    for config, files in written.items():
        assert files == first, f"{config}'s removed files differ from the DirectRunner's"
    assert list(first) == ["removed-00000-of-00001.jsonl.zst"]
    records = [json.loads(line) for line in
               zstandard.ZstdDecompressor().decompress(first["removed-00000-of-00001.jsonl.zst"])
               .splitlines()]
    assert [(r["file"], r["line"]) for r in records] == sorted(
        (r["file"], r["line"]) for r in records)
    reasons = {r["reason"] for r in records}
    assert {"dedup.exact_duplicate", "sample_per_partition.not_sampled"} <= reasons
    assert ("near_dedup.near_duplicate" in reasons) == (not mode)
    assert {type(r["removed"]).__name__ for r in records} == {"int", "str"}
    assert any(r["removed"] > 2 ** 64 for r in records if isinstance(r["removed"], int))


@pytest.mark.standalone_cluster
def test_compress_arrays_is_byte_identical_to_the_direct_runner(tmp_path, run_config):
    rng = np.random.default_rng(3)
    source = tmp_path / "in.npy"
    np.save(source, rng.normal(size=(300, 16)).astype(np.float32))
    roots = [tmp_path / "a", tmp_path / "b"]

    def job(config):
        return compress_arrays.run([
            "--input", str(source), "--output_roots", ",".join(map(str, roots)),
            "--block_rows", "64", "--run_config", config])

    (direct, direct_counters), (other, other_counters) = _run_twice(
        job, run_config, roots, "arrays")
    assert other[0] == direct[0]
    assert len([n for n in direct[0] if "shard-" in n]) == 2 * 5  # ceil(300/64) blocks, R=2
    assert other_counters == direct_counters


@pytest.mark.standalone_cluster
def test_a_failed_job_reports_its_cause_in_one_line(tmp_path, run_config, capsys):
    """Runners wrap worker errors differently (Prism raises RuntimeError with its own text)."""
    inputs = _corpus(tmp_path / "in")
    with pytest.raises(SystemExit) as exit_info:
        prepare_corpus.main(["--input", ",".join(inputs), "--output_roots",
                             str(tmp_path / "a"), "--max_bad_fraction", "0.001",
                             "--run_config", run_config])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2] == ("prepare_corpus failed: not writing the manifest: 4 of 400 lines are "
                       f"bad (1.00%), above --max_bad_fraction 0.001; see the dead letters in "
                       f"{tmp_path / 'a' / 'corpus' / '_audit' / 'last_run'}")
    log = err[-1].removeprefix("  (full log: ").removesuffix(")")  # Beam's logs, kept apart
    assert os.path.isfile(log) and "Traceback" not in "\n".join(err)
    os.unlink(log)
    assert not os.path.exists(tmp_path / "a" / "corpus" / "manifest.json")
