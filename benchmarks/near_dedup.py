"""End-to-end near-dedup: our Beam NearDedup vs datatrove's 4-stage MinHash, same run.

    python -m benchmarks.near_dedup --corpus benchmarks/data/c100k \
        --baseline_python /work/venvs/bench-minhash/bin/python

The corpus' valid records are rewritten into 2 zstd JSONL files (datatrove's
setup: input split in 2 files, 2 workers); both systems read those same files
and write the kept documents.  Ours runs on run_configs/direct_multiprocess.yaml.
Reports wall time, docs/s, peak RSS of the whole process tree, documents
removed, and recall of the planted near copies (truth.json) for both.
"""
import argparse
import glob
import json
import os
import shutil
import sys

import subprocess
import time

import orjson
import psutil
import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))


def prepare_input(corpus: str, out_dir: str, files: int = 2, limit: int | None = None) -> set[str]:
    """Valid records of ``corpus`` into ``files`` zstd JSONL files; returns their ids."""
    os.makedirs(out_dir, exist_ok=True)
    writers = [zstandard.ZstdCompressor(level=3).stream_writer(
        open(os.path.join(out_dir, f"part-{i}.jsonl.zst"), "wb")) for i in range(files)]
    ids = set()
    for path in sorted(glob.glob(os.path.join(corpus, "*.jsonl.zst"))):
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().stream_reader(f).read()
        for line in data.splitlines():
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not (isinstance(record, dict) and isinstance(record.get("id"), str)
                    and isinstance(record.get("text"), str)):
                continue
            writers[len(ids) % files].write(line + b"\n")
            ids.add(record["id"])
            if limit and len(ids) == limit:
                break
        if limit and len(ids) == limit:
            break
    for w in writers:
        w.close()
    return ids


def measure(cmd: list[str], poll_seconds: float = 0.2) -> dict:
    """Wall time, peak summed RSS and CPU seconds (user + system) of a process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    peak, cpu = 0, {}
    while proc.poll() is None:
        rss = 0
        for p in [root] + root.children(recursive=True):
            try:
                rss += p.memory_info().rss
                times = p.cpu_times()
                cpu[p.pid, p.create_time()] = times.user + times.system
            except psutil.Error:
                pass
        peak = max(peak, rss)
        time.sleep(poll_seconds)
    wall = time.perf_counter() - start
    output = proc.stdout.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{output[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": peak / 2**20, "cpu_s": sum(cpu.values()),
            "output": output}


def kept_ids(folder: str) -> set[str]:
    import gzip
    ids = set()
    for path in glob.glob(os.path.join(folder, "*")):
        if path.endswith(".zst"):
            with open(path, "rb") as f:
                data = zstandard.ZstdDecompressor().stream_reader(f).read()
        elif path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            continue
        ids.update(orjson.loads(line)["id"] for line in data.splitlines() if line)
    return ids


def planted_recall(corpus: str, kept: set[str], inputs: set[str]) -> dict:
    """Share of planted copies (by edit rate) of which the copy or its source is gone."""
    truth = orjson.loads(open(os.path.join(corpus, "truth.json"), "rb").read())["planted"]
    by_rate: dict[str, list[int]] = {}
    for line, planted in truth.items():
        copy_id = f"doc-{int(line.split('-')[1]):08d}"
        source = planted.get("near_of") or planted.get("exact_of")
        if not source or copy_id not in inputs or source not in inputs:
            continue
        rate = "exact" if "exact_of" in planted else str(planted["edit_rate"])
        hit = copy_id not in kept or source not in kept
        by_rate.setdefault(rate, [0, 0])
        by_rate[rate][0] += hit
        by_rate[rate][1] += 1
    return {rate: round(hits / total, 4) for rate, (hits, total) in sorted(by_rate.items())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/data/c100k")
    parser.add_argument("--work", default="benchmarks/work/near_dedup")
    parser.add_argument("--docs", type=int, default=None, help="use only the first N records")
    parser.add_argument("--baseline_python", default="/work/venvs/bench-minhash/bin/python")
    parser.add_argument("--run_config", default="direct_multiprocess")
    parser.add_argument("--skip_baseline", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/near_dedup.json")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    inputs = os.path.join(args.work, "input")
    input_ids = prepare_input(args.corpus, inputs, files=2, limit=args.docs)
    docs = len(input_ids)
    print(f"{docs} documents in 2 files", file=sys.stderr)
    systems = {
        f"beam-dataprep NearDedup ({args.run_config})": (
            [sys.executable, "-m", "benchmarks.near_dedup_pipeline",
             "--input", os.path.join(inputs, "*.jsonl.zst"),
             "--output", os.path.join(args.work, "ours", "kept"),
             "--run_config", args.run_config], os.path.join(args.work, "ours")),
    }
    if not args.skip_baseline:
        systems["datatrove 0.10 MinHash, 4 stages (LocalPipelineExecutor, 2 workers)"] = (
            [args.baseline_python, os.path.join(HERE, "baselines", "datatrove_minhash.py"),
             "--input", inputs, "--work", os.path.join(args.work, "datatrove"), "--workers", "2"],
            os.path.join(args.work, "datatrove", "kept"))
    results = []
    for name, (cmd, kept_dir) in systems.items():
        run = measure(cmd)
        kept = kept_ids(kept_dir)
        results.append({"system": name, "docs": docs, "wall_s": round(run["wall_s"], 1),
                        "docs_per_s": round(docs / run["wall_s"], 1),
                        "cpu_s": round(run["cpu_s"], 1),
                        "docs_per_cpu_s": round(docs / run["cpu_s"], 1),
                        "peak_rss_mb": round(run["peak_rss_mb"]), "removed": docs - len(kept),
                        "caught_planted": planted_recall(args.corpus, kept, input_ids)})
        print(f"  {name}: {run['wall_s']:.1f}s, {docs - len(kept)} removed", file=sys.stderr)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    base = results[-1]
    print("| system | wall s | docs/s | CPU s | docs/CPU s | peak RSS MB | removed "
          "| docs/s vs datatrove | docs/CPU s vs datatrove |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['system']} | {r['wall_s']} | {r['docs_per_s']:,.0f} | {r['cpu_s']:,.0f} "
              f"| {r['docs_per_cpu_s']:,.0f} | {r['peak_rss_mb']:,} | {r['removed']:,} "
              f"| {r['docs_per_s'] / base['docs_per_s']:.1f}x "
              f"| {r['docs_per_cpu_s'] / base['docs_per_cpu_s']:.1f}x |")
    for r in results:
        print(f"\n{r['system']}: share of planted copies caught, by edit rate: "
              f"{r['caught_planted']}")


if __name__ == "__main__":
    main()
