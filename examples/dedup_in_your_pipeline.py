"""Exact and near-duplicate removal inside your own Beam pipeline.

Your records (here: dicts from JSON Lines, read with Beam's own ReadFromText)
go through ``ExactDedup`` then ``NearDedup``; what survives goes to your own
sink (here: WriteToText).  Element types at each step:

    dict                         your record: {"id": str, "text": str, ...}
    (id, text, line)             ExactDedup's input doc: str, str, bytes (the
                                 record as a JSON line); in lists (batches)
    ExactDedup -> {"kept": (id, line), "removed": {...}, "id_conflicts": {...}}
    (id, line)                   NearDedup's input and its "kept" output
    NearDedup -> {"kept": (id, line), "gate": str}  ("" when it converged)

Run:  python examples/dedup_in_your_pipeline.py --input IN.jsonl --output OUT
"""
import argparse

import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.dedup import ExactDedup
from transforms.minhash import LshParams
from transforms.near_dedup import NearDedup, NearDedupConfig


def as_doc(record: dict) -> tuple[str, str, bytes]:
    """Your record -> ExactDedup's ``(id, text, line)``."""
    return str(record["id"]), record["text"], orjson.dumps(record)


def build(pipeline, input_path: str, output_prefix: str, threshold: float = 0.8):
    records = (
        pipeline
        | "ReadMine" >> beam.io.ReadFromText(input_path)
        | "Parse" >> beam.Map(orjson.loads))
    exact = (
        records
        | "ToDocs" >> beam.Map(as_doc)
        | "Batch" >> beam.BatchElements(min_batch_size=100, max_batch_size=1000)
        | "ExactDedup" >> ExactDedup(num_buckets=8))
    near = exact["kept"] | "NearDedup" >> NearDedup(
        NearDedupConfig(LshParams.resolve(threshold=threshold)))
    (near["kept"]
     | "Lines" >> beam.Map(lambda doc: doc[1].decode())
     | "WriteMine" >> beam.io.WriteToText(output_prefix, file_name_suffix=".jsonl",
                                          shard_name_template=""))
    return near


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True, help="output file prefix")
    args, beam_args = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        build(pipeline, args.input, args.output)


if __name__ == "__main__":
    main()
