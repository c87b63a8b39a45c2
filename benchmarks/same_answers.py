"""Same answers on every runner: kept set, removed records and counters of the
default job (exact + near dedup) on one corpus, runner by runner.

    python -m benchmarks.same_answers --input '/tmp/scale_data/c100k/part-*.jsonl.zst' \\
        --run_configs direct_multiprocess,prism,flink_local,spark_local \\
        --work /tmp/same_answers --out benchmarks/results/same_answers_100k.json

Each runner runs ``pipelines.prepare_corpus --replication 1 --dataset web
--write_removed`` into the same root (one after the other, so manifests compare
byte for byte) and is summarised by: kept records (the manifest's), sha256 of
the manifest and of every shard (name and bytes), the removed records (sorted
JSON lines, digest and count per reason) and every counter of the run report
except timing ones.  Prints one table row per runner and whether each column
equals the first runner's.
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import zstandard

PY = sys.executable


def summarise(store: str) -> dict:
    with open(os.path.join(store, "manifest.json"), "rb") as f:
        body = f.read()
    manifest = json.loads(body)
    shards = hashlib.sha256()
    for name in sorted(n for n in os.listdir(store) if n.startswith("shard-")):
        with open(os.path.join(store, name), "rb") as f:
            shards.update(name.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    removed = []
    for path in sorted(glob.glob(os.path.join(store, "_audit", "removed*.jsonl.zst"))):
        with open(path, "rb") as f:
            raw = zstandard.ZstdDecompressor().stream_reader(f).read()
        removed.extend(line for line in raw.split(b"\n") if line)
    removed.sort()
    reasons: dict = {}
    for line in removed:
        reason = json.loads(line)["reason"]
        reasons[reason] = reasons.get(reason, 0) + 1
    with open(os.path.join(store, "_audit", "run_report.json"), encoding="utf-8") as f:
        report = json.load(f)
    counters = {k: v for k, v in report.get("counters", {}).items()
                if "msec" not in k and "seconds" not in k}
    return {"kept": sum(s["records"] for s in manifest["shards"]),
            "manifest": hashlib.sha256(body).hexdigest()[:16],
            "shards": shards.hexdigest()[:16],
            "removed": hashlib.sha256(b"\n".join(removed)).hexdigest()[:16],
            "removed_by_reason": dict(sorted(reasons.items())),
            "counters": hashlib.sha256(json.dumps(counters, sort_keys=True).encode())
            .hexdigest()[:16],
            "counter_values": counters}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--run_configs", default="direct_multiprocess,prism,flink_local,spark_local")
    parser.add_argument("--work", default="benchmarks/work/same_answers")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    root = os.path.abspath(args.work)
    rows = []
    for config in args.run_configs.split(","):
        shutil.rmtree(root, ignore_errors=True)
        cmd = [PY, "-m", "pipelines.prepare_corpus", "--input", args.input,
               "--output_roots", root, "--replication", "1", "--dataset", "web",
               "--write_removed", "--run_config", config]
        print(f"{config} ...", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            rows.append({"run_config": config, "error": done.stderr.strip()[-500:]})
            continue
        rows.append({"run_config": config, **summarise(os.path.join(root, "web"))})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "counter_values"}),
              file=sys.stderr, flush=True)
    first = next((r for r in rows if "error" not in r), {})
    cols = ["kept", "removed_by_reason", "manifest", "shards", "removed", "counters"]
    print("| run config | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for r in rows:
        if "error" in r:
            print(f"| {r['run_config']} | failed: {r['error'][-200:]} |")
            continue
        cells = [f"{r[c]}" + ("" if r[c] == first.get(c) else " (DIFFERS)") for c in cols]
        print(f"| {r['run_config']} | " + " | ".join(cells) + " |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
