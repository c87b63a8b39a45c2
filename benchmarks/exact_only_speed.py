"""Issue 10's exact-only speed targets, measured interleaved (A B A B ...).

    python -m benchmarks.exact_only_speed --size 100k --data /tmp/scale_data --repeats 3
    python -m benchmarks.exact_only_speed --size 1m --data /tmp/scale_data --repeats 2

prepare_corpus with ``--no_near_dedup`` (R=2 on two roots, ``direct_multiprocess``,
2 workers) against its baseline on the same files: at 100k plain Beam
(``benchmarks/baselines/plain_beam_dedup.py``, in-memory DirectRunner, the
baseline of ``benchmarks/exact_dedup.py``), at 1M the plain-Python script
(``benchmarks/baselines/plain_python_dedup.py``), the baseline of
``benchmarks/scale.py``.  The systems alternate run by run, so a shared
machine's load falls on both alike.  Per system: every wall, the median wall,
the median CPU seconds and the largest peak RSS of the process tree; docs/s is
documents over the median wall; the ratio is ours over the baseline's docs/s,
by medians and per pair (run i of ours against run i of the baseline).

``--before DIR`` adds prepare_corpus run from another checkout (e.g. ``git
archive <commit> | tar -x -C DIR``) to the rotation, so a change's effect is
measured in the same run as the targets.  For prepare_corpus also the peak bytes on
disk of its output folders (spill runs and store; sampled every 0.5 s) over the
store's bytes at the end (issue 10: within about 1.5x).
"""
import argparse
import json
import os
import shutil
import statistics
import sys

from benchmarks.exact_dedup import corpus_stats
from benchmarks.harness import folder_bytes, measure
from benchmarks.scale import corpus_for, parse_size

PY = sys.executable


def commands(pattern: str, work: str, baseline: str) -> dict[str, list[str]]:
    ours = {"prepare_corpus (direct_multiprocess, R=2, --no_near_dedup)": [
        PY, "-m", "pipelines.prepare_corpus", "--input", pattern,
        "--output_roots", f"{work}/a,{work}/b", "--replication", "2",
        "--run_config", "direct_multiprocess", "--no_near_dedup"]}
    if baseline == "beam":
        base = {"plain Beam (direct, in_memory)": [
            PY, "-m", "benchmarks.baselines.plain_beam_dedup", "--input", pattern,
            "--output", f"{work}/beam/out", "--runner=DirectRunner",
            "--direct_running_mode=in_memory"]}
    else:
        base = {"plain Python script (1 process)": [
            PY, "-m", "benchmarks.baselines.plain_python_dedup", "--input", pattern,
            "--output", f"{work}/py"]}
    return {**ours, **base}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100k", help="100k (vs plain Beam) or 1m (vs plain Python)")
    parser.add_argument("--baseline", choices=("beam", "python"),
                        help="default: beam at 100k, python otherwise")
    parser.add_argument("--data", default="benchmarks/data")
    parser.add_argument("--work", default="benchmarks/work/exact_only_speed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/exact_only_speed.json")
    parser.add_argument("--before", metavar="DIR",
                        help="also run prepare_corpus from this checkout (same flags)")
    parser.add_argument("--before_name", default="before",
                        help="label of the --before checkout in the table")
    args = parser.parse_args(argv)
    args.work, args.data = os.path.abspath(args.work), os.path.abspath(args.data)
    docs_wanted = parse_size(args.size)
    baseline = args.baseline or ("beam" if docs_wanted <= 100_000 else "python")
    pattern = corpus_for(args.data, docs_wanted)
    docs, raw = corpus_stats(pattern)
    cmds = commands(pattern, args.work, baseline)
    cwds = {}
    if args.before:
        ours_name, ours_cmd = next(iter(cmds.items()))
        name = f"{ours_name.split(' (')[0]} at {args.before_name}"
        cmds = {**cmds, name: ours_cmd}
        cwds[name] = os.path.abspath(args.before)
    runs = {name: [] for name in cmds}
    for i in range(args.repeats):
        for name, cmd in cmds.items():
            shutil.rmtree(args.work, ignore_errors=True)
            ours = name.startswith("prepare_corpus")
            run = measure(cmd, cwd=cwds.get(name), watch_dir=args.work if ours else None)
            run.pop("output")
            if ours:   # the store on both roots, once the spill is gone (audit files in)
                run["store_mb"] = folder_bytes(args.work) / 2**20
            run["load_avg"] = os.getloadavg()
            runs[name].append(run)
            disk = (f" disk {run['peak_disk_mb']:.0f}/{run['store_mb']:.0f}MB" if ours else "")
            print(f"  [{i}] {run['wall_s']:.1f}s cpu {run['cpu_s']:.1f}s "
                  f"{run['peak_rss_mb']:.0f}MB{disk} load {run['load_avg'][0]:.1f}  {name}",
                  file=sys.stderr)
    shutil.rmtree(args.work, ignore_errors=True)
    rows = []
    for name, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        rows.append({"size": args.size, "docs": docs, "raw_mb": raw / 1e6, "system": name,
                     "walls": [round(r["wall_s"], 1) for r in rs], "wall_s": wall,
                     "cpus": [round(r["cpu_s"], 1) for r in rs],
                     "cpu_s": statistics.median(r["cpu_s"] for r in rs),
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                     "docs_per_s": docs / wall,
                     "load_avg": [r["load_avg"][0] for r in rs],
                     "process_cpu_s": [r["process_cpu_s"] for r in rs]})
        if "store_mb" in rs[0]:   # prepare_corpus: peak disk of its folders over the store
            rows[-1].update(store_mb=max(r["store_mb"] for r in rs),
                            peak_disk_mb=max(r["peak_disk_mb"] for r in rs))
            rows[-1]["peak_disk_over_store"] = rows[-1]["peak_disk_mb"] / rows[-1]["store_mb"]
    base = rows[1]
    for ours in rows[:1] + rows[2:]:
        ours["ratio"] = ours["docs_per_s"] / base["docs_per_s"]
        ours["pair_ratios"] = [round(b["wall_s"] / a["wall_s"], 2)
                               for a, b in zip(runs[ours["system"]], runs[base["system"]])]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(table(rows))


def table(rows) -> str:
    lines = ["| docs | system | walls s | wall s (median) | CPU s (median) | peak RSS MB | "
             "docs/s | vs baseline (medians; per pair) | peak disk / store |",
             "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        disk = (f"{r['peak_disk_over_store']:.2f}x ({r['peak_disk_mb']:,.0f} / "
                f"{r['store_mb']:,.0f} MB)" if "peak_disk_over_store" in r else "-")
        ratio = (f"**{r['ratio']:.2f}x**; " + ", ".join(f"{x:.2f}" for x in r["pair_ratios"])
                 if "ratio" in r else "1.00x")
        lines.append(f"| {r['size']} | {r['system']} | {', '.join(f'{w:.1f}' for w in r['walls'])} | "
                     f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:,.0f} | "
                     f"{r['docs_per_s']:,.0f} | {ratio} | {disk} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
