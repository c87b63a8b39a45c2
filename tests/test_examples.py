"""Each program in examples/ runs as a user runs it (a separate process, from
another folder) on the configured runner, and gives the exact result."""
import os
import subprocess
import sys

import orjson
import zstandard

from examples import prepare_in_a_larger_pipeline, store_round_trip
from transforms.reduction.minhash import shingle_set, true_jaccard
from transforms.storage.store import load_manifest, root_paths, verify_store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "the quick brown fox jumps over the lazy dog while the cat sleeps on the mat"
OTHER = "completely different words that share nothing at all with the others here"
THIRD = "another unrelated sentence about rivers mountains lakes and a long valley"


def run_example(name, args, beam_flags, cwd, as_module=False):
    target = ["-m", f"examples.{name}"] if as_module else [
        os.path.join(ROOT, "examples", f"{name}.py")]
    done = subprocess.run([sys.executable, *target, *args, *beam_flags], cwd=cwd,
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def jsonl(path):
    return [orjson.loads(line) for line in open(path, "rb").read().splitlines()]


def test_dedup_records_example(tmp_path, beam_flags):
    records = [
        {"id": "b", "text": BASE, "n": 1},
        {"id": "a", "text": "  " + BASE.upper(), "n": 2},      # exact duplicate of b, wins
        {"id": "c", "text": BASE + " today", "n": 3},          # near duplicate of a
        {"id": 4, "text": OTHER, "tags": ["x", 1.5]},
        {"id": 10, "text": THIRD},
        {"id": 2, "text": THIRD + " "},                         # exact duplicate of 10, wins
        {"id": "x"},                                            # no text
        {"id": True, "text": "a boolean id"},                   # bad id
    ]
    source = tmp_path / "mine.jsonl"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    out = tmp_path / "out" / "deduped"
    run_example("dedup_records", ["--input", str(source), "--output", str(out)],
                beam_flags, cwd=tmp_path)
    kept = jsonl(f"{out}.jsonl")
    assert sorted(kept, key=lambda r: str(r["id"])) == [records[5], records[3], records[1]]
    assert sorted(jsonl(f"{out}.removed.jsonl"), key=lambda r: r["removed"]) == [
        {"removed": "10", "kept": "2", "reason": "exact_duplicate"},
        {"removed": "b", "kept": "a", "reason": "exact_duplicate"},
        {"removed": "c", "kept": "a", "reason": "near_duplicate",
         "jaccard": round(true_jaccard(shingle_set(records[1]["text"]),
                                       shingle_set(records[2]["text"])), 4)},
    ]
    assert sorted(jsonl(f"{out}.dead.jsonl"), key=lambda r: r["reason"]) == [
        {"reason": "bad_id", "detail": "'id' is bool",
         "record": '{"id":true,"text":"a boolean id"}'},
        {"reason": "missing_text", "detail": "no field 'text'", "record": '{"id":"x"}'},
    ]


def test_store_round_trip_example(tmp_path, beam_flags):
    roots = [str(tmp_path / "r1"), str(tmp_path / "r2"), str(tmp_path / "r3")]
    done = run_example("store_round_trip",
                       ["--roots", ",".join(roots), "--output", str(tmp_path / "counts")],
                       beam_flags, cwd=tmp_path, as_module=False)
    store = os.path.join(roots[0], store_round_trip.DATASET)
    manifest = load_manifest(store)
    assert sum(s["records"] for s in manifest["shards"]) == 1000
    assert len(manifest["shards"]) > 1                      # 16 KiB shards: several
    assert all(len(s["replicas"]) == 2 for s in manifest["shards"])
    assert f"wrote 1000 records in {len(manifest['shards'])} shards, generation 1" in done.stdout
    rows = verify_store(store)
    assert rows and {r["status"] for r in rows} == {"ok"}
    # every record stored once, byte for byte as orjson writes it, sorted by id in its shard
    lines = []
    for shard in manifest["shards"]:
        path = f"{root_paths(manifest, store)[shard['replicas'][0]]}/{manifest['dataset']}/{shard['name']}"
        shard_lines = zstandard.ZstdDecompressor().decompress(
            open(path, "rb").read()).splitlines()
        ids = [orjson.loads(line)["id"] for line in shard_lines]
        assert ids == sorted(ids)
        lines += shard_lines
    assert sorted(lines) == sorted(orjson.dumps(r) for r in store_round_trip.my_records())
    assert not [n for n in os.listdir(store) if n.startswith(".")]   # runs deleted
    counts = (tmp_path / "counts.tsv").read_text().splitlines()
    assert counts == [f"g{g}\t{143 if g < 6 else 142}" for g in range(7)]


def test_prepare_in_a_larger_pipeline_example(tmp_path, beam_flags):
    lines = [orjson.dumps(r) for r in (
        {"id": 1, "text": BASE}, {"id": 2, "text": BASE.upper()},   # exact duplicate of 1
        {"id": 3, "text": BASE + " today"},                         # near duplicate of 1
        {"id": 4, "text": OTHER}, {"id": 5, "text": THIRD})] + [b"not json", b'{"id": 9}']
    source = tmp_path / "in" / "part.jsonl"
    source.parent.mkdir()
    source.write_bytes(b"\n".join(lines) + b"\n")
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    run_example("prepare_in_a_larger_pipeline",
                ["--input", str(source), "--roots", ",".join(roots),
                 "--output", str(tmp_path / "catalogue"), "--max_bad_fraction", "0.5"], beam_flags, cwd=tmp_path,
                as_module=True)
    store = os.path.join(roots[0], "web")
    manifest = load_manifest(store)
    catalogue = jsonl(tmp_path / "catalogue.json")
    assert catalogue == [orjson.loads(prepare_in_a_larger_pipeline.catalogue_entry(manifest))]
    assert catalogue[0]["records"] == 3 and catalogue[0]["generation"] == 1
    stored = []
    for shard in manifest["shards"]:
        path = f"{root_paths(manifest, store)[shard['replicas'][0]]}/web/{shard['name']}"
        stored += zstandard.ZstdDecompressor().decompress(open(path, "rb").read()).splitlines()
    assert sorted(stored) == sorted([lines[0], lines[3], lines[4]])
    assert (tmp_path / "catalogue.dead.tsv").read_text().splitlines() == [
        "invalid_json\t1", "missing_text\t1"]
