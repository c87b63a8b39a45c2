"""prepare_corpus at growing sizes (near-dedup on, the default job) next to the
plain-Python exact-dedup script, same run, same files.

    python -m benchmarks.scale --sizes 100k,300k --run_config direct_multiprocess \\
        --data /work/data --out benchmarks/results/scale.json

For each size N a corpus ``<data>/c<N>`` (benchmarks.corpus: 8 zstd files,
seed 0, 10 bad lines) is generated if missing.  prepare_corpus runs with its
defaults (exact and near dedup) on the given run config, R=2 on two roots;
the baseline is ``benchmarks/baselines/plain_python_dedup.py`` (one process,
exact dedup only, all in memory).  Reported per system and size: wall, CPU
seconds and peak RSS of the whole process tree (polled every 0.1 s; Java
included for the Flink and Spark configs), docs/s, docs per CPU second, and
for prepare_corpus the peak bytes on disk of its output folders (spilled runs
included) over the final store's bytes.
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import sys

from benchmarks.corpus import write_corpus
from benchmarks.harness import folder_bytes, median_run

PY = sys.executable


def parse_size(text: str) -> int:
    text = text.strip().lower()
    for suffix, factor in (("k", 1_000), ("m", 1_000_000)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * factor)
    return int(text)


def corpus_for(data: str, docs: int) -> str:
    """The input pattern of an N-document corpus, generated once."""
    name = f"c{docs // 1_000_000}m" if docs % 1_000_000 == 0 else f"c{docs // 1000}k"
    folder = os.path.join(data, name)
    if not glob.glob(os.path.join(folder, "part-*.jsonl.zst")):
        print(f"generating {docs} documents into {folder}", file=sys.stderr)
        write_corpus(folder, docs, files=8, seed=0, bad_lines=10)
    return os.path.join(folder, "part-*.jsonl.zst")


def store_digests(work: str) -> dict:
    """sha256 (first 16 hex) of the manifest and of every file of the store on
    both roots (path and bytes, audit files and spills left out), so runs on
    different runners compare byte for byte after their folders are gone."""
    digests = {}
    shards = hashlib.sha256()  # every shard file by name and bytes, whichever root holds it
    names = sorted({(name, root) for root in ("a", "b")
                    for name in os.listdir(os.path.join(work, root, "corpus"))
                    if name.startswith("shard-")})
    done = set()
    for name, root in names:
        if name not in done:
            done.add(name)
            with open(os.path.join(work, root, "corpus", name), "rb") as f:
                shards.update(name.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    digests["shards"] = shards.hexdigest()[:16]
    for root in ("a", "b"):
        base = os.path.join(work, root, "corpus")
        files = hashlib.sha256()
        for dirpath, dirnames, names in sorted(os.walk(base)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
            for name in sorted(names):
                path = os.path.join(dirpath, name)
                files.update(os.path.relpath(path, base).encode() + b"\0")
                with open(path, "rb") as f:
                    files.update(hashlib.sha256(f.read()).digest())
        digests[f"store_{root}"] = files.hexdigest()[:16]
    with open(os.path.join(work, "a", "corpus", "manifest.json"), "rb") as f:
        body = f.read()
    digests["manifest"] = hashlib.sha256(body).hexdigest()[:16]
    # Runs in different --work folders: the roots (and so the replica placement and the
    # generation digest) differ; everything else must not.
    manifest = json.loads(body)
    for key in ("roots", "digest"):
        manifest.pop(key, None)
    for shard in manifest.get("shards", []):
        shard.pop("replicas", None)
    digests["manifest_without_roots"] = hashlib.sha256(
        json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    return digests


def commands(pattern: str, work: str, run_config: str,
             baseline: bool = True, near_dedup: bool = True) -> dict[str, list[str]]:
    what = "" if near_dedup else ", --no_near_dedup"
    return {
        f"prepare_corpus ({run_config}, R=2{what})": [
            PY, "-m", "pipelines.prepare_corpus", "--input", pattern,
            "--output_roots", f"{work}/a,{work}/b", "--replication", "2",
            "--run_config", run_config] + ([] if near_dedup else ["--no_near_dedup"]),
        **({} if not baseline else {"plain Python script (exact only, 1 process)": [
            PY, "-m", "benchmarks.baselines.plain_python_dedup", "--input", pattern,
            "--output", f"{work}/py"]}),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,300k",
                        help="comma-separated document counts (100k, 1m, ...)")
    parser.add_argument("--run_config", default="direct_multiprocess")
    parser.add_argument("--data", default="benchmarks/data")
    parser.add_argument("--work", default="benchmarks/work/scale")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no_baseline", action="store_true",
                        help="leave out the plain-Python script (e.g. a second runner at "
                             "a size whose baseline is already measured)")
    parser.add_argument("--no_near_dedup", action="store_true",
                        help="run prepare_corpus exact-only (its --no_near_dedup)")
    parser.add_argument("--out", default="benchmarks/results/scale.json")
    args = parser.parse_args(argv)
    results = []
    for size in args.sizes.split(","):
        docs = parse_size(size)
        pattern = corpus_for(args.data, docs)
        for name, cmd in commands(pattern, args.work, args.run_config,
                                  not args.no_baseline, not args.no_near_dedup).items():
            ours = name.startswith("prepare_corpus")
            run = median_run(cmd, args.repeats,
                             before=lambda: shutil.rmtree(args.work, ignore_errors=True),
                             watch_dir=args.work if ours else None)
            row = {"size": size, "docs": docs, "system": name, "wall_s": run["wall_s"],
                   "walls": run["walls"], "cpu_s": run["cpu_s"],
                   "peak_rss_mb": run["peak_rss_mb"], "docs_per_s": docs / run["wall_s"],
                   "docs_per_cpu_s": docs / run["cpu_s"]}
            if ours:
                store = folder_bytes(args.work)
                row["store_mb"] = store / 2**20
                row["peak_disk_mb"] = run["peak_disk_mb"]
                row["peak_disk_over_store"] = run["peak_disk_mb"] * 2**20 / store
                row["run_config"] = args.run_config
                row.update(store_digests(args.work))
                row["load_avg"] = os.getloadavg()
            results.append(row)
            print(table(results[-1:]), file=sys.stderr)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(table(results))


def table(results) -> str:
    lines = ["| docs | system | wall s | CPU s | peak RSS MB | docs/s | docs/CPU s | "
             "peak disk / store |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        disk = f"{r['peak_disk_over_store']:.2f}x" if "peak_disk_over_store" in r else "-"
        lines.append(f"| {r['size']} | {r['system']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                     f"{r['peak_rss_mb']:,.0f} | {r['docs_per_s']:,.0f} | "
                     f"{r['docs_per_cpu_s']:,.0f} | {disk} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
