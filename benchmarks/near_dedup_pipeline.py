"""Near-dedup alone as a Beam job, for the end-to-end benchmark.

    python -m benchmarks.near_dedup_pipeline --input 'dir/*.jsonl.zst' --output out/kept \
        --run_config direct_multiprocess

ReadJsonl -> NearDedup (signatures, LSH, verification, components, filter) ->
kept lines as zstd JSONL.  Prints the ``dataprep.*`` counters as one JSON line.
"""
import argparse

import apache_beam as beam
import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import run_config
from transforms.processing.components import DEFAULT_MAX_ROUNDS
from transforms.processing.io import ReadJsonl
from transforms.processing.runner_guards import keep_direct_runner_local
from transforms.reduction.minhash import LshParams
from transforms.reduction.near_dedup import NearDedup, NearDedupConfig
from transforms.storage.report import counters


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--run_config", default="direct_multiprocess")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num_perm", type=int, default=None)
    parser.add_argument("--max_rounds", type=int, default=DEFAULT_MAX_ROUNDS)
    parser.add_argument("--removed", default=None, help="also write the removed-pair records here")
    args, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions(run_config.flags_from(args.run_config) + beam_args)
    config = NearDedupConfig(LshParams.resolve(args.threshold, args.num_perm),
                             max_rounds=args.max_rounds)
    pipeline = beam.Pipeline(options=options)
    keep_direct_runner_local(pipeline)   # direct configs: the FnApiRunner, as our jobs run
    docs, _ = pipeline | "Read" >> ReadJsonl(args.input)
    result = (docs
              | "IdLine" >> beam.Map(lambda d: (d[0], d[2]))
              | "NearDedup" >> NearDedup(config, with_removed=bool(args.removed)))
    kept = result["kept"]
    if args.removed:
        (result["removed"]
         | "RemovedJson" >> beam.Map(orjson.dumps)
         | "WriteRemoved" >> beam.io.WriteToText(args.removed, file_name_suffix=".jsonl",
                                                coder=beam.coders.BytesCoder()))
    (kept
     | "Line" >> beam.MapTuple(lambda _, line: line)
     | "Write" >> beam.io.WriteToText(args.output, file_name_suffix=".jsonl.zst",
                                     coder=beam.coders.BytesCoder(),
                                     compression_type=CompressionTypes.ZSTD))
    result = pipeline.run()
    result.wait_until_finish()
    print(orjson.dumps({"counters": counters(result), "lsh": vars(config.lsh)}).decode())


if __name__ == "__main__":
    main()
