"""prepare_corpus with near-dedup: after exact dedup, audit records, histogram, gate."""
import glob

import numpy as np
import orjson
import pytest
import zstandard

from pipelines import prepare_corpus
from tests.near_dup_corpus import near_dup_corpus, reference_near_dedup
from transforms.core.hashing import text_key
from transforms.reduction.minhash import LshParams
from transforms.storage.store import load_manifest


def _write(path, docs: dict[str, str]) -> str:
    with open(path, "wb") as f:
        for doc_id, text in sorted(docs.items()):
            f.write(orjson.dumps({"id": doc_id, "text": text}) + b"\n")
    return str(path)


def _exact_dedup(docs: dict[str, str]) -> dict[str, str]:
    """What the reader and exact dedup keep: empty or blank texts go (empty_text)."""
    winners = {}
    for doc_id in sorted(docs):
        if docs[doc_id].strip():
            winners.setdefault(text_key(docs[doc_id]), doc_id)
    return {i: docs[i] for i in winners.values()}


def _blank(docs: dict[str, str]) -> int:
    return sum(1 for text in docs.values() if not text.strip())


def _audit(directory) -> list[dict]:
    records = []
    for path in sorted(glob.glob(f"{directory}/_audit/removed*.jsonl.zst")):
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().stream_reader(f).read()
        records += [orjson.loads(line) for line in data.splitlines() if line]
    return records


def test_near_duplicates_removed_after_exact_ones(tmp_path, run_config):
    docs = near_dup_corpus(originals=60, copies=80, seed=1)
    docs["doc-99999"] = docs["doc-00003"].upper()  # an exact duplicate as well
    source = _write(tmp_path / "in.jsonl", docs)
    roots = f"{tmp_path / 'a'},{tmp_path / 'b'}"
    report = prepare_corpus.run(["--run_config", run_config, "--input", source,
                                 "--output_roots", roots, "--write_removed"])
    unique = _exact_dedup(docs)
    expected = reference_near_dedup(unique, LshParams.resolve(0.8))
    assert len(expected) > 20

    counters = report["counters"]
    assert counters["read/bad.empty_text"] == _blank(docs) == 2  # the corpus plants "" and "   "
    assert counters["dedup/duplicates_removed"] == len(docs) - _blank(docs) - len(unique)
    assert counters["near_dedup/near_duplicates_removed"] == len(expected)
    assert load_manifest(str(tmp_path / "a" / "corpus"))["records"] == \
        len(unique) - len(expected)
    near = sorted((r["removed"], r["kept"], r["jaccard"]) for r in _audit(tmp_path / "a" / "corpus")
                  if r["reason"] == "near_dedup.near_duplicate")
    assert near == sorted((r, k, j) for r, (k, j) in expected.items())
    sizes = np.unique(list(k for k, _ in expected.values()), return_counts=True)[1] + 1
    histogram = report["near_dedup_cluster_sizes"]
    assert sum(row["clusters"] for row in histogram) == counters["near_dedup/clusters"] == \
        len(sizes)
    assert {row["min_size"] for row in histogram} <= {2, 3, 5, 9, 17}


def test_no_near_dedup_keeps_near_duplicates(tmp_path, run_config):
    docs = near_dup_corpus(originals=30, copies=30, seed=2)
    source = _write(tmp_path / "in.jsonl", docs)
    report = prepare_corpus.run(["--run_config", run_config, "--input", source,
                                 "--output_roots", str(tmp_path / "a"), "--no_near_dedup"])
    assert not any(k.startswith("near_dedup/") for k in report["counters"])
    assert report["near_dedup"] is None
    assert load_manifest(str(tmp_path / "a" / "corpus"))["records"] == len(_exact_dedup(docs))


def test_unconverged_components_fail_without_manifest(tmp_path, run_config):
    rng = np.random.default_rng(0)
    words = [f"w{x}" for x in rng.integers(0, 100000, 700)]
    # sliding windows: each overlaps the next ones, so the similarity graph is a long chain
    docs = {f"c{i:03d}": " ".join(words[3 * i:3 * i + 300]) for i in range(120)}
    source = _write(tmp_path / "in.jsonl", docs)
    with pytest.raises(Exception, match="did not converge in 1 rounds"):
        prepare_corpus.run(["--run_config", run_config, "--input", source,
                            "--output_roots", str(tmp_path / "a"),
                            "--near_dedup_max_rounds", "1"])
    assert not (tmp_path / "a" / "corpus" / "manifest.json").exists()


def test_inconsistent_lsh_options_fail_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepare_corpus.run(["--output_roots", str(tmp_path / "a"), "--num_perm", "16",
                            "--near_dedup_bands", "8", "--near_dedup_rows", "4"])
    assert "more than num_perm" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_multi_process_direct_runner_writes_the_in_process_store(tmp_path):
    """The default job on direct_multiprocess (worker processes decode the packed
    groupings: transforms.core.records.Packed) writes the same shard bytes, manifest
    records and removed records as the in-process DirectRunner."""
    docs = near_dup_corpus(originals=40, copies=40, seed=3)
    docs["doc-99998"] = docs["doc-00001"].upper()  # an exact duplicate as well
    source = _write(tmp_path / "in.jsonl", docs)
    stores = {}
    for config in ("direct", "direct_multiprocess"):
        root = tmp_path / config
        report = prepare_corpus.run(["--run_config", config, "--input", source,
                                     "--output_roots", str(root), "--write_removed"])
        manifest = load_manifest(str(root / "corpus"))
        shards = {}
        for shard in manifest["shards"]:
            with open(root / "corpus" / shard["name"], "rb") as f:
                shards[shard["name"]] = f.read()
        removed = sorted((r["removed"], r["kept"], r["reason"]) for r in _audit(root / "corpus"))
        counters = {k: v for k, v in report["counters"].items() if "msec" not in k}
        stores[config] = (manifest["records"], shards, removed, counters)
    assert stores["direct"][2] and stores["direct"][0] > 0
    assert stores["direct_multiprocess"] == stores["direct"]
