"""Shard-size balance: size-balanced cuts vs the former hash-mod-n assignment.

    python -m benchmarks.shard_balance --corpus benchmarks/data/c100k --target 8MiB

Runs prepare_corpus on the corpus with ``--partition_by source`` (and,
separately, ``--range_by length``), then, for every partition, compares the
shards it wrote with what ``shard_of(id) = xxh3(id) mod n`` (the assignment
before size balancing) gives on the very same records and ``n``: max/mean
shard size, the largest shard against the target, and how far above the
target a shard goes beyond its own largest record.
"""
import argparse
import json
import os
import shutil
import sys
from collections import defaultdict

from apache_beam.io.filesystems import FileSystems  # noqa: F401 - registers local FS

from benchmarks.harness import measure
from pipelines.cli import byte_size
from transforms.core.hashing import shard_of
from transforms.storage.store import load_manifest, read_shard_verified

PY = sys.executable


def run_store(corpus: str, work: str, target: int, flags: list[str]) -> tuple[str, float]:
    shutil.rmtree(work, ignore_errors=True)
    cmd = [PY, "-m", "pipelines.prepare_corpus", "--input", os.path.join(corpus, "part-*"),
           "--output_roots", os.path.join(work, "a"), "--replication", "1",
           "--target_shard_bytes", str(target), "--run_config", "direct", *flags]
    result = measure(cmd)
    return os.path.join(work, "a", "corpus"), result["wall_s"]


def stats(sizes: list[int], largest: list[int], target: int) -> dict:
    mean = sum(sizes) / len(sizes)
    return {
        "shards": len(sizes),
        "max_over_mean": round(max(sizes) / mean, 4),
        "max_mb": round(max(sizes) / 1e6, 3),
        "min_mb": round(min(sizes) / 1e6, 3),
        "over_target_beyond_one_record": max(0, max(s - r - target for s, r in zip(sizes, largest))),
    }


def compare(store: str, target: int) -> list[dict]:
    manifest = load_manifest(store)
    by_partition = defaultdict(list)
    for shard in manifest["shards"]:
        by_partition[shard.get("partition", "")].append(shard)
    rows = []
    for partition, shards in sorted(by_partition.items()):
        records = []  # (id, raw size) of every record, from the shards themselves
        ours, ours_largest = [], []
        for shard in shards:
            lines = read_shard_verified(manifest, store, shard).split(b"\n")[:-1]
            sizes = [len(line) + 1 for line in lines]
            ours.append(sum(sizes))
            ours_largest.append(max(sizes, default=0))
            records += [(json.loads(line)["id"], size) for line, size in zip(lines, sizes)]
        n = len(shards)
        hashed, hashed_largest = [0] * n, [0] * n
        for record_id, size in records:
            j = shard_of(record_id, n)
            hashed[j] += size
            hashed_largest[j] = max(hashed_largest[j], size)
        rows.append({"partition": partition or "(all)", "records": len(records),
                     "balanced": stats(ours, ours_largest, target),
                     "hash_mod_n": stats(hashed, hashed_largest, target)})
    return rows


def markdown(title: str, rows: list[dict], target: int, wall: float) -> str:
    out = [f"**{title}** (target {target / 2**20:g} MiB, prepare_corpus {wall:.0f}s wall)", "",
           "| partition | records | shards | max/mean balanced | max/mean hash mod n "
           "| max MB balanced | max MB hash mod n | MB over target beyond one record: "
           "balanced / hash |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b, h = r["balanced"], r["hash_mod_n"]
        out.append(
            f"| {r['partition']} | {r['records']:,} | {b['shards']} | {b['max_over_mean']:.4f} "
            f"| {h['max_over_mean']:.4f} | {b['max_mb']:.2f} | {h['max_mb']:.2f} "
            f"| {b['over_target_beyond_one_record'] / 1e6:.3f} / "
            f"{h['over_target_beyond_one_record'] / 1e6:.3f} |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/data/c100k")
    parser.add_argument("--target", type=byte_size, default=8 << 20)
    parser.add_argument("--work", default="benchmarks/work/shard_balance")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    results = {}
    for title, flags in [("--partition_by source", ["--partition_by", "source"]),
                         ("--range_by length --num_ranges 4",
                          ["--range_by", "length", "--num_ranges", "4"])]:
        store, wall = run_store(args.corpus, os.path.join(args.work, title.split()[0][2:]),
                                args.target, flags)
        rows = compare(store, args.target)
        results[title] = {"wall_s": wall, "rows": rows}
        print(markdown(title, rows, args.target, wall))
        print()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
