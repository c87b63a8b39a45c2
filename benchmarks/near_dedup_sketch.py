"""prepare_corpus before and after sketch verification, same run, same corpus:
counts, speed, and the removed documents' exact Jaccard with their kept ones.

    git archive 77594e5 | tar -x -C /tmp/base          # the code before, once
    python -m benchmarks.near_dedup_sketch --input '/tmp/c100k/*.jsonl.zst' \\
        --baseline_tree /tmp/base --out benchmarks/results/near_dedup_sketch.json

Runs the default job (``--write_removed``, R=1, ``--run_config
direct_multiprocess``) from ``--baseline_tree`` (its own sources and worker
processes: ``cd`` there and ``PYTHONPATH``) and from this tree; reports wall,
CPU seconds and peak RSS of the process tree, peak bytes on disk of the
output folder, the kept / exact / near-removed counts, and, against the exact
shingle Jaccard J (``transforms.reduction.minhash.shingle_set``, words or
characters by ``auto``) computed from the texts:

* precision: near-removed documents whose J with the document kept for them
  (their removed record's ``kept``) is >= the threshold;
* recall (restricted to the pairs either run grouped): of every pair of
  documents that either run put in one group (a kept document and the ones
  removed for it) with J >= the threshold, the share not left whole in the
  run's output (at least one of the two removed).
"""
import argparse
import glob
import io
import json
import os
import shutil
import sys
from itertools import combinations

import orjson
import zstandard

from benchmarks.harness import measure
from transforms.reduction.minhash import shingle_set, true_jaccard

PY = sys.executable
THRESHOLD = 0.8


def _records(pattern: str):
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().stream_reader(f).read()
        for line in data.splitlines():
            if line.strip():
                yield line


def run_job(tree: str, pattern: str, out: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["sh", "-c", f"cd '{tree}' && PYTHONPATH='{tree}' exec '{PY}' -m pipelines.prepare_corpus "
           f"--input '{pattern}' --output_roots '{out}' --replication 1 --dataset web "
           f"--write_removed --run_config direct_multiprocess"]
    result = measure(cmd, watch_dir=out)
    with open(os.path.join(out, "web", "_audit", "run_report.json")) as f:
        report = json.load(f)
    removed = [orjson.loads(line) for line in _records(f"{out}/web/_audit/removed*.jsonl.zst")]
    kept_ids = {orjson.loads(line)["id"] for line in _records(f"{out}/web/shard-*.jsonl.zst")}
    return {"wall_s": result["wall_s"], "cpu_s": result["cpu_s"],
            "peak_rss_mb": result["peak_rss_mb"], "peak_disk_mb": result["peak_disk_mb"],
            "counters": report["counters"], "removed": removed, "kept_ids": kept_ids}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--baseline_tree", required=True)
    parser.add_argument("--work", default="benchmarks/work/near_dedup_sketch")
    parser.add_argument("--out", default="benchmarks/results/near_dedup_sketch.json")
    args = parser.parse_args(argv)
    runs = {}
    for name, tree in (("before (signature estimate)", os.path.abspath(args.baseline_tree)),
                       ("after (sketch, anchored)", os.getcwd())):
        runs[name] = run_job(tree, os.path.abspath(args.input) if not args.input.startswith("/")
                             else args.input, os.path.abspath(os.path.join(args.work, str(len(runs)))))
        print(f"{name}: {runs[name]['wall_s']:.0f} s wall, {runs[name]['cpu_s']:.0f} CPU s",
              file=sys.stderr, flush=True)
    near = {name: [r for r in run["removed"] if r["reason"] == "near_duplicate"]
            for name, run in runs.items()}
    groups = []
    for records in near.values():
        by_kept = {}
        for r in records:
            by_kept.setdefault(r["kept"], {r["kept"]}).add(r["removed"])
        groups += list(by_kept.values())
    needed = set().union(*groups) if groups else set()
    texts = {}
    for line in _records(args.input):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # the corpus' planted bad lines
        if isinstance(record, dict) and record.get("id") in needed:
            texts[record["id"]] = record["text"]
    sets = {doc_id: shingle_set(text) for doc_id, text in texts.items()}
    pairs = {(a, b) for group in groups for a, b in combinations(sorted(group), 2)}
    sims = {p: true_jaccard(sets[p[0]], sets[p[1]]) for p in pairs}
    similar = [p for p, j in sims.items() if j >= THRESHOLD]
    rows = []
    for name, run in runs.items():
        c = run["counters"]
        precise = sum(true_jaccard(sets[r["removed"]], sets[r["kept"]]) >= THRESHOLD
                      for r in near[name])
        caught = sum(not (a in run["kept_ids"] and b in run["kept_ids"]) for a, b in similar)
        rows.append({"run": name, "wall_s": round(run["wall_s"], 1), "cpu_s": round(run["cpu_s"], 1),
                     "docs_per_cpu_s": round(100_000 / run["cpu_s"]),
                     "peak_rss_mb": round(run["peak_rss_mb"]), "peak_disk_mb": round(run["peak_disk_mb"]),
                     "kept": len(run["kept_ids"]),
                     "exact_removed": sum(r["reason"] == "exact_duplicate" for r in run["removed"]),
                     "near_removed": len(near[name]),
                     "precision": [precise, len(near[name])], "recall_grouped_pairs": [caught, len(similar)],
                     "near_counters": {k: v for k, v in c.items() if k.startswith("near_dedup/")}})
    print("| run | wall s | CPU s | peak RSS MB | peak disk MB | kept | exact removed | near removed "
          "| precision J(kept)>=0.8 | recall, grouped pairs J>=0.8 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        p, q = r["precision"], r["recall_grouped_pairs"]
        print(f"| {r['run']} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']:,} | {r['peak_disk_mb']:,} | "
              f"{r['kept']:,} | {r['exact_removed']:,} | {r['near_removed']:,} | "
              f"{p[0]}/{p[1]} = {p[0] / max(1, p[1]):.4f} | {q[0]}/{q[1]} = {q[0] / max(1, q[1]):.4f} |")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
