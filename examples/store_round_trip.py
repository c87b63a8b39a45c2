"""Write your own PCollection as a replicated sharded store, then read it back.

Element types:

    dict           your record: {"id": str | int, ...} (any JSON-serialisable fields)
    WriteRecords   dicts -> the manifest (one dict), written last on every root
    ReadStore      -> dicts, one per record, each shard read from a verified replica

``ReadStore`` reads the manifest when it is constructed, so reading is a
second pipeline, run once the writing one has finished.

Run:  python examples/store_round_trip.py --roots /tmp/a,/tmp/b --output counts
      (writes the store to /tmp/a/my_records and /tmp/b/my_records, and
      counts.tsv: records per group, read back from the store)
"""
import argparse

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import ReadStore, WriteRecords

DATASET = "my_records"


def my_records(n: int = 1000) -> list[dict]:
    return [{"id": i, "text": f"record number {i}", "group": f"g{i % 7}"} for i in range(n)]


def write(options, roots: list[str], records: list[dict], replication: int = 2) -> None:
    """Runs the writing pipeline (prints a line once the manifest is committed)."""
    with beam.Pipeline(options=options) as pipeline:
        manifest = (pipeline
                    | "Mine" >> beam.Create(records)
                    | "Store" >> WriteRecords(roots, DATASET, replication,
                                              target_shard_bytes=16 << 10))
        manifest | "Summary" >> beam.Map(
            lambda m: print(f"wrote {sum(s['records'] for s in m['shards'])} records in "
                            f"{len(m['shards'])} shards, generation {m['generation']}"))


def read_and_count(options, store_path: str, output_prefix: str):
    with beam.Pipeline(options=options) as pipeline:
        (pipeline
         | "Read" >> ReadStore(store_path)
         | "Group" >> beam.Map(lambda record: record["group"])
         | "Count" >> beam.combiners.Count.PerElement()
         | "Format" >> beam.MapTuple(lambda group, n: f"{group}\t{n}")
         | "All" >> beam.combiners.ToList()
         | "Sorted" >> beam.FlatMap(sorted)
         | "WriteMine" >> beam.io.WriteToText(output_prefix, file_name_suffix=".tsv",
                                              shard_name_template=""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--roots", required=True, help="comma-separated storage roots")
    parser.add_argument("--output", required=True, help="output file prefix")
    args, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions(beam_args)
    roots = args.roots.split(",")
    write(options, roots, my_records())
    read_and_count(options, f"{roots[0].rstrip('/')}/{DATASET}", args.output)


if __name__ == "__main__":
    main()
