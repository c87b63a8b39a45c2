"""Read JSON Lines, drop bad lines, exact and near duplicates, write a replicated sharded store."""
import glob
import logging
import os
import posixpath
import sys
import uuid

import apache_beam as beam
import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions

from pipelines import cli, near_dedup_options, progress
from transforms.codec_choice import (
    ChooseCodec, choice_record, compare_text, format_table, sample_text)
from transforms.codecs import bytes_codec
from transforms.dedup import ExactDedup, dedup_buckets
from transforms.io import ReadJsonl, estimate_raw_bytes, expand_patterns
from transforms.near_dedup import cluster_histogram
from transforms.partition import PartitionByField, RangePartition, numeric_field, text_length
from transforms.placement import Placement, parse_rules
from transforms.refs import ResolveRuns, ScanJsonl, delete_spill
from transforms.report import (
    RunClock, build_report, counters, dead_letter_examples, input_lineage, shard_sizes,
    summary_table, write_report)
from transforms.sharding import balance_rows
from transforms.store import WriteStore, dataset_dir, join, load_manifest, normalise_root

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data", "sample.jsonl")
AUDIT_PREFIXES = ("dead_letters", "removed")
SPILL_PREFIX = ".runs-"  # ResolveRuns' temporary runs; a failed run leaves its folder
READ_BATCH = 1000  # documents per element on the hot path


def build_parser() -> cli.Parser:
    parser = cli.Parser("prepare_corpus", __doc__)
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", default=SAMPLE,
                    help="JSON Lines files: a path, a glob, or several comma-separated "
                    "(.jsonl, .jsonl.gz, .jsonl.zst). Default: the bundled sample corpus")
    cli.add_store_arguments(io, default_dataset="corpus")
    io.add_argument("--id_field", default="id", help="record id field (default: id)")
    io.add_argument("--text_field", default="text", help="text field (default: text)")
    io.add_argument("--max_bad_fraction", type=cli.fraction, default=0.01,
                    help="fail the run when more than this fraction of lines is bad "
                    "(default: 0.01)")
    dedup = parser.add_argument_group("deduplication")
    dedup.add_argument("--write_removed", action="store_true",
                       help="write (removed id, kept id) audit records as removed*.jsonl.zst")
    near_dedup_options.add_arguments(parser)
    part = parser.add_argument_group("partitioning")
    part.add_argument("--partition_by", metavar="FIELD", default=None,
                      help="write one sub-dataset per value of FIELD (<root>/<dataset>/<value>/)"
                      "; absent or null -> _missing")
    part.add_argument("--max_partitions", type=int, default=256,
                      help="at most this many partitions (_missing and _other included); "
                      "the least frequent values go to _other. 0: no cap, and no counting "
                      "pass before routing (default: 256)")
    part.add_argument("--range_by", metavar="length|FIELD", default=None,
                      help="partition by ranges of the text length (characters) or of a "
                      "numeric FIELD, cut at approximate quantiles; shards follow the key")
    part.add_argument("--num_ranges", type=cli.positive_int, default=8,
                      help="number of --range_by partitions (default: 8)")
    part.add_argument("--placement", metavar="RULES", default=None,
                      help="pin partitions to roots: 'lang=zh:/mnt/asia1,/mnt/asia2;*:/mnt/a,"
                      "/mnt/b' (FIELD=VALUE, partition=NAME or *; roots from --output_roots)")
    store = parser.add_argument_group("shards and storage")
    store.add_argument("--target_shard_bytes", type=cli.byte_size, default=64 << 20,
                       help="at most this many raw JSONL bytes per shard (give or take one "
                       "record); shards of a partition are balanced in size (default: 64MiB)")
    store.add_argument("--num_shards", type=cli.positive_int, default=None,
                       help="fixed shard count per partition (overrides --target_shard_bytes)")
    store.add_argument("--zstd_level", type=int, default=3, choices=range(1, 23),
                       metavar="1..22", help="zstd level of shards (default: 3); shorthand "
                       "for --codec zstd:level=N")
    store.add_argument("--codec", default=None,
                       help="shard codec NAME[:key=value,...]: zstd[:level=N], gzip[:level=N], "
                       "lz4[:level=N], none; or 'auto' for the best ratio on a sample of the "
                       "input at --min_encode_mbps (default: zstd:level=--zstd_level)")
    store.add_argument("--min_encode_mbps", type=float, default=0.0,
                       help="for --codec auto: slowest acceptable encoder, MB/s (default: 0)")
    return parser


def choose_text_codec(args):
    """(codec spec, run-report record, manifest record); records only for --codec auto."""
    if args.codec is None:
        return f"zstd:level={args.zstd_level}", None, None
    if args.codec != "auto":
        return bytes_codec(args.codec).spec, None, None
    policy = ChooseCodec(None, args.min_encode_mbps)
    rows = compare_text(sample_text(args.input))
    chosen = policy.choose(rows)
    print(format_table(rows, chosen, policy))
    print(f"\n--codec auto chose {chosen['codec']} (policy {policy.describe()})\n")
    return (chosen["codec"], choice_record(rows, chosen, policy),
            choice_record(rows, chosen, policy, with_timing=False))


def balance_table(rows: list[dict]) -> str:
    """Records, shards and shard-size balance per partition, as printed after a run."""
    headers = ("partition", "records", "shards", "raw_bytes", "max_shard_bytes", "max_over_mean")
    cells = [[str(r[h]) for h in headers] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _gate_bad_fraction(_, records, bad, max_fraction, where):
    total = records + bad
    if total and bad / total > max_fraction:
        return (f"{bad} of {total} lines are bad ({bad / total:.2%}), above "
                f"--max_bad_fraction {max_fraction:g}; see the dead letters in {where}")
    return ""


def _gate_id_conflicts(summary, id_field):
    if not summary["count"]:
        return ""
    return (f"{summary['count']} {id_field!r} value(s) name more than one distinct text, "
            f"e.g. {summary['examples']}; give every document a unique id")


def _write_jsonl(pcoll, label, directory, prefix):
    return (
        pcoll
        | f"{label}ToJson" >> beam.Map(lambda rec: orjson.dumps(rec).decode())
        | f"Write{label}" >> beam.io.WriteToText(
            join(directory, prefix), file_name_suffix=".jsonl.zst",
            compression_type=CompressionTypes.ZSTD))


def _delete_leftovers(directory):
    """Audit files are rewritten by every run (old ones would mix with the new);
    spill folders are left only by failed runs."""
    patterns = [join(directory, f"{p}*.jsonl.zst") for p in AUDIT_PREFIXES]
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if stale:
        FileSystems.delete(stale)
    runs = FileSystems.match([join(directory, f"{SPILL_PREFIX}*", "*")])[0].metadata_list
    spills = {posixpath.dirname(m.path) for m in runs}
    if "://" not in directory:  # an empty local folder holds no file to match
        spills.update(glob.glob(join(directory, f"{SPILL_PREFIX}*")))
    for spill_dir in spills:
        delete_spill(spill_dir)


def partitioned(kept, args):
    """-> (store input, scheme for the manifest, partition info) or (kept, None, None)."""
    if args.partition_by:
        routed, info = kept | "PartitionByField" >> PartitionByField(
            args.partition_by, args.max_partitions or None)
        records = routed | "NoOrder" >> beam.MapTuple(lambda name, doc: (name, None, doc))
        return records, {"scheme": "field"}, info
    if args.range_by:
        key_fn = (text_length(args.text_field) if args.range_by == "length"
                  else numeric_field(args.range_by))
        records, info = kept | "RangePartition" >> RangePartition(
            key_fn, args.num_ranges, key_name=args.range_by)
        return records, {"scheme": "range"}, info
    return kept, None, None


def build_pipeline(pipeline, args, roots, placement=None, codec="zstd:level=3",
                   codec_choice=None):
    first_dir = dataset_dir(roots[0].uri, args.dataset)
    # Without partitioning or near-dedup (which need the kept documents' fields
    # and text), documents travel as small refs and each kept line is read back
    # once, into its shard (transforms.refs).
    by_ref = not (args.partition_by or args.range_by) and args.no_near_dedup
    resolve = None
    if by_ref:
        reader = ScanJsonl(args.input, args.id_field, args.text_field)
        scanned = pipeline | "Read" >> reader
        batches, dead = scanned["refs"], scanned["dead_letters"]
        resolve = ResolveRuns(reader, scanned["digests"],
                              spill_dir=join(first_dir, f"{SPILL_PREFIX}{uuid.uuid4().hex}"))
    else:
        reader = ReadJsonl(args.input, args.id_field, args.text_field, batch_size=READ_BATCH)
        batches, dead = pipeline | "Read" >> reader
    dedup = batches | "ExactDedup" >> ExactDedup(
        num_buckets=dedup_buckets(estimate_raw_bytes(reader.paths)),
        with_removed=args.write_removed, batched_output=by_ref, keyed=by_ref)
    kept = dedup["kept"]
    removed = dedup["removed"]
    gates = []
    if not args.no_near_dedup:
        kept, near_removed, near_gate = near_dedup_options.build_near_dedup(kept, args)
        gates.append(near_gate)
        if args.write_removed:
            removed = (removed, near_removed) | "AllRemoved" >> beam.Flatten()

    impulse = pipeline | "Gate" >> beam.Create([None])
    bad_gate = impulse | "BadFraction" >> beam.Map(
        _gate_bad_fraction,
        beam.pvalue.AsSingleton(
            batches | "BatchSizes" >> beam.Map(len) | "CountDocs" >> beam.CombineGlobally(sum)),
        beam.pvalue.AsSingleton(dead | "CountBad" >> beam.combiners.Count.Globally()),
        args.max_bad_fraction, first_dir)
    id_gate = dedup["id_conflicts"] | "IdGate" >> beam.Map(_gate_id_conflicts, args.id_field)

    records, scheme, info = partitioned(kept, args)
    records | "Store" >> WriteStore(
        roots, args.dataset, args.replication,
        num_shards=args.num_shards, target_shard_bytes=args.target_shard_bytes,
        codec=codec,
        manifest_extra={"kind": "text", "id_field": args.id_field,
                        "text_field": args.text_field,
                        "sorted_by": args.range_by if args.range_by else "id",
                        **({"codec_choice": codec_choice} if codec_choice else {})},
        preconditions=[bad_gate, id_gate] + gates,
        partitioning=scheme, partition_info=info, placement=placement, resolve=resolve)
    _write_jsonl(dead, "DeadLetters", first_dir, "dead_letters")
    if args.write_removed:
        _write_jsonl(removed, "Removed", first_dir, "removed")


def run(argv=None) -> dict:
    """Run the job; returns the run report (raises on failure)."""
    cli.setup_logging()
    args, options = build_parser().parse(argv)
    try:
        roots = cli.resolve_roots(args)
        if args.codec not in (None, "auto"):
            bytes_codec(args.codec)
        if args.partition_by and args.range_by:
            raise ValueError("give --partition_by or --range_by, not both")
        if args.max_partitions == 1 or args.max_partitions < 0:
            raise ValueError("--max_partitions must be 0 (no cap) or >= 2 (a value and _other)")
        rules = parse_rules(args.placement, normalise_root) if args.placement else []
        placement = Placement(roots, args.replication, rules, field=args.partition_by)
        if not args.no_near_dedup:
            near_dedup_options.config_from(args)
    except ValueError as err:
        build_parser().error(str(err))
    clock = RunClock()
    directories = [dataset_dir(r.uri, args.dataset) for r in roots]
    _delete_leftovers(directories[0])
    codec, report_choice, manifest_choice = choose_text_codec(args)

    progress.apply_log_level(args.log_level, options)
    inputs = input_lineage(expand_patterns(args.input))
    compressed = any(f["path"].endswith((".gz", ".zst", ".zstd")) for f in inputs)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, args, roots, placement, codec, manifest_choice)
    result = progress.run_pipeline(
        pipeline, job="prepare_corpus", log_level=args.log_level,
        total_bytes=None if compressed else sum(f["bytes"] or 0 for f in inputs),
        cleanup=lambda: progress.delete_temporaries(directories))

    values = counters(result)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    manifest = load_manifest(directories[0])
    balance = balance_rows(manifest)
    extra = {"store": directories, "codec": codec, "partitions": balance,
             "near_dedup_cluster_sizes": cluster_histogram(values),
             "shard_sizes": shard_sizes(manifest),
             "dead_letters": {"examples": dead_letter_examples(directories[0])}}
    if report_choice:
        extra["codec_choice"] = report_choice
    report = build_report("prepare_corpus", clock, values, vars(args), str(runner), extra,
                          options=options, result=result, inputs=inputs)
    write_report(report, directories)
    print(summary_table(values))
    print()
    print(balance_table(balance))
    print(f"\nstore: {directories[0]}  (replicas on {len(roots)} root(s), R={args.replication})")
    return report


def main(argv=None):
    try:
        run(argv)
    except progress.Interrupted as err:
        progress.exit_interrupted(err)
    except Exception as err:  # noqa: BLE001 - one clear line for the user, details in the log
        logging.getLogger(__name__).debug("run failed", exc_info=True)
        print(f"prepare_corpus failed: {_root_cause(err)}", file=sys.stderr)
        progress.print_notes(err)
        sys.exit(1)


def _root_cause(err: BaseException) -> str:
    """The innermost message of a Beam-wrapped worker exception."""
    text = str(err)
    marker = "not writing the manifest: "
    if marker in text:
        return text[text.index(marker):].splitlines()[0].split("[while running")[0].strip()
    return text.strip().splitlines()[-1] if text.strip() else repr(err)


if __name__ == "__main__":
    main()
