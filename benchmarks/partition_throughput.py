"""Partition throughput: StableHashPartition and PartitionByField vs beam.Partition.

    python -m benchmarks.partition_throughput --corpus benchmarks/data/c100k --repeats 3

Every variant reads the same corpus files into ``(id, line)`` documents,
partitions them and tallies every output in a fused DoFn (no shuffle), in one
DirectRunner pipeline per run;
variants alternate within each repeat so machine noise hits them alike.  The
baselines are ``beam.Partition`` with the equivalent Python function: xxh3 of
the id modulo n, and the field's value (from the parsed JSON line) looked up
in a table of the known values.  ``noop`` (read and count only) is the fixed
cost; ``partition-only`` rates subtract it.
"""
import argparse
import glob
import json
import os
import statistics
import sys
import time

import apache_beam as beam
import orjson
import xxhash
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.processing.io import iter_lines, open_text_stream
from transforms.processing.partition import PartitionByField, StableHashPartition
from transforms.processing.runner_guards import keep_direct_runner_local

N_HASH = 16
FIELD = "source"
VALUES = ["web", "books", "news"]


def read_docs(path):
    with open_text_stream(path) as stream:
        for line in iter_lines(stream):
            if line.startswith(b'{"id":"doc-'):
                yield line[7:19].decode(), line


def hash_index(doc, n):
    return xxhash.xxh3_64_intdigest(doc[0].encode()) % n


def field_index(doc, n, table={v: i for i, v in enumerate(VALUES)}):
    value = orjson.loads(doc[1]).get(FIELD)
    return table.get(value, n - 1)


class _Tally(beam.DoFn):
    """Counts elements in the bundle, reports once: a fused, near-free consumer."""

    def start_bundle(self):
        self.n = 0

    def process(self, element):
        self.n += 1

    def finish_bundle(self):
        Metrics.counter("bench", "records").inc(self.n)


def variant_pipeline(name, files, options):
    p = beam.Pipeline(options=options)
    docs = p | "Files" >> beam.Create(files) | "Read" >> beam.FlatMap(read_docs)
    if name == "noop":
        outputs = [docs]
    elif name == "beam.Partition(hash)":
        outputs = docs | beam.Partition(hash_index, N_HASH)
    elif name == "StableHashPartition":
        outputs = docs | StableHashPartition(N_HASH)
    elif name == "beam.Partition(field)":
        outputs = docs | beam.Partition(field_index, len(VALUES) + 1)
    elif name == "PartitionByField":
        outputs = [(docs | PartitionByField(FIELD, max_partitions=None))[0]]
    elif name == "PartitionByField(max_partitions)":
        outputs = [(docs | PartitionByField(FIELD, max_partitions=256))[0]]
    else:
        raise ValueError(name)
    for i, out in enumerate(outputs):
        out | f"Tally{i}" >> beam.ParDo(_Tally())
    return p


def run_once(name, files, options) -> tuple[float, float, int]:
    """(wall s, CPU s of this process, records): the in-memory runner runs in-process,
    and CPU time is far less disturbed than wall time by other jobs on a shared machine."""
    start, cpu = time.perf_counter(), time.process_time()
    pipeline = variant_pipeline(name, files, options)
    keep_direct_runner_local(pipeline)   # the in-memory FnApiRunner, not a Prism Beam would try
    result = pipeline.run()
    result.wait_until_finish()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    counters = result.metrics().query(MetricsFilter().with_name("records"))["counters"]
    return wall, cpu, sum(c.committed or c.attempted or 0 for c in counters)


VARIANTS = ["noop", "beam.Partition(hash)", "StableHashPartition", "beam.Partition(field)",
            "PartitionByField", "PartitionByField(max_partitions)"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/data/c100k")
    parser.add_argument("--files", type=int, default=8, help="corpus files to read")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    files = sorted(glob.glob(os.path.join(args.corpus, "part-*.jsonl*")))[:args.files]
    if not files:
        sys.exit(f"no corpus files in {args.corpus}; make them with "
                 "python -m benchmarks.corpus --docs 100000 --files 8 --out " + args.corpus)
    options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory",
                               "--direct_num_workers=1"])
    walls = {v: [] for v in VARIANTS}
    cpus = {v: [] for v in VARIANTS}
    records = None
    for r in range(args.repeats):
        for variant in VARIANTS:
            wall, cpu, count = run_once(variant, files, options)
            records = records or count
            assert count == records, (variant, count, records)
            walls[variant].append(wall)
            cpus[variant].append(cpu)
            print(f"  repeat {r}: {variant:33s} {wall:6.2f}s wall {cpu:6.2f}s cpu",
                  file=sys.stderr)
    noop = statistics.median(cpus["noop"])
    rows = []
    for variant in VARIANTS:
        cpu = statistics.median(cpus[variant])
        extra = cpu - noop
        rows.append({"variant": variant, "median_cpu_s": round(cpu, 3),
                     "median_wall_s": round(statistics.median(walls[variant]), 3),
                     "cpus": [round(c, 2) for c in cpus[variant]],
                     "records_per_cpu_s": round(records / cpu),
                     "partition_only_records_per_cpu_s":
                         round(records / extra) if extra > 0 else None})
    by = {r["variant"]: r for r in rows}
    ratios = {
        "StableHashPartition_vs_beam.Partition": _ratio(by, "StableHashPartition",
                                                        "beam.Partition(hash)"),
        "PartitionByField_vs_beam.Partition": _ratio(by, "PartitionByField",
                                                     "beam.Partition(field)"),
        "PartitionByField(max_partitions)_vs_beam.Partition": _ratio(
            by, "PartitionByField(max_partitions)", "beam.Partition(field)"),
    }
    print(f"{records} records, median of {args.repeats} runs, CPU seconds of the runner process")
    print(f"{'variant':33s} {'cpu s':>7s} {'wall s':>7s} {'records/cpu-s':>14s} "
          f"{'partition step rec/cpu-s':>25s}")
    for row in rows:
        only = row["partition_only_records_per_cpu_s"]
        print(f"{row['variant']:33s} {row['median_cpu_s']:7.2f} {row['median_wall_s']:7.2f} "
              f"{row['records_per_cpu_s']:14,d} {'-' if only is None else format(only, ','):>25}")
    for name, ratio in ratios.items():
        print(f"{name}: {ratio['total']:.2f}x end to end, {ratio['partition_only']:.2f}x "
              "partition step only (baseline CPU time / ours)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"records": records, "rows": rows, "ratios": ratios}, f, indent=2)


def _ratio(by, ours, base):
    noop = by["noop"]["median_cpu_s"]
    base_cpu, our_cpu = by[base]["median_cpu_s"], by[ours]["median_cpu_s"]
    return {"total": round(base_cpu / our_cpu, 3),
            "partition_only": round((base_cpu - noop) / max(1e-9, our_cpu - noop), 3)}


if __name__ == "__main__":
    main()
