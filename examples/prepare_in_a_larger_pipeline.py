"""The whole prepare_corpus job as one step of your own pipeline.

``PrepareCorpus(CorpusConfig(...))`` reads JSON Lines files, deduplicates
them and commits a replicated sharded store; your steps go after it on its
outputs (here: a catalogue line built from the manifest, and dead letters
counted by reason, each to your own file).  Element types:

    PrepareCorpus(config), applied to the pipeline ->
      "manifest"      one dict, once the store is committed: {"dataset",
                      "generation", "shards": [{"name", "records", "raw_bytes",
                      "stored_bytes", "checksum", "replicas"}...], ...}
      "dead_letters"  dicts {"file", "line", "reason", "detail", "raw", "raw_bytes"}
      "removed"       Removal records (write_removed=True): id, reason, kept id,
                      file index, line; README "Removed records"
      "inputs"        dicts {"path", "xxh3_64"}

Run:  python examples/prepare_in_a_larger_pipeline.py --input 'data/*.jsonl' \
          --roots /tmp/a,/tmp/b --output catalogue
      (writes the store "web" on both roots, catalogue.json and catalogue.dead.tsv)
"""
import argparse

import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import CorpusConfig, PrepareCorpus
from transforms.reduction.minhash import LshParams
from transforms.reduction.near_dedup import NearDedupConfig


def catalogue_entry(manifest: dict) -> str:
    """Your step on the manifest: one catalogue line for the committed store."""
    return orjson.dumps({
        "dataset": manifest["dataset"],
        "generation": manifest["generation"],
        "records": sum(s["records"] for s in manifest["shards"]),
        "shards": len(manifest["shards"]),
        "raw_bytes": sum(s["raw_bytes"] for s in manifest["shards"]),
        "checksums": sorted(s["checksum"] for s in manifest["shards"]),
    }, option=orjson.OPT_SORT_KEYS).decode()


def build(pipeline, config: CorpusConfig, output: str):
    prepared = pipeline | "Prepare" >> PrepareCorpus(config)
    (prepared["manifest"]
     | "Catalogue" >> beam.Map(catalogue_entry)
     | "WriteCatalogue" >> beam.io.WriteToText(f"{output}.json", shard_name_template=""))
    (prepared["dead_letters"]
     | "Reasons" >> beam.Map(lambda dead: dead["reason"])
     | "CountReasons" >> beam.combiners.Count.PerElement()
     | "Format" >> beam.MapTuple(lambda reason, n: f"{reason}\t{n}")
     | "All" >> beam.combiners.ToList()
     | "Sorted" >> beam.FlatMap(sorted)
     | "WriteReasons" >> beam.io.WriteToText(f"{output}.dead.tsv", shard_name_template=""))
    return prepared


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--input", required=True, help="JSON Lines files (path, glob, folder)")
    parser.add_argument("--roots", required=True, help="comma-separated storage roots")
    parser.add_argument("--output", required=True, help="output path prefix")
    parser.add_argument("--max_bad_fraction", type=float, default=0.01,
                        help="fail (commit nothing) beyond this share of bad lines")
    args, beam_args = parser.parse_known_args(argv)
    roots = args.roots.split(",")
    config = CorpusConfig(input=args.input, roots=roots, dataset="web",
                          replication=min(2, len(roots)),
                          near_dedup=NearDedupConfig(LshParams.resolve(threshold=0.8)),
                          write_removed=True, target_shard_bytes=1 << 20,
                          max_bad_fraction=args.max_bad_fraction)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        build(pipeline, config, args.output)


if __name__ == "__main__":
    main()
