"""Read JSON Lines, drop bad lines, exact and near duplicates, write a replicated sharded store."""
import contextlib
import dataclasses
import glob
import os
import posixpath
import shutil

import apache_beam as beam
import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions

from pipelines import cli, near_dedup_options, progress
from transforms.core.worker_gc import tune_gc
from pipelines import run_config as run_configs
from transforms.core.codecs import bytes_codec
from transforms.prepare import SPILL_PREFIX, CorpusConfig, PrepareCorpus, SameInputs
from transforms.processing.io import MAX_LINE_BYTES, input_files, probe_inputs
from transforms.processing.parquet import corpus_paths
from transforms.processing.refs import Bounds
from transforms.reduction.codec_choice import (
    ChooseCodec, choice_record, compare_text, format_table, sample_text)
from transforms.reduction.filters.recipes import shipped_recipes
from transforms.reduction.filters.sampling import DEFAULT_SEED
from transforms.reduction.near_dedup import cluster_histogram
from transforms.storage.commit import (
    committed_digest, discard_failed_run, folders_to_make, is_local, leave_nothing_behind, newest,
    survey_roots)
from transforms.storage.placement import Placement, parse_rules
from transforms.storage.report import (
    REPORT_HTML, RunClock, build_report, counters, dead_letter_examples, distributions,
    input_lineage, lineage_difference, shard_sizes, summary_table, write_report)
from transforms.storage.sharding import balance_rows
from transforms.storage.spill import delete_spill
from transforms.storage.store import (
    AUDIT_DIR, DatasetLock, dataset_dir, join, load_manifest, normalise_root)

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data", "sample.jsonl")
AUDIT_PREFIXES = ("dead_letters", "removed", "inputs")
# the running job's audit files; moved up into _audit/ when the run succeeds
LAST_RUN = "last_run"


def build_parser() -> cli.Parser:
    parser = cli.Parser("prepare_corpus", __doc__)
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", default=SAMPLE,
                    help="JSON Lines or Parquet inputs: a file, a directory (every .jsonl/"
                    ".ndjson file under it), a glob, or several comma-separated; .jsonl and "
                    ".ndjson plain or .gz, .zst, .lz4, .bz2, .xz, and .parquet. Default: the "
                    "bundled sample corpus")
    cli.add_store_arguments(io, default_dataset="corpus")
    io.add_argument("--id_field", default="id", help="record id field (default: id)")
    io.add_argument("--text_field", default="text", help="text field (default: text)")
    io.add_argument("--max_bad_fraction", type=cli.fraction, default=0.01,
                    help="fail the run when more than this fraction of lines is bad "
                    "(default: 0.01; empty_text lines do not count)")
    io.add_argument("--max_line_bytes", type=cli.byte_size, default=MAX_LINE_BYTES,
                    help="longest line read (decompressed bytes); a longer one is a dead "
                    "letter line_too_long, skipped without being held (default: 32MiB)")
    io.add_argument("--allow_empty", action="store_true",
                    help="commit a dataset of no document when none is left to store (the "
                    "input holds none, or the filters, sampling or dead letters removed "
                    "every one; default: such a run fails and the committed dataset stays)")
    io.add_argument("--keep_empty_text", action="store_true",
                    help="store records whose text is empty or only whitespace (default: "
                    "they are removed, counted and written as dead letters empty_text)")
    dedup = parser.add_argument_group("deduplication")
    dedup.add_argument("--write_removed", action="store_true",
                       help="write a record per removed document (id as given, reason, "
                       "kept id, file, line) to _audit/removed-*.jsonl.zst, sorted by "
                       "file and line")
    near_dedup_options.add_arguments(parser)
    filters = parser.add_argument_group(
        "filters (decided in the first read, before dedup; see README, 'Filters')")
    filters.add_argument("--recipe", metavar="FILE.yaml|NAME", default=None,
                         help="filter recipe: a YAML file, or a shipped recipe by name ("
                         + ", ".join(shipped_recipes()) + "); default: no quality filters")
    filters.add_argument("--languages", metavar="CODES", default=None,
                         help="keep only documents detected (py3langid) as one of these "
                         "comma-separated language codes, e.g. en,zh (overrides the recipe's "
                         "language step)")
    filters.add_argument("--language_threshold", type=cli.fraction, default=None,
                         help="minimum language score in [0, 1] for --languages or the "
                         "recipe's language step (default: the recipe's, else 0.5)")
    filters.add_argument("--record_language", action="store_true",
                         help="write the detected language and its score into every stored "
                         "record as metadata.lang and metadata.lang_score; --partition_by lang "
                         "then partitions by the detected language")
    filters.add_argument("--redact_pii", action="store_true",
                         help="replace e-mail addresses, IP addresses, phone numbers, card "
                         "numbers and IBANs by <EMAIL>, <IP_ADDRESS>, ... (the redacted text "
                         "is deduplicated and stored; default: off)")
    filters.add_argument("--sample_fraction", type=cli.fraction, default=None,
                         help="keep a document when the seeded xxh3-64 of its id is below "
                         "F * 2**64 (same answer on every runner; default: keep all)")
    filters.add_argument("--sample_seed", type=int, default=DEFAULT_SEED,
                         help=f"seed of --sample_fraction and --sample_per_partition "
                         f"(default: {DEFAULT_SEED})")
    filters.add_argument("--sample_per_partition", type=cli.positive_int, default=None,
                         metavar="N", help="after dedup, keep the N documents with the "
                         "smallest seeded id hashes per --partition_by value (per store "
                         "without it)")
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
    store.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl",
                       help="shard format: jsonl (JSON Lines under --codec, default) or "
                       "parquet (pyarrow, zstd inside, one schema for the store, recorded in "
                       "the manifest)")
    store.add_argument("--zstd_level", type=int, default=3, choices=range(1, 23),
                       metavar="1..22", help="zstd level of shards (default: 3); shorthand "
                       "for --codec zstd:level=N")
    store.add_argument("--codec", default=None,
                       help="shard codec NAME[:key=value,...]: zstd[:level=N], gzip[:level=N], "
                       "lz4[:level=N], none; or 'auto' for the best ratio on a sample of the "
                       "input at --min_encode_mbps (default: zstd:level=--zstd_level)")
    store.add_argument("--min_encode_mbps", type=float, default=0.0,
                       help="for --codec auto: slowest acceptable encoder, MB/s (default: 0)")
    bounds = parser.add_argument_group(
        "memory bounds (documents travel as small refs; see DESIGN.md, 'Bounded elements')")
    bounds.add_argument("--batch_bytes", type=cli.byte_size, default=Bounds.batch_bytes,
                        help="at most this many bytes of refs per element (default: 1MiB)")
    bounds.add_argument("--bucket_bytes", type=cli.byte_size, default=Bounds.bucket_bytes,
                        help="input bytes per grouping bucket of dedup, LSH and joins "
                        "(default: 64MiB)")
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


def refuse_inputs_inside_the_store(paths: list[str], store_dirs: list[str]) -> None:
    """Raise ValueError when an input file lies in a dataset folder the run writes
    (``--input .`` from a folder holding the output root: the store's own shards
    and audit files would be read, and rewritten under the reader)."""
    for store in store_dirs:
        prefix = store.rstrip("/") + "/"
        inside = [p for p in paths if p.startswith(prefix)]
        if inside:
            raise ValueError(f"input {inside[0]} is inside the output dataset {store} "
                             f"({len(inside)} file(s)); give --input without the output "
                             "roots' folders")


class OtherInputs(ValueError):
    """The default roots hold a dataset made from other inputs (a usage error, with
    a hint)."""
    hint = (f"pass --output_roots to choose where to write; --output_roots "
            f"{cli.DEFAULT_ROOTS} writes a new generation of it from these inputs")


def refuse_other_inputs_on_default_roots(roots, dataset: str,
                                         paths: list[str]) -> SameInputs | None:
    """Raise OtherInputs (a ValueError) when the default roots (``--output_roots``
    not given) hold a committed dataset made from other inputs than ``paths`` (other
    files, or sizes: ``transforms.storage.report.lineage_difference``): a run from
    the same folder on another day would silently replace it.  The same files of
    the same sizes pass (a rerun adds a generation, byte-identical when nothing
    changed), with the ``SameInputs`` check of their content for the job (the
    digests the dataset's ``_audit/inputs*`` recorded; None when there is no
    dataset or no recorded digest): the scan digests every file anyway, so a file
    of the same size but other content fails the run (exit 1), committing nothing.
    """
    found = newest(survey_roots([r.uri for r in roots], dataset))
    if not found:
        return None
    where = f"{cli.DEFAULT_ROOTS} hold a dataset {dataset!r} made from other inputs"
    difference = lineage_difference(found[0].get("inputs"), input_files(paths))
    if difference:
        raise OtherInputs(f"{where} ({difference})")
    recorded = read_lineage(join(dataset_dir(roots[0].uri, dataset), AUDIT_DIR),
                            found[0]["inputs"])
    digests = tuple((e["path"], e["xxh3_64"]) for e in recorded if e["xxh3_64"])
    return SameInputs(digests, f"{where} (other content, same size: {{files}}); "
                      f"{OtherInputs.hint}") if digests else None


def _delete_leftovers(directory):
    """What an earlier run left: its ``_audit/last_run/`` folder (a failed run's
    audit files) and spill folders.  Called with the dataset's lock held, after
    every check passed.  The committed generation's audit files stay until this
    run succeeds (``_promote_audit``)."""
    _delete_tree(join(directory, AUDIT_DIR, LAST_RUN))
    _delete_spills(directory)


def _files_under(folder: str) -> list[str]:
    found = {m.path for m in FileSystems.match([join(folder, "*")])[0].metadata_list}
    if "://" not in folder and os.path.isdir(folder):   # local: folders (beam-temp-*) too
        found.update(os.path.join(folder, n) for n in os.listdir(folder))
    return sorted(found)


def _delete_tree(folder: str) -> None:
    if "://" not in folder:
        shutil.rmtree(folder, ignore_errors=True)
        return
    paths = [m.path for m in FileSystems.match([join(folder, "**")])[0].metadata_list]
    if paths:
        FileSystems.delete(paths)


def _promote_audit(directory: str) -> None:
    """After a successful run: the committed generation's audit files replace the
    previous ones (``_audit/<prefix>*`` deleted, ``_audit/last_run/<name>`` moved up),
    and ``last_run/`` (with any ``beam-temp-*`` left in it) is deleted."""
    audit = join(directory, AUDIT_DIR)
    staged = join(audit, LAST_RUN)
    patterns = [join(audit, f"{p}*.jsonl.zst") for p in AUDIT_PREFIXES]
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if stale:
        FileSystems.delete(stale)
    new = [p for p in _files_under(staged)
           if posixpath.basename(p).startswith(AUDIT_PREFIXES) and not os.path.isdir(p)]
    if new:
        FileSystems.rename(new, [join(audit, posixpath.basename(p)) for p in new])
    _delete_tree(staged)


def _keep_failed_audit(directory: str) -> None:
    """After a failed run: its audit files stay in ``_audit/last_run/`` when it wrote
    dead letters (they say why it failed) or removed records (Beam's temporary folders
    there are deleted); with neither (a failure the error line explains, e.g. an id
    naming two texts) the folder says nothing more and is deleted."""
    staged = join(directory, AUDIT_DIR, LAST_RUN)
    files = _files_under(staged)
    for path in files:
        if posixpath.basename(path).startswith("beam-temp-"):
            _delete_tree(path)
    # what says something: dead letters, and the removed records (--write_removed)
    telling = [p for p in files if posixpath.basename(p).startswith(("dead_letters", "removed"))]
    if all(_holds_no_record(p) for p in telling):
        _delete_tree(staged)


def _holds_no_record(path: str) -> bool:
    """An audit file (zstd JSON lines) with no line; unreadable counts as holding some
    (it stays)."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.ZSTD) as f:
            return not f.read(1)
    except Exception:  # noqa: BLE001 - kept: a human may look at it
        return False


def _delete_spills(directory):
    """Spill folders of the by-reference path (a failed run's too: a full disk
    must not stay full)."""
    runs = FileSystems.match([join(directory, f"{SPILL_PREFIX}*", "*")])[0].metadata_list
    spills = {posixpath.dirname(m.path) for m in runs}
    if "://" not in directory:  # an empty local folder holds no file to match
        spills.update(glob.glob(join(directory, f"{SPILL_PREFIX}*")))
    for spill_dir in spills:
        delete_spill(spill_dir)


def read_lineage(directory: str, inputs: list[dict]) -> list[dict]:
    """The manifest's ``inputs`` (path, bytes) with each file's xxh3-64 digest of its
    decompressed bytes, from the ``inputs*.jsonl.zst`` audit file the job wrote."""
    found = [m.path for r in FileSystems.match([join(directory, "inputs*.jsonl.zst")])
             for m in r.metadata_list]
    digests = {}
    for path in found:
        with FileSystems.open(path, compression_type=CompressionTypes.ZSTD) as f:
            for line in f.read().splitlines():
                if line.strip():
                    record = orjson.loads(line)
                    digests[record["path"]] = record["xxh3_64"]
    return [{**entry, "xxh3_64": digests.get(entry["path"])} for entry in inputs]


def committed_generation(directory: str, base: str | None) -> str:
    """How the interrupted line names what a finished run committed: ``generation 2 at
    out/a/corpus`` (``, unchanged`` when it is the generation the run started from:
    a rerun of the same inputs rewrites the same bytes)."""
    try:
        manifest = load_manifest(directory)
    except Exception:  # noqa: BLE001 - the line still says it is committed
        return directory
    same = ", unchanged" if manifest.get("digest") == base else ""
    return f"generation {manifest.get('generation')} at {directory}{same}"


def corpus_config(args, roots, placement=None, codec="zstd:level=3",
                  codec_choice=None, near_config=None) -> CorpusConfig:
    """Parsed flags (and what ``run`` resolved from them) -> the job's config."""
    return CorpusConfig(
        input=args.input, roots=tuple(roots), dataset=args.dataset,
        replication=args.replication, id_field=args.id_field, text_field=args.text_field,
        near_dedup=near_config, write_removed=args.write_removed,
        partition_by=args.partition_by, max_partitions=args.max_partitions or None,
        range_by=args.range_by, num_ranges=args.num_ranges, placement=placement,
        num_shards=args.num_shards, target_shard_bytes=args.target_shard_bytes,
        codec=codec, codec_choice=codec_choice, max_bad_fraction=args.max_bad_fraction,
        max_line_bytes=args.max_line_bytes, keep_empty_text=args.keep_empty_text,
        allow_empty=args.allow_empty,
        shard_format=args.format,
        bounds=Bounds(batch_bytes=args.batch_bytes, bucket_bytes=args.bucket_bytes),
        recipe=args.recipe, languages=args.languages or (),
        language_threshold=args.language_threshold, record_language=args.record_language,
        redact_pii=args.redact_pii, sample_fraction=args.sample_fraction,
        sample_seed=args.sample_seed, sample_per_partition=args.sample_per_partition)


def build_pipeline(pipeline, args, roots, placement=None, codec="zstd:level=3",
                   codec_choice=None):
    """Apply the job (``PrepareCorpus``) to ``pipeline``, configured by ``args``."""
    near_config = None if args.no_near_dedup else near_dedup_options.config_from(args)
    config = corpus_config(args, roots, placement, codec, codec_choice, near_config)
    return pipeline | "PrepareCorpus" >> PrepareCorpus(config)


def resolved_flags(args, codec: str, near_config) -> dict:
    """The flags with the values the job computed for those left unset: the run config
    file used, the codec used (also for ``--codec auto``), and near-dedup's
    ``num_perm``, ``shingle_size``, bands and rows (the report's ``config``); paths
    absolute, as typed under ``as_given`` (``cli.recorded_flags``)."""
    flags = dict(vars(args))
    flags["run_config"] = run_configs.resolve(
        args.run_config or run_configs.env_config() or "direct")
    flags = cli.recorded_flags(flags)
    flags["codec"] = codec
    if near_config is not None:
        lsh = near_dedup_options.report_section(near_config)
        flags.update(num_perm=lsh["num_perm"], shingle_size=lsh["shingle_size"],
                     near_dedup_bands=lsh["bands"], near_dedup_rows=lsh["rows"])
    return flags


def run(argv=None) -> dict:
    """Run the job; returns the run report (raises on failure)."""
    cli.setup_logging()
    args, options = build_parser().parse(argv)
    try:
        roots_given = cli.roots_given(args)
        roots = cli.resolve_roots(args)
        if args.codec not in (None, "auto"):
            bytes_codec(args.codec)
        if args.format == "parquet" and args.codec is not None:
            raise ValueError("--codec applies to --format jsonl (Parquet shards use zstd "
                             "inside)")
        if args.partition_by and args.range_by:
            raise ValueError("give --partition_by or --range_by, not both")
        if args.max_partitions == 1 or args.max_partitions < 0:
            raise ValueError("--max_partitions must be 0 (no cap) or >= 2 (a value and _other)")
        rules = parse_rules(args.placement, normalise_root) if args.placement else []
        placement = Placement(roots, args.replication, rules, field=args.partition_by)
        near_config = (None if args.no_near_dedup
                       else near_dedup_options.config_from(args, log=True))
        config = corpus_config(args, roots, placement, near_config=near_config)
    except ValueError as err:
        build_parser().error(str(err))
    paths = corpus_paths(args.input)   # an input matching nothing fails here, naming it
    try:
        refuse_inputs_inside_the_store(paths, config.store_dirs)
        same_inputs = (None if roots_given
                       else refuse_other_inputs_on_default_roots(roots, args.dataset, paths))
    except ValueError as err:
        build_parser().error(str(err), getattr(err, "hint", None))
    # Wrong kinds of input (Parquet, CSV, a JSON array, no text field) fail here,
    # in one line, before the job starts; faults inside a file fail the job.
    probe_inputs(corpus_paths(args.input), args.text_field,
                 args.range_by if args.range_by not in (None, "length") else None)
    clock = RunClock()
    directories = config.store_dirs
    codec, report_choice, manifest_choice = choose_text_codec(args)
    # workers outside this process send their live totals here (progress display only)
    receiver = progress.live_receiver(options)
    config = dataclasses.replace(config, codec=codec, codec_choice=manifest_choice,
                                 same_inputs=same_inputs,
                                 live_counters=receiver and receiver.address,
                                 audit_dir=join(directories[0], AUDIT_DIR, LAST_RUN))

    progress.apply_log_level(args.log_level, options)
    inputs = input_lineage(corpus_paths(args.input))
    compressed = any(f["path"].lower().endswith((".gz", ".zst", ".zstd", ".lz4", ".bz2", ".xz",
                                                 ".parquet"))
                     for f in inputs)
    # Ctrl-C is held (progress.deferred_interrupts) while a step that must finish whole
    # runs: taking and releasing the lock on every root, cleaning up after a failed run,
    # and from the end of a committed run until its audit files and report are in place
    with contextlib.ExitStack() as held:
        try:
            pipeline = beam.Pipeline(options=options)
            # building checks the inputs and reads the generation the commit will replace
            pipeline | "PrepareCorpus" >> PrepareCorpus(config)
            lock = DatasetLock(directories, job="prepare_corpus", break_lock=args.break_lock)
            uris = [r.uri for r in roots]
            made = folders_to_make(uris)
            try:
                # inside the try whose finally releases it: a Ctrl-C held while the lock
                # was taken is raised after it, and the release still runs (only locks
                # with this run's token are deleted)
                try:
                    with progress.deferred_interrupts():
                        lock.acquire()
                finally:   # also when taking it failed after a stale lock was removed
                    cli.say_broken_locks("prepare_corpus", lock)
                _delete_leftovers(directories[0])
                tune_gc()  # the runner's process too (transforms/core/worker_gc.py)
                base = committed_digest(uris, args.dataset)
                try:
                    result = progress.run_pipeline(
                        pipeline, job="prepare_corpus", log_level=args.log_level,
                        total_bytes=None if compressed else sum(f["bytes"] or 0 for f in inputs),
                        cleanup=lambda: progress.delete_temporaries(directories),
                        receiver=receiver,
                        # finished = the run's generation is committed, wherever the
                        # Ctrl-C or failure came from
                        committed=lambda: committed_digest(uris, args.dataset) != base)
                except BaseException as err:
                    with progress.deferred_interrupts():
                        discard_failed_run(uris, args.dataset)
                        if progress.finished():
                            # committed, then cut short (a second Ctrl-C while its last
                            # steps ended): the generation's audit files are its own,
                            # and the interrupted line names it
                            _promote_audit(directories[0])
                            progress.committed_as(committed_generation(directories[0], base))
                        elif (isinstance(err, (KeyboardInterrupt, progress.Interrupted))
                              and progress.failure() is None):
                            # a cancelled run's audit files say nothing: none stay (a
                            # run that failed before the Ctrl-C ends as that failure,
                            # whose line may name its dead letters: kept, below)
                            _delete_tree(join(directories[0], AUDIT_DIR, LAST_RUN))
                        else:
                            # a failed run leaves no shard that the committed generation
                            # does not use, and that generation's audit files as they were
                            _keep_failed_audit(directories[0])
                        _delete_spills(directories[0])
                    raise
                # from the commit to the last line printed a Ctrl-C waits: the audit
                # files, the report and the summary (naming the store) all come first
                held.enter_context(progress.deferred_interrupts())
                progress.committed_as(committed_generation(directories[0], base))
                _delete_spills(directories[0])
                _promote_audit(directories[0])
            finally:
                with progress.deferred_interrupts():
                    leave_nothing_behind(lock, directories, made, progress.finished())
                progress.end_of_run()
        finally:
            if receiver is not None:
                receiver.close()

        # the report of the committed generation, on every root
        values = counters(result)
        extra_metrics = {"distributions": distributions(result)}
        runner = options.view_as(StandardOptions).runner or "DirectRunner"
        manifest = load_manifest(directories[0])
        balance = balance_rows(manifest)
        extra = {"store": directories, "codec": codec, "partitions": balance,
                 "near_dedup_cluster_sizes": cluster_histogram(values), **extra_metrics,
                 "near_dedup": near_config and near_dedup_options.report_section(near_config),
                 "shard_sizes": shard_sizes(manifest),
                 "dead_letters": {"examples": dead_letter_examples(directories[0])},
                 "filters": config.filters_record()}
        # lineage: path and bytes from the manifest, digests from the scan's audit file
        inputs = [{"path": e["path"], "bytes": e["bytes"], "digest": e["xxh3_64"]}
                  for e in read_lineage(join(directories[0], AUDIT_DIR), manifest["inputs"])]
        if report_choice:
            extra["codec_choice"] = report_choice
        report = build_report("prepare_corpus", clock, values,
                              resolved_flags(args, codec, near_config), str(runner), extra,
                              options=options, result=result, inputs=inputs, pipeline=pipeline)
        write_report(report, directories)
        print(summary_table(values))
        print()
        print(balance_table(balance))
        print(f"\nstore: {directories[0]}  (replicas on {len(roots)} root(s), "
              f"R={args.replication})")
        print(f"report: {join(directories[0], AUDIT_DIR, REPORT_HTML)}  (and run_report.json; "
              f"dataprep report {directories[0]} re-renders it)", flush=True)
    return report


def main(argv=None):
    cli.run_job("prepare_corpus", run, argv)


if __name__ == "__main__":
    main()
