"""Write your own PCollection as a replicated sharded store, then read it back.

Element types:

    (id, line)        WriteStore's input (unpartitioned): str, bytes (one JSON line)
    WriteStore ->     the manifest dict (one element), written last on every root
    ReadStore ->      dict per record (parse=True, default) or the JSON line as bytes

ReadStore reads the manifest when it is constructed, so reading is a second
pipeline, run after the writing one has finished.

Run:  python examples/store_round_trip.py --roots /tmp/a,/tmp/b --output counts
"""
import argparse

import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.placement import Root
from transforms.store import ReadStore, WriteStore, dataset_dir

DATASET = "my_records"


def my_records(n: int = 1000) -> list[dict]:
    return [{"id": f"rec-{i:05d}", "text": f"record number {i}", "group": f"g{i % 7}"}
            for i in range(n)]


def write(options, roots: list[str], records: list[dict], replication: int = 2):
    with beam.Pipeline(options=options) as pipeline:
        (pipeline
         | "Mine" >> beam.Create(records)
         | "ToDocs" >> beam.Map(lambda r: (r["id"], orjson.dumps(r)))
         | "Store" >> WriteStore([Root(r) for r in roots], DATASET, replication,
                                 target_shard_bytes=16 << 10))
    return dataset_dir(roots[0], DATASET)


def read_and_count(options, store_path: str, output_prefix: str):
    with beam.Pipeline(options=options) as pipeline:
        (pipeline
         | "Read" >> ReadStore(store_path)
         | "Group" >> beam.Map(lambda record: record["group"])
         | "Count" >> beam.combiners.Count.PerElement()
         | "Format" >> beam.MapTuple(lambda group, n: f"{group}\t{n}")
         | "WriteMine" >> beam.io.WriteToText(output_prefix, file_name_suffix=".tsv",
                                              shard_name_template=""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--roots", required=True, help="comma-separated storage roots")
    parser.add_argument("--output", required=True, help="output file prefix")
    args, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions(beam_args)
    store = write(options, args.roots.split(","), my_records())
    read_and_count(options, store, args.output)


if __name__ == "__main__":
    main()
