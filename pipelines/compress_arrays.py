"""Compress .npy arrays into row blocks of a replicated store (lossless or bounded-error)."""
import contextlib
import os

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import StandardOptions

from pipelines import cli, progress
from transforms.storage.array_store import WriteArrayStore
from transforms.reduction.codec_choice import ChooseCodec, choice_record, compare_arrays, format_table
from transforms.core.codecs import CodecError, array_codec
from transforms.processing.npy import (
    ReadNpyBlocks, check_compatible, default_block_rows, inspect_npy, load_function,
    match_inputs, plan_blocks, read_block)
from transforms.storage.report import (
    RunClock, build_report, counters, input_lineage, shard_sizes, summary_table, write_report)
from transforms.storage.commit import committed_digest, folders_to_make, leave_nothing_behind
from transforms.storage.store import DatasetLock, dataset_dir, is_local, load_manifest

AUTO = "auto"


def build_parser() -> cli.Parser:
    parser = cli.Parser("compress_arrays", __doc__)
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", required=True,
                    help=".npy files: a path, a glob, or several comma-separated; taken in "
                    "sorted path order as one array (rows concatenated)")
    cli.add_store_arguments(io, default_dataset="arrays")
    work = parser.add_argument_group("blocks and codec")
    work.add_argument("--block_rows", type=cli.positive_int, default=None,
                      help="rows per block (= per shard); default: about 16 MiB of rows")
    work.add_argument("--map", default=None, metavar="MODULE:FUNCTION",
                      help="apply this function to every block (ndarray -> ndarray with the "
                      "same rows), in parallel; e.g. transforms.core.array_maps:l2_normalise")
    work.add_argument("--codec", default="blosc2",
                      help="NAME[:key=value,...] (e.g. blosc2:filter=bytedelta, zstd:level=9, "
                      "fp16, int8) or 'auto' to choose by --max_error/--min_encode_mbps "
                      "(default: blosc2)")
    work.add_argument("--max_error", default=None,
                      help="for --codec auto: error limits a lossy codec must meet, e.g. "
                      "'cosine>=0.999' or 'abs<=1e-3,top10>=0.95'; without it auto stays "
                      "lossless")
    work.add_argument("--min_encode_mbps", type=float, default=0.0,
                      help="for --codec auto: slowest acceptable encoder, MB/s (default: 0)")
    work.add_argument("--sample_bytes", type=cli.byte_size, default=16 << 20,
                      help="for --codec auto: raw bytes of evenly spaced blocks to try codecs "
                      "on (default: 16MiB)")
    return parser


def sample_blocks(sources, blocks, sample_bytes, row_bytes, map_spec=None) -> list[np.ndarray]:
    """Evenly spaced blocks (after --map) adding up to about ``sample_bytes``."""
    per_block = max(1, max(b["rows"] for b in blocks) * max(row_bytes, 1))
    count = min(len(blocks), max(1, sample_bytes // per_block))
    picks = sorted({round(i * (len(blocks) - 1) / max(count - 1, 1)) for i in range(count)})
    function = load_function(map_spec) if map_spec else None
    arrays = []
    for i in picks:
        block = read_block(blocks[i], sources)
        arrays.append(function(block) if function else block)
    return arrays


def choose_codec(args, sources, blocks, row_bytes):
    """(codec spec, report record, manifest record) for ``--codec auto``; Nones otherwise."""
    if args.codec != AUTO:
        return array_codec(args.codec).spec, None, None
    policy = ChooseCodec(args.max_error, args.min_encode_mbps)
    rows = compare_arrays(sample_blocks(sources, blocks, args.sample_bytes, row_bytes, args.map))
    chosen = policy.choose(rows)
    print(format_table(rows, chosen, policy))
    print(f"\n--codec auto chose {chosen['codec']} (policy {policy.describe()})\n")
    return (chosen["codec"], choice_record(rows, chosen, policy),
            choice_record(rows, chosen, policy, with_timing=False))


def prepare(args):
    """Inputs inspected and checked, blocks planned, codec chosen: all before the run."""
    sources = [inspect_npy(p) for p in match_inputs(args.input)]
    dtype, trailing = check_compatible(sources)
    block_rows = args.block_rows or default_block_rows(trailing, dtype)
    blocks = plan_blocks(sources, block_rows)
    row_bytes = int(np.prod(trailing, dtype=np.int64)) * dtype.itemsize
    codec, report_choice, manifest_choice = choose_codec(args, sources, blocks, row_bytes)
    return sources, blocks, block_rows, codec, report_choice, manifest_choice


def build_pipeline(pipeline, args, roots, sources, blocks, block_rows, codec, manifest_choice,
                   live_counters=None):
    extra = {"sources": [{"path": s["path"], "rows": s["rows"]} for s in sources],
             "map": args.map}
    if manifest_choice:
        extra["codec_choice"] = manifest_choice
    return (
        pipeline
        | "Read" >> ReadNpyBlocks(sources, blocks, args.map, live_counters)
        | "Store" >> WriteArrayStore(roots, args.dataset, args.replication, codec,
                                     len(blocks), block_rows, extra))


def run(argv=None) -> dict:
    """Run the job; returns the run report (raises on failure)."""
    cli.setup_logging()
    parser = build_parser()
    args, options = parser.parse(argv)
    try:
        roots = cli.resolve_roots(args)
        if args.codec != AUTO:
            array_codec(args.codec)
        elif args.max_error:
            ChooseCodec(args.max_error)
        if args.map:
            load_function(args.map)   # a flag naming nothing importable: a usage error
    except (ValueError, CodecError) as err:
        parser.error(str(err))
    clock = RunClock()
    sources, blocks, block_rows, codec, report_choice, manifest_choice = prepare(args)

    progress.apply_log_level(args.log_level, options)
    inputs = input_lineage([s["path"] for s in sources])
    directories = [dataset_dir(r.uri, args.dataset) for r in roots]
    # workers outside this process send their live totals here (progress display only)
    receiver = progress.live_receiver(options)
    lock = DatasetLock(directories, job="compress_arrays", break_lock=args.break_lock)
    uris = [r.uri for r in roots]
    made = folders_to_make(uris)
    # Ctrl-C is held from the end of a committed run until its report is written (as
    # prepare_corpus): a Ctrl-C after the commit ends the job as finished
    with contextlib.ExitStack() as held:
        try:
            # taken inside the try whose finally releases it, Ctrl-C held meanwhile (as
            # prepare_corpus): a Ctrl-C while the lock is taken cannot leave it behind
            try:
                with progress.deferred_interrupts():
                    lock.acquire()
            finally:   # also when taking it failed after a stale lock was removed
                cli.say_broken_locks("compress_arrays", lock)
            pipeline = beam.Pipeline(options=options)
            build_pipeline(pipeline, args, roots, sources, blocks, block_rows, codec,
                           manifest_choice, receiver and receiver.address)
            base = committed_digest(uris, args.dataset)
            result = progress.run_pipeline(
                pipeline, job="compress_arrays", log_level=args.log_level,
                docs_counter="arrays/rows_stored", bytes_counter="arrays/raw_bytes",
                unit="rows",
                total_bytes=None if args.map else sum(f["bytes"] or 0 for f in inputs) or None,
                cleanup=lambda: progress.delete_temporaries(directories), receiver=receiver,
                # finished = the run's generation is committed (a Ctrl-C after it)
                committed=lambda: committed_digest(uris, args.dataset) != base)
            held.enter_context(progress.deferred_interrupts())
        finally:
            with progress.deferred_interrupts():
                # nothing committed (failed, cancelled): no empty folder stays either
                leave_nothing_behind(lock, directories, made, progress.finished())
            progress.end_of_run()
            if receiver is not None:
                receiver.close()

        values = counters(result)
        runner = options.view_as(StandardOptions).runner or "DirectRunner"
        extra = {"store": directories, "codec": codec, "blocks": len(blocks),
                 "shard_sizes": shard_sizes(load_manifest(directories[0]))}
        if report_choice:
            extra["codec_choice"] = report_choice
        report = build_report("compress_arrays", clock, values, cli.recorded_flags(vars(args)),
                              str(runner), extra, options=options, result=result,
                              inputs=inputs, pipeline=pipeline)
        write_report(report, directories)
    print(summary_table(values))
    raw, stored = values.get("arrays/raw_bytes", 0), values.get("arrays/stored_bytes", 0)
    print(f"\ncodec {codec}: {raw:,} -> {stored:,} bytes "
          f"(ratio {raw / max(stored, 1):.3f}) in {len(blocks)} block(s)")
    print(f"store: {directories[0]}  (replicas on {len(roots)} root(s), R={args.replication})")
    return report


def main(argv=None):
    cli.run_job("compress_arrays", run, argv)


if __name__ == "__main__":
    main()
