"""Per-job overhead of a runner: wall time of a trivial job, services started once.

    python -m benchmarks.job_overhead --run_config flink_cluster --jobs 4
    python -m benchmarks.job_overhead --run_config spark_cluster --jobs 4 \\
        --flag=--job_server_jvm_properties=-Dbeam.spark.test.reuseSparkContext=false

The job server / worker pool of the run config start once (``RunnerServices``,
as in the test suite); then ``--jobs`` jobs of 1,000 elements (Create, Map,
GroupByKey, sum) run one after another.  What a job costs beyond its data is
what a test suite of many small jobs pays per test.  The first job also pays
what a runner starts lazily (e.g. a Spark application and its executor);
the median is over the later ones.  A cluster config needs its cluster up
(``scripts/*_cluster.sh start``).
"""
import argparse
import statistics
import tempfile
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import run_config as run_configs
from pipelines.job_services import RunnerServices
from transforms.processing.runner_guards import keep_direct_runner_local


def trivial_job(flags: list[str]) -> float:
    t0 = time.monotonic()
    with beam.Pipeline(options=PipelineOptions(flags)) as p:
        keep_direct_runner_local(p)   # direct configs: the FnApiRunner, as our jobs run
        (p | beam.Create(range(1000)) | beam.Map(lambda x: (x % 7, x)) | beam.GroupByKey()
         | beam.MapTuple(lambda k, v: (k, sum(v))))
    return time.monotonic() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_config", required=True)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--flag", action="append", default=[],
                        help="extra Beam flag after the run config's (repeatable)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as logs, RunnerServices(
            run_configs.flags_from(args.run_config) + args.flag, log_dir=logs) as services:
        started = time.monotonic() - t0
        walls = [trivial_job(services.flags) for _ in range(args.jobs)]
    later = walls[1:] or walls
    print(f"{args.run_config}: services {started:.1f} s; jobs "
          + ", ".join(f"{w:.1f}" for w in walls)
          + f" s; median after the first {statistics.median(later):.1f} s")


if __name__ == "__main__":
    main()
