"""prepare_corpus with tiny memory bounds (DESIGN.md, "Bounded elements"): batches of
at most --batch_bytes, a bucket per input byte; the store, the removed records and the
counters are exactly those of the default bounds."""
import glob
import os
import shutil

import orjson
import pytest
import zstandard

from pipelines import prepare_corpus
from tests.near_dup_corpus import near_dup_corpus

TINY_BATCH = 150  # bytes: about two refs


def _corpus(path) -> str:
    docs = near_dup_corpus(originals=25, copies=25, seed=3)
    rows = []
    for i, (doc_id, text) in enumerate(sorted(docs.items())):
        rows.append({"id": doc_id, "text": text, "lang": ["en", "de", "fr"][i % 3], "n": i})
        if i % 7 == 0:
            rows.append({"id": f"copy-{doc_id}", "text": text.upper(), "lang": "en", "n": i})
    with open(path, "wb") as f:
        f.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return str(path)


def _outputs(root) -> tuple[dict, list]:
    files, removed = {}, []
    for path in sorted(glob.glob(os.path.join(str(root), "corpus", "**", "*"), recursive=True)):
        name = os.path.relpath(path, str(root))
        if os.path.isdir(path) or name.endswith(("run_report.json", "run_report.html")):
            continue
        if os.path.basename(path).startswith("removed"):
            with open(path, "rb") as f:
                removed += zstandard.ZstdDecompressor().stream_reader(f).read().splitlines()
        elif not os.path.basename(path).startswith("dead_letters"):
            files[name] = open(path, "rb").read()
    return files, sorted(removed)


@pytest.mark.parametrize("mode", [[], ["--partition_by", "lang"],
                                  ["--range_by", "length", "--num_ranges", "3"]],
                         ids=["near", "partition_by", "range_by"])
def test_tiny_bounds_give_the_same_store(tmp_path, run_config, mode):
    source = _corpus(tmp_path / "in.jsonl")
    reports, outputs = {}, {}
    root = tmp_path / "out"  # one root for both runs: the manifest names it
    for name, bounds in (("default", []),
                         ("tiny", ["--batch_bytes", str(TINY_BATCH), "--bucket_bytes", "1k"])):
        shutil.rmtree(root, ignore_errors=True)
        reports[name] = prepare_corpus.run([
            "--run_config", run_config, "--input", source, "--output_roots", str(root),
            "--write_removed", "--target_shard_bytes", "20k", *mode, *bounds])
        outputs[name] = _outputs(root)
    default, tiny = outputs["default"], outputs["tiny"]
    assert len(default[0]) > 2 and default[0] == tiny[0]
    assert len(default[1]) > 20 and default[1] == tiny[1]
    assert tiny[0].keys() == default[0].keys()
    assert reports["tiny"]["counters"] == reports["default"]["counters"]
    assert reports["default"]["counters"]["near_dedup/near_duplicates_removed"] > 10

    batches = reports["tiny"]["distributions"]["read/ref_batch_bytes"]
    records = reports["tiny"]["counters"]["read/records"]
    assert batches["max"] <= TINY_BATCH  # every ref here is smaller than the bound
    assert batches["count"] >= batches["sum"] / TINY_BATCH >= records * 48 / TINY_BATCH
    default_batches = reports["default"]["distributions"]["read/ref_batch_bytes"]
    assert default_batches["count"] < 5 and default_batches["max"] <= 1 << 20
    assert default_batches["sum"] == batches["sum"]  # the same refs, cut differently
