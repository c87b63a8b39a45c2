"""CPU seconds to build the ``PrepareCorpus`` pipeline (not run), with and without
``transforms.processing.option_views`` (each options view made once), in one process.

    python -m benchmarks.build_cost --repeats 5
    python -m benchmarks.build_cost --repeats 5 --flags=--no_near_dedup

Builds alternate between Beam's own ``PipelineOptions.view_as`` (the composite's
``reused_option_views`` block replaced by a no-op) and the reused views, ``--repeats``
of each, so load on the machine hits both alike; each build parses the same flags
(the bundled sample as input, ``--run_config direct``) into a new ``beam.Pipeline``.
Prints one JSON object: per variant the CPU seconds of each build, their median, and
how many times Beam's argument parser parsed flags during one build.
"""
import argparse
import contextlib
import json
import statistics
import tempfile
import time

import apache_beam as beam
from apache_beam.options import pipeline_options as po

import transforms.prepare as prepare_module
from pipelines import cli, prepare_corpus


def build(argv, variant: str, counter: dict) -> float:
    """CPU seconds of one build of the job under ``variant`` ("beam" or "reused")."""
    args, options = prepare_corpus.build_parser().parse(argv)
    roots = cli.resolve_roots(args)
    original = prepare_module.reused_option_views
    if variant == "beam":
        prepare_module.reused_option_views = contextlib.nullcontext
    try:
        counter["n"] = 0
        started = time.process_time()
        prepare_corpus.build_pipeline(beam.Pipeline(options=options), args, roots)
        return time.process_time() - started
    finally:
        prepare_module.reused_option_views = original


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flags", action="append", default=[],
                        help="extra prepare_corpus flag (repeatable), e.g. --flags=--no_near_dedup")
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="build-cost-")
    job_argv = ["--output_roots", f"{work}/a,{work}/b", "--run_config", "direct", *args.flags]
    counter = {"n": 0}
    parse = po._BeamArgumentParser.parse_known_args

    def counting(self, *a, **k):
        counter["n"] += 1
        return parse(self, *a, **k)
    po._BeamArgumentParser.parse_known_args = counting
    build(job_argv, "reused", counter)   # imports and first-use caches out of the figures
    seconds = {"beam": [], "reused": []}
    parses = {}
    for _ in range(args.repeats):
        for variant in ("beam", "reused"):
            seconds[variant].append(round(build(job_argv, variant, counter), 3))
            parses[variant] = counter["n"]
    out = {v: {"cpu_s": s, "median_cpu_s": round(statistics.median(s), 3),
               "flag_parses_per_build": parses[v]} for v, s in seconds.items()}
    out["flags"] = args.flags
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
