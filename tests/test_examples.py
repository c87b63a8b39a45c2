"""Each program in examples/ runs as a user would run it, and gives the exact result."""
import collections
import os
import subprocess
import sys

import orjson

from examples import dedup_in_your_pipeline, store_round_trip
from transforms.store import verify_store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_exact_and_near_dedup_in_your_own_pipeline(tmp_path):
    base = "the quick brown fox jumps over the lazy dog while the cat sleeps on the mat"
    records = [
        {"id": "a", "text": base},
        {"id": "b", "text": base},                      # exact duplicate of a
        {"id": "c", "text": base + " today"},           # near duplicate of a
        {"id": "d", "text": "completely different words that share nothing at all here"},
        {"id": "e", "text": "another unrelated sentence about rivers mountains and lakes"},
    ]
    source = tmp_path / "mine.jsonl"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    out = tmp_path / "deduped"
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "dedup_in_your_pipeline.py"),
                    "--input", str(source), "--output", str(out)], check=True,
                   env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True)
    kept = [orjson.loads(line) for line in (tmp_path / "deduped.jsonl").read_bytes().splitlines()]
    assert sorted(r["id"] for r in kept) == ["a", "d", "e"]
    assert {r["id"]: r for r in kept} == {r["id"]: r for r in records if r["id"] in "ade"}


def test_write_store_then_read_store(tmp_path):
    roots = [str(tmp_path / "r1"), str(tmp_path / "r2"), str(tmp_path / "r3")]
    store_round_trip.main(["--roots", ",".join(roots), "--output", str(tmp_path / "counts")])
    store = os.path.join(roots[0], store_round_trip.DATASET)
    rows = verify_store(store)
    assert rows and all(r["status"] == "ok" for r in rows)
    assert len({r["shard"] for r in rows}) > 1  # 16 KiB shards: several
    expected = collections.Counter(r["group"] for r in store_round_trip.my_records())
    lines = (tmp_path / "counts.tsv").read_text().splitlines()
    assert dict((g, int(n)) for g, n in (line.split("\t") for line in lines)) == expected


def test_example_functions_are_the_documented_types():
    record = {"id": 7, "text": "x", "more": [1]}
    assert dedup_in_your_pipeline.as_doc(record) == ("7", "x", orjson.dumps(record))
