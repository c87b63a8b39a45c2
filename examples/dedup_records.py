"""Exact and near-duplicate removal over your own records, into your own sink.

Your records are dicts (here read from JSON Lines with Beam's ReadFromText);
``DedupRecords`` removes exact duplicates, ``NearDedupRecords`` near
duplicates; what survives goes to your own sink (here WriteToText), and so do
the removed pairs and the records that could not be keyed.  Element types:

    dict                 your record: {"id": str | int, "text": str, ...}
    DedupRecords     ->  {"kept": dict, "removed": dict, "dead_letters": dict, "gate": str}
    NearDedupRecords ->  {"kept": dict, "removed": dict, "dead_letters": dict, "gate": str}

    removed:      {"removed": id, "kept": id, "reason": "exact_duplicate"}
                  {"removed": id, "kept": id, "reason": "near_duplicate", "jaccard": float}
    dead_letters: {"reason": "missing_text" | "bad_id" | ..., "detail": str, "record": str}

Run:  python examples/dedup_records.py --input IN.jsonl --output OUT
      (writes OUT.jsonl, OUT.removed.jsonl, OUT.dead.jsonl; add Beam flags, e.g.
      --runner PrismRunner)
"""
import argparse

import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import DedupRecords, NearDedupRecords


def to_json(record: dict) -> str:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()


def write_lines(pcoll, label: str, path: str):
    """Your sink: one JSON Lines file (in no particular order)."""
    return (pcoll
            | f"{label}Json" >> beam.Map(to_json)
            | f"{label}Write" >> beam.io.WriteToText(path, shard_name_template=""))


def build(pipeline, input_path: str, output: str, threshold: float = 0.8):
    records = (pipeline
               | "ReadMine" >> beam.io.ReadFromText(input_path)
               | "Parse" >> beam.Map(orjson.loads))
    exact = records | "Exact" >> DedupRecords(id_field="id", text_field="text",
                                              with_removed=True)
    near = exact["kept"] | "Near" >> NearDedupRecords(threshold, with_removed=True)
    write_lines(near["kept"], "Kept", f"{output}.jsonl")
    write_lines((exact["removed"], near["removed"]) | "Removed" >> beam.Flatten(),
                "Removed", f"{output}.removed.jsonl")
    write_lines(exact["dead_letters"], "Dead", f"{output}.dead.jsonl")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--input", required=True, help="JSON Lines file (or glob) of records")
    parser.add_argument("--output", required=True, help="output path prefix")
    parser.add_argument("--threshold", type=float, default=0.8,
                        help="near-duplicate Jaccard threshold (default 0.8)")
    args, beam_args = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        build(pipeline, args.input, args.output, args.threshold)


if __name__ == "__main__":
    main()
