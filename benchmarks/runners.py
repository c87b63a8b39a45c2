"""prepare_corpus (exact dedup, R=2) on each runner, side by side in one run.

    python -m benchmarks.corpus --docs 100000 --files 8 --out benchmarks/data/c100k   # once
    python -m benchmarks.runners --corpus benchmarks/data/c100k --files 8 --repeats 1

For every runner: the start-up of what it needs (standalone cluster, job
server, worker pool) is timed on its own, and so is a first trivial job (what
a runner starts lazily: Spark's application and executor, the first SDK
worker); then the job runs ``--repeats``
times as ``python -m pipelines.prepare_corpus ... --job_endpoint=...`` (a
fresh process each time, so each job includes Python start and pipeline
construction, as a user's run does).  Reported: median job wall time, docs/s
(input documents / job wall), ratio to the DirectRunner, and whether the
store's manifest is identical to the DirectRunner's (it must be).  Clusters are
started one at a time and stopped after their runs.
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchmarks.harness import measure
from benchmarks.job_overhead import trivial_job
from pipelines import run_config as run_configs
from pipelines.job_services import RunnerServices

PY = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNERS = ["direct", "direct_multiprocess", "prism", "flink_local", "spark_local",
           "flink_cluster", "spark_cluster"]


def count_docs(paths: list[str]) -> int:
    import zstandard
    docs = 0
    for path in paths:
        with open(path, "rb") as f:
            docs += zstandard.ZstdDecompressor().stream_reader(f).read().count(b"\n")
    return docs


def manifest_digest(work: str) -> str:
    """Every runner writes to the same roots, so equal stores have equal manifest bytes."""
    with open(os.path.join(work, "a", "corpus", "manifest.json"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def job_command(inputs: list[str], work: str, flags: list[str]) -> list[str]:
    return [PY, "-m", "pipelines.prepare_corpus", "--input", ",".join(inputs),
            "--output_roots", f"{work}/a,{work}/b", "--replication", "2",
            "--no_near_dedup", *flags]


def cluster_script(runner: str) -> str | None:
    if runner.endswith("_cluster"):
        return os.path.join(ROOT, "scripts", f"{runner[: -len('_cluster')]}_cluster.sh")
    return None


def bench_runner(runner: str, inputs: list[str], docs: int, work: str, repeats: int) -> dict:
    script = cluster_script(runner)
    row = {"runner": runner, "cluster_start_s": None}
    try:
        if script:
            t0 = time.monotonic()
            subprocess.run([script, "start"], check=True, env={**os.environ, "PYTHON": PY})
            row["cluster_start_s"] = time.monotonic() - t0
        with RunnerServices(run_configs.flags_from(runner),
                            log_dir=os.path.join(work, "services")) as services:
            row["services_start_s"] = services.startup_seconds
            # What a runner starts at its first job (Spark's application and executor,
            # the first SDK worker), timed apart with a trivial job.
            row["warmup_s"] = trivial_job(services.flags)
            walls = []
            for _ in range(repeats):
                shutil.rmtree(os.path.join(work, "a"), ignore_errors=True)
                shutil.rmtree(os.path.join(work, "b"), ignore_errors=True)
                result = measure(job_command(inputs, work, services.flags))
                walls.append(result["wall_s"])
                print(f"  {runner}: {result['wall_s']:.1f}s (cpu {result['cpu_s']:.1f}s)",
                      file=sys.stderr, flush=True)
        row["walls"] = [round(w, 1) for w in walls]
        row["job_s"] = statistics.median(walls)
        row["docs_per_s"] = docs / row["job_s"]
        row["manifest"] = manifest_digest(work)
    finally:
        if script:
            subprocess.run([script, "stop"], check=False, env={**os.environ, "PYTHON": PY})
    return row


def table(rows: list[dict], docs: int) -> str:
    base = next((r for r in rows if r["runner"] == "direct"), rows[0])
    lines = [f"{docs:,} input documents; start-up is paid once per session, not per job.",
             "",
             "| runner | cluster start s | job server start s | first trivial job s "
             "| job wall s (median) | docs/s | vs direct | manifest = direct's |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cluster = f"{r['cluster_start_s']:.1f}" if r["cluster_start_s"] is not None else "-"
        lines.append(
            f"| {r['runner']} | {cluster} | {r['services_start_s']:.1f} | {r['warmup_s']:.1f} "
            f"| {r['job_s']:.1f} "
            f"| {r['docs_per_s']:,.0f} | {base['job_s'] / r['job_s']:.2f}x "
            f"| {'yes' if r['manifest'] == base['manifest'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="benchmarks/data/c100k")
    parser.add_argument("--files", type=int, default=8,
                        help="use the first N corpus files (12.5k docs each in c100k)")
    parser.add_argument("--runners", default=",".join(RUNNERS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", default="benchmarks/work/runners")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    inputs = sorted(glob.glob(os.path.join(args.corpus, "*.jsonl.zst")))[: args.files]
    if not inputs:
        raise SystemExit(f"no *.jsonl.zst in {args.corpus}; generate it with benchmarks.corpus")
    inputs = [os.path.abspath(p) for p in inputs]
    docs = count_docs(inputs)
    rows = []
    for runner in args.runners.split(","):
        print(f"{runner} ...", file=sys.stderr, flush=True)
        rows.append(bench_runner(runner, inputs, docs, os.path.abspath(args.work), args.repeats))
    print(table(rows, docs))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
