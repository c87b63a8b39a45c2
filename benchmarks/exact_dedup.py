"""prepare_corpus (exact dedup, R=2) vs plain Beam and plain Python, same run, same files.

    python -m benchmarks.exact_dedup --corpus /work/data/c100k --repeats 3

Generates the corpus first if the folder is empty (benchmarks.corpus, 100k docs
in 8 zstd files).  Two input sizes: the first 2 files (25k docs) and all 8.
Prints a markdown table (docs/s, MB/s of raw JSONL, peak RSS of the whole
process tree, ratios to the plain-Beam baseline) and writes it as JSON.
"""
import argparse
import glob
import json
import os
import shutil
import sys

from benchmarks.corpus import write_corpus
from benchmarks.harness import median_run

PY = sys.executable


def corpus_stats(pattern: str) -> tuple[int, int]:
    import zstandard
    docs = size = 0
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().stream_reader(f).read()
        docs += data.count(b"\n")
        size += len(data)
    return docs, size


def commands(pattern: str, work: str) -> dict[str, list[str]]:
    near = ["--no_near_dedup"] if _has_flag("--no_near_dedup") else []
    return {
        "prepare_corpus (direct_multiprocess, R=2)": [
            PY, "-m", "pipelines.prepare_corpus", "--input", pattern,
            "--output_roots", f"{work}/a,{work}/b", "--replication", "2",
            "--max_bad_fraction", "0.01", "--run_config", "direct_multiprocess", *near],
        "plain Beam (direct, in_memory)": [
            PY, "-m", "benchmarks.baselines.plain_beam_dedup", "--input", pattern,
            "--output", f"{work}/beam/out", "--runner=DirectRunner",
            "--direct_running_mode=in_memory"],
        "plain Beam (direct_multiprocess)": [
            PY, "-m", "benchmarks.baselines.plain_beam_dedup", "--input", pattern,
            "--output", f"{work}/beam_mp/out", "--runner=DirectRunner",
            "--direct_running_mode=multi_processing", "--direct_num_workers=0"],
        "plain Python script (1 process)": [
            PY, "-m", "benchmarks.baselines.plain_python_dedup", "--input", pattern,
            "--output", f"{work}/py"],
    }


def _has_flag(flag: str) -> bool:
    from pipelines.prepare_corpus import build_parser
    return any(flag in action.option_strings for action in build_parser()._actions)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/data/c100k")
    parser.add_argument("--work", default="benchmarks/work/exact_dedup")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/exact_dedup.json")
    parser.add_argument("--sizes", default="25k,100k", help="which input sizes to run")
    args = parser.parse_args()
    if not glob.glob(os.path.join(args.corpus, "*.jsonl.zst")):
        write_corpus(args.corpus, 100_000, files=8, seed=0, bad_lines=10)
    sizes = {"25k": os.path.join(args.corpus, "part-00[01].jsonl.zst"),
             "100k": os.path.join(args.corpus, "part-*.jsonl.zst")}
    sizes = {f"{k} docs": v for k, v in sizes.items() if k in args.sizes.split(",")}
    results = []
    for size_name, pattern in sizes.items():
        docs, raw = corpus_stats(pattern)
        for name, cmd in commands(pattern, args.work).items():
            run = median_run(cmd, args.repeats,
                             before=lambda: shutil.rmtree(args.work, ignore_errors=True))
            results.append({"size": size_name, "system": name, "docs": docs, "raw_mb": raw / 1e6,
                            "wall_s": run["wall_s"], "walls": run["walls"], "cpu_s": run["cpu_s"],
                            "docs_per_s": docs / run["wall_s"], "mb_per_s": raw / 1e6 / run["wall_s"],
                            "peak_rss_mb": run["peak_rss_mb"]})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(table(results))


def table(results) -> str:
    lines = ["| input | system | wall s (median) | CPU s | docs/s | MB/s | peak RSS MB | docs/s vs plain Beam in_memory |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        base = next(b for b in results if b["size"] == r["size"]
                    and b["system"].startswith("plain Beam (direct, in_memory)"))
        lines.append(f"| {r['size']} | {r['system']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['docs_per_s']:,.0f} | "
                     f"{r['mb_per_s']:.1f} | {r['peak_rss_mb']:,.0f} | "
                     f"{r['docs_per_s'] / base['docs_per_s']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
