"""The filter stage's cost inside prepare_corpus: the default job with and without
a recipe on the same corpus, same run, and the stage's own CPU measured apart.

    python -m benchmarks.filters_job --docs 100k --run_config direct_multiprocess \\
        --out benchmarks/results/filters_job.json

The corpus is ``benchmarks.corpus`` (8 zstd files, seed 0, 10 bad lines),
generated into ``--data`` once (``benchmarks.scale.corpus_for``).  Rows:

* prepare_corpus with its defaults (exact and near dedup), R=1, on
  ``--run_config``: without filters (baseline), and with ``--recipe web``
  (plus any ``--filter_flags``).  CPU seconds and peak RSS of the process
  tree (``benchmarks.harness``), so worker processes are counted.
* the filter stage alone: ``FilterStage.decide_block`` (what the scan calls per
  block of documents: the recipe's filters, language ID, redaction when asked) over
  every document of the same corpus in this process, CPU seconds of those
  calls only (reading and JSON parsing excluded).  Its share of the
  job-with-filters CPU is the stage's share of the job.

The with-filters job does less work after the scan (documents the recipe drops
are never deduplicated or stored), so the difference of the two job rows
understates the stage's cost; the share uses the standalone figure.
"""
import argparse
import glob
import json
import os
import shutil
import sys
import time

import orjson

from benchmarks.harness import measure
from benchmarks.scale import corpus_for, parse_size

PY = sys.executable


def filter_cpu(pattern: str, recipe: str, redact_pii: bool, files: int = 0,
               per_document: bool = False) -> dict:
    """CPU seconds of ``FilterStage.decide_block`` (what the scan calls) over every
    document of the corpus (of its first ``files`` files when > 0), in the scan's
    blocks; ``per_document``: ``FilterStage.decide`` one document at a time instead."""
    from transforms.core.records import Bounds
    bounds = Bounds()
    from transforms.processing.io import open_text_stream
    from transforms.reduction.filters.base import dict_counter
    from transforms.reduction.filters.recipes import load_recipe
    from transforms.reduction.filters.stage import FilterStage
    stage = FilterStage(recipe=load_recipe(recipe), redact_pii=redact_pii)
    counts, inc = dict_counter()
    stage.setup(inc)
    stage.decide("warm-up", "The model is loaded before the clock starts.")
    counts.clear()
    cpu = 0.0
    docs = kept = 0
    paths = sorted(glob.glob(pattern))
    for path in paths[:files] if files else paths:
        with open_text_stream(path) as stream:
            data = b""
            while True:
                chunk = stream.read(1 << 24)
                if not chunk:
                    break
                data += chunk
        block, text_bytes = [], 0
        lines = data.splitlines()
        for n, line in enumerate(lines):
            try:
                record = orjson.loads(line)
                text = record["text"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                text = None
            if isinstance(text, str) and text.strip():
                block.append((str(record.get("id")), text))
                text_bytes += len(text)
            # the scan's blocks: 4,096 documents or ScanBounds.text_bytes of text
            if block and (text_bytes >= bounds.text_bytes or len(block) >= 4096
                          or n == len(lines) - 1):
                start = time.process_time()
                if per_document:
                    decisions = [stage.decide(doc_id, text) for doc_id, text in block]
                else:
                    decisions = stage.decide_block(block)
                cpu += time.process_time() - start
                docs += len(block)
                kept += sum(d.drop is None for d in decisions)
                block, text_bytes = [], 0
    return {"cpu_s": cpu, "docs": docs, "kept": kept, "docs_per_cpu_s": docs / cpu,
            "counters": dict(sorted(counts.items()))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default="100k")
    parser.add_argument("--run_config", default="direct_multiprocess")
    parser.add_argument("--data", default="benchmarks/data")
    parser.add_argument("--work", default="benchmarks/work/filters_job")
    parser.add_argument("--recipe", default="web")
    parser.add_argument("--redact_pii", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/filters_job.json")
    parser.add_argument("--stage_only", action="store_true",
                        help="measure the filter stage alone (no jobs)")
    parser.add_argument("--stage_files", type=int, default=0,
                        help="files of the corpus the stage-alone figure reads (0: all)")
    parser.add_argument("--per_document", action="store_true",
                        help="stage alone: decide() per document instead of decide_block()")
    args = parser.parse_args(argv)
    docs = parse_size(args.docs)
    pattern = corpus_for(args.data, docs)
    if args.stage_only:
        alone = filter_cpu(pattern, args.recipe, args.redact_pii, args.stage_files,
                           args.per_document)
        print(json.dumps(alone, indent=1))
        return
    base = [PY, "-m", "pipelines.prepare_corpus", "--input", pattern,
            "--output_roots", f"{args.work}/a", "--run_config", args.run_config]
    filter_flags = ["--recipe", args.recipe] + (["--redact_pii"] if args.redact_pii else [])
    rows = []
    for name, cmd in (("prepare_corpus, no filters", base),
                      (f"prepare_corpus, {' '.join(filter_flags)}", base + filter_flags)):
        shutil.rmtree(args.work, ignore_errors=True)
        run = measure(cmd)
        report = json.load(open(os.path.join(args.work, "a", "corpus", "_audit",
                                             "run_report.json")))
        rows.append({"system": name, "wall_s": run["wall_s"], "cpu_s": run["cpu_s"],
                     "peak_rss_mb": run["peak_rss_mb"],
                     "stored": report["counters"].get("store/records")})
        print(rows[-1], file=sys.stderr)
    shutil.rmtree(args.work, ignore_errors=True)
    alone = filter_cpu(pattern, args.recipe, args.redact_pii, args.stage_files)
    result = {"docs": docs, "run_config": args.run_config, "jobs": rows,
              "filter_stage": alone,
              "filter_share_of_job_cpu": alone["cpu_s"] / rows[1]["cpu_s"]}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(table(result))


def table(result) -> str:
    lines = ["| system | wall s | CPU s | peak RSS MB | documents stored |",
             "|---|---:|---:|---:|---:|"]
    for r in result["jobs"]:
        lines.append(f"| {r['system']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                     f"{r['peak_rss_mb']:,.0f} | {r['stored']:,} |")
    a = result["filter_stage"]
    lines.append(f"| filter stage alone ({a['docs']:,} docs, {a['kept']:,} kept) | - | "
                 f"{a['cpu_s']:.1f} | - | - |")
    lines.append(f"\nfilter stage share of the with-filters job's CPU: "
                 f"{result['filter_share_of_job_cpu']:.1%}; "
                 f"{a['docs_per_cpu_s']:,.0f} docs per CPU second")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
