"""Baseline: datatrove's 4-stage MinHash dedup, its default config, LocalPipelineExecutor.

    python benchmarks/baselines/datatrove_minhash.py --input dir_with_2_files --work work/dt

Runs in a venv with ``datatrove[io]`` and spaCy (see BENCHMARKS.md); imports
nothing from this project.  Stages as in datatrove's own example: signatures
(one task per input file), buckets (one task per bucket), cluster (one task),
filter (one task per input file), each on ``--workers`` processes.  Prints the
input and kept document counts as one JSON line.
"""
import argparse
import glob
import json
import os

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
    MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter


def count_lines(folder: str) -> int:
    import gzip
    total = 0
    for path in glob.glob(os.path.join(folder, "*")):
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            total += sum(1 for _ in f)
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True, help="folder of .jsonl.zst files")
    parser.add_argument("--work", required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    files = sorted(glob.glob(os.path.join(args.input, "*.jsonl*")))
    tasks = len(files)
    config = MinhashConfig()  # defaults: 5-grams, 14 buckets x 8 hashes
    work = os.path.abspath(args.work)

    def reader():
        return JsonlReader(args.input, glob_pattern="*.jsonl*")

    stages = [
        ([reader(), MinhashDedupSignature(output_folder=f"{work}/signatures", config=config)],
         tasks, "signatures"),
        ([MinhashDedupBuckets(input_folder=f"{work}/signatures",
                              output_folder=f"{work}/buckets", config=config)],
         config.num_buckets, "buckets"),
        ([MinhashDedupCluster(input_folder=f"{work}/buckets",
                              output_folder=f"{work}/remove_ids", config=config)],
         1, "cluster"),
        ([reader(), MinhashDedupFilter(input_folder=f"{work}/remove_ids"),
          JsonlWriter(f"{work}/kept")],
         tasks, "filter"),
    ]
    for steps, stage_tasks, name in stages:
        LocalPipelineExecutor(pipeline=steps, tasks=stage_tasks,
                              workers=min(args.workers, stage_tasks),
                              logging_dir=f"{work}/logs/{name}").run()
    kept = count_lines(f"{work}/kept")
    print(json.dumps({"kept": kept, "num_perm": config.num_buckets * config.hashes_per_bucket,
                      "bands": config.num_buckets, "rows": config.hashes_per_bucket}))


if __name__ == "__main__":
    main()
