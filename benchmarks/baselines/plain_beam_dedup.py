"""Baseline (a): exact dedup in plain Beam, the way a first attempt would look.

ReadFromText -> Map(parse + normalise + hash) -> CombinePerKey(keep one)
-> WriteToText(zstd, fixed shard count).  Same normalisation and winner rule
as prepare_corpus, no batching, no replication, no manifest.
"""
import argparse
import unicodedata

import apache_beam as beam
from apache_beam import coders
import orjson
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.processing.runner_guards import keep_direct_runner_local


def parse_and_key(line):
    try:
        obj = orjson.loads(line)
        text = obj["text"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return []
    if not isinstance(text, str):
        return []
    norm = " ".join(unicodedata.normalize("NFC", text).casefold().split())
    return [(xxhash.xxh3_128_digest(norm.encode()), (str(obj.get("id")), line))]


def keep_smallest(values):
    return min(values)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--num_shards", type=int, default=5)
    args, beam_args = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        # on the FnApiRunner its flags name, as prepare_corpus is: Beam 2.77's DirectRunner
        # would first try (online: run on) a downloaded Prism (runner_guards.py)
        keep_direct_runner_local(p)
        (p
         | "Read" >> beam.io.ReadFromText(args.input, coder=coders.BytesCoder())
         | "ParseKey" >> beam.FlatMap(parse_and_key)
         | "KeepOne" >> beam.CombinePerKey(keep_smallest)
         | "Line" >> beam.MapTuple(lambda _, doc: doc[1])
         | "Write" >> beam.io.WriteToText(args.output, file_name_suffix=".jsonl.zst",
                                         num_shards=args.num_shards,
                                         compression_type=CompressionTypes.ZSTD))


if __name__ == "__main__":
    main()
