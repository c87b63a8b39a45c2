"""The exact-only job's output, pinned byte for byte.

Speed work on the exact-only path (``--no_near_dedup``: how refs and shard
records are encoded between steps, how pass 2 reads and spills) must change
nothing written.  A corpus from ``benchmarks.corpus`` (seeded: exact copies
with changed case and spaces, bad lines of every kind) goes through
prepare_corpus with small batches and shards, so records cross many batches,
buckets and shards; the digests below are of the output of commit b60425c
(before that work): every shard's bytes, the manifest without its roots, the
removed records, the dead letters and every counter.  The removed records
gained ``file`` and ``line`` (issue 16): without them they are b60425c's
records (``removed_without_place``); with them, pinned at the commit that
added them (``removed``).
"""
import glob
import hashlib
import os

import orjson
import pytest
import zstandard

from benchmarks.corpus import write_corpus
from pipelines import prepare_corpus
from transforms.storage.store import load_manifest

# sha256 (first 16 hex digits) of the outputs of b60425c on this corpus and these flags
EXPECTED = {
    "shards": "0b6c535df338f4d4",
    "manifest_without_roots": "a4db796199e4f9f1",
    "removed_without_place": "a966189794f5e9b4",
    "removed": "df3742f7c038546a",
    "dead_letters": "5d5e24df04e4886e",
}
EXPECTED_COUNTERS = "fac1d7461dc6f808"   # 1,169 kept, 325 exact duplicates, 6 bad lines


def _digest(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part + b"\0")
    return h.hexdigest()[:16]


def _audit_lines(root, prefix) -> list[bytes]:
    lines = []
    for path in glob.glob(os.path.join(root, "ds", "_audit", f"{prefix}*")):
        with open(path, "rb") as f:
            lines += zstandard.ZstdDecompressor().stream_reader(f).read().splitlines()
    return sorted(lines)


def outputs(roots, inputs: str) -> dict:
    """Digests of what a run wrote (independent of the roots' paths, and of the
    input folder ``inputs``, which dead letters name)."""
    manifest = load_manifest(os.path.join(roots[0], "ds"))
    shards = []
    for shard in sorted(manifest["shards"], key=lambda s: s["name"]):
        copies = {open(os.path.join(root, "ds", shard["name"]), "rb").read()
                  for root in roots if os.path.exists(os.path.join(root, "ds", shard["name"]))}
        assert len(copies) == 1, "every replica holds the same bytes"
        shards += [shard["name"].encode(), copies.pop()]
    for key in ("roots", "digest", "inputs"):
        manifest.pop(key, None)
    for shard in manifest["shards"]:
        shard.pop("replicas", None)
    return {
        "shards": _digest(shards),
        "manifest_without_roots": _digest([orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)]),
        "removed_without_place": _digest(sorted(
            orjson.dumps({k: v for k, v in orjson.loads(line).items() if k not in ("file", "line")})
            for line in _audit_lines(roots[0], "removed"))),
        "removed": _digest([line.replace(inputs.encode(), b"<inputs>")
                            for line in _audit_lines(roots[0], "removed")]),
        "dead_letters": _digest([line.replace(inputs.encode(), b"<inputs>")
                                 for line in _audit_lines(roots[0], "dead_letters")]),
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated")
    write_corpus(str(folder / "in"), 1500, files=3, seed=7, bad_lines=6,
                 min_bytes=100, max_bytes=3000, exact_rate=0.2)
    return folder


def test_exact_only_output_is_pinned(generated, tmp_path, run_config):
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    report = prepare_corpus.run([
        "--input", str(generated / "in" / "part-*.jsonl.zst"), "--output_roots", ",".join(roots),
        "--dataset", "ds", "--replication", "2", "--no_near_dedup", "--write_removed",
        "--target_shard_bytes", "200KB", "--batch_bytes", "16KB", "--bucket_bytes", "256KB",
        "--run_config", run_config])
    got = outputs(roots, str(generated))
    counters = _digest([orjson.dumps(report["counters"], option=orjson.OPT_SORT_KEYS)])
    assert got == EXPECTED
    assert counters == EXPECTED_COUNTERS
