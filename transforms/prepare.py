"""``PrepareCorpus``: the whole prepare_corpus job as one composite PTransform.

``pipelines/prepare_corpus.py`` is flags -> ``CorpusConfig`` -> this composite
(plus what only a driver can do: the dataset lock, deleting a failed run's
files, the run report).  Another pipeline reuses the whole job with::

    config = CorpusConfig(input="data/*.jsonl.zst", roots=roots_from(["/mnt/a", "/mnt/b"]),
                          replication=2)
    outputs = pipeline | "Prepare" >> PrepareCorpus(config)
    outputs["manifest"]       # PCollection of one dict: the committed manifest
    outputs["dead_letters"]   # PCollection of dicts: bad lines, with file, line and reason
    outputs["removed"]        # Removal records (with write_removed; storage.removed has the format)

The job, all on refs (``transforms.core.records.DocRef``; see DESIGN.md,
'Bounded elements'): scan each file once (text key, MinHash band keys,
partition value, range key, sizes) -> exact dedup -> near dedup -> partition
-> shard plan -> one re-read per file into shard runs -> replicated shards and
manifest, committed only when every gate passed (bad-line fraction, id
conflicts, near-dedup convergence, numeric range field).
"""
import os
import uuid
from dataclasses import dataclass, field
from typing import Optional, Tuple

import apache_beam as beam
import orjson
from apache_beam.io.filesystem import CompressionTypes

from transforms.core import exact_json
from transforms.core.ids import show_ids
from transforms.processing.io import (
    MAX_LINE_BYTES, estimate_raw_bytes, input_files)
from transforms.processing.option_views import reused_option_views
from transforms.processing.parquet import corpus_paths
from transforms.processing.partition import (
    NumericFieldGate, PartitionByField, RangePartition)
from transforms.core.records import Packed, pack_columns, unpack
from transforms.processing.refs import Bounds, DocRef, ResolveRuns, ScanJsonl, ScanSpec
from transforms.processing.runner_guards import guard_pipeline, keep_direct_runner_local
from transforms.reduction.dedup import ExactDedup
from transforms.reduction.filters.beam import KeepSmallestPerPartition
from transforms.reduction.filters.sampling import DEFAULT_SEED
from transforms.reduction.filters.stage import FilterStage, build_recipe
from transforms.reduction.near_dedup import NearDedupConfig, RemoveNearDuplicates, Signer
from transforms.storage.placement import Placement, Root
from transforms.storage.removed import WriteRemoved
from transforms.storage.sharding import ShardRecord, hash_order, hash_orders
from transforms.storage.store import (
    AUDIT_DIR, WriteStore, dataset_dir, join, normalise_root)

SPILL_PREFIX = ".runs-"  # temporary runs and spills; a failed run leaves its folder
NOT_BAD = ("empty_text",)  # dead-letter reasons that are a policy, not bad input


@dataclass(frozen=True)
class SameInputs:
    """The content the inputs must have, else the run fails committing nothing
    (``gate_same_inputs``): prepare_corpus on its default roots, where the
    dataset was made from files of the same paths and sizes, checks that their
    content is the same too (the scan digests every file anyway).

    ``digests``: ``((path, xxh3-64 hex of the decompressed bytes), ...)`` as the
    dataset's ``_audit/inputs*`` recorded them; ``message``: the refusal, with
    ``{files}`` where the files of other content are named."""
    digests: tuple
    message: str


@dataclass(frozen=True)
class CorpusConfig:
    """Everything the job does, resolved (no flag parsing, no defaults hidden in code).

    ``input``: JSON Lines and Parquet paths/globs (comma-separated or a list;
    .jsonl, .jsonl.gz/.zst/.lz4/.bz2/.xz, .parquet).  ``roots``: ``Root``s of the store (see
    ``transforms.storage.placement``); ``replication``: replicas per shard
    (1..len(roots)); ``placement``: a ``Placement`` pinning partitions to
    roots (default: every partition on every root).  ``near_dedup``: a
    ``NearDedupConfig`` (None: exact dedup only).  ``partition_by`` (field)
    or ``range_by`` (``"length"`` or a numeric field, cut into
    ``num_ranges``), not both.  ``codec``: shard codec spec
    (``transforms.core.codecs.bytes_codec``).  ``max_bad_fraction``: the run
    fails, committing nothing, when more of the lines are bad (empty text does
    not count).  ``shard_format``: ``"jsonl"`` (under ``codec``) or ``"parquet"``
    (``transforms.storage.parquet_shards``).  ``live_counters``: where the scan's
    workers send live counter totals for a progress display (a
    ``transforms.processing.live.Receiver`` address; None: nowhere; changes
    nothing computed).  ``audit_dir``: where the audit files (dead letters,
    removed records, input lineage) are written (None:
    ``<first root>/<dataset>/_audit``; the prepare_corpus job writes them to
    ``_audit/last_run/`` and moves them up once the run succeeded, so a failed
    run never replaces the committed generation's).  ``allow_empty``: commit a
    generation with no document (default: a run that would store none fails,
    whether the input holds none or the filters, sampling or dead letters removed
    every one, ``gate_nothing_kept``).  ``same_inputs``: a ``SameInputs`` (the
    digests the inputs must have; None: no such check).

    Filters (``transforms.reduction.filters``; decided in the scan, before
    dedup, so a filtered document is never a dedup winner): ``recipe`` (a
    ``Recipe``, a shipped name such as ``"web"``/``"minimal"``, or a YAML
    path; resolved to a ``Recipe`` here); ``languages`` (codes, a list or
    ``"en,zh"``) keep only those languages, ``language_threshold`` the
    minimum py3langid score (both folded into the recipe's ``language``
    step, see ``stage.build_recipe``); ``record_language`` writes
    ``metadata.lang``/``metadata.lang_score`` into every stored record (and
    ``partition_by="lang"`` then, or with ``languages``, partitions by the
    detected language); ``redact_pii`` replaces PII by typed placeholders (the
    redacted text is what is hashed for dedup and stored); ``sample_fraction``
    keeps a document when the ``sample_seed``-ed xxh3-64 of its id is below
    ``fraction * 2**64``; ``sample_per_partition`` keeps, after dedup, the
    ``n`` documents with the smallest such hashes per ``partition_by`` value
    (per store without one).  Raises ValueError (one line) on inconsistent
    values, an invalid recipe or an unknown language code.
    """
    input: object
    roots: tuple
    dataset: str = "corpus"
    replication: int = 1
    id_field: str = "id"
    text_field: str = "text"
    near_dedup: Optional[NearDedupConfig] = None
    write_removed: bool = False
    partition_by: Optional[str] = None
    max_partitions: Optional[int] = 256
    range_by: Optional[str] = None
    num_ranges: int = 8
    placement: Optional[Placement] = None
    num_shards: Optional[int] = None
    target_shard_bytes: int = 64 << 20
    codec: str = "zstd:level=3"
    codec_choice: Optional[dict] = None
    max_bad_fraction: float = 0.01
    max_line_bytes: int = MAX_LINE_BYTES
    keep_empty_text: bool = False
    bounds: Bounds = field(default_factory=Bounds)
    recipe: object = None
    languages: tuple = ()
    language_threshold: Optional[float] = None
    record_language: bool = False
    redact_pii: bool = False
    sample_fraction: Optional[float] = None
    sample_seed: int = DEFAULT_SEED
    sample_per_partition: Optional[int] = None
    shard_format: str = "jsonl"
    live_counters: Optional[str] = None
    audit_dir: Optional[str] = None
    allow_empty: bool = False
    same_inputs: Optional["SameInputs"] = None

    def __post_init__(self):
        roots = tuple(r if isinstance(r, Root) else Root(normalise_root(str(r)))
                      for r in self.roots)
        object.__setattr__(self, "roots", roots)
        if not roots:
            raise ValueError("give at least one store root")
        if not 1 <= self.replication <= len(roots):
            raise ValueError(f"replication {self.replication} needs 1..{len(roots)} roots")
        if self.partition_by and self.range_by:
            raise ValueError("give partition_by or range_by, not both")
        if self.max_partitions is not None and self.max_partitions < 2:
            raise ValueError("max_partitions must be None (no cap) or >= 2 (a value and _other)")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        self._check_filters()

    def _check_filters(self):
        languages = self.languages
        if isinstance(languages, str):
            languages = [x.strip() for x in languages.split(",") if x.strip()]
        object.__setattr__(self, "languages", tuple(languages))
        if self.language_threshold is not None and not 0.0 <= self.language_threshold <= 1.0:
            raise ValueError(f"language_threshold must be in [0, 1], got "
                             f"{self.language_threshold}")
        if self.sample_fraction is not None and not 0.0 <= self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in [0, 1], got {self.sample_fraction}")
        if self.sample_per_partition is not None:
            if self.sample_per_partition < 1:
                raise ValueError(f"sample_per_partition must be >= 1, got "
                                 f"{self.sample_per_partition}")
            if self.range_by:
                raise ValueError("sample_per_partition works with partition_by (or no "
                                 "partitioning), not range_by")
        object.__setattr__(self, "recipe", build_recipe(
            self.recipe, self.languages, self.language_threshold))

    def filter_stage(self) -> Optional[FilterStage]:
        """The scan's filter stage, or None when no filter option is set."""
        stage = FilterStage(
            recipe=self.recipe, redact_pii=self.redact_pii,
            sample_fraction=self.sample_fraction, sample_seed=self.sample_seed,
            record_language=self.record_language,
            detect_language=self.partition_by == "lang" and bool(self.languages))
        return stage if stage.active else None

    def filters_record(self) -> Optional[dict]:
        """The resolved filter settings (recipe with every parameter, PII,
        sampling) for the manifest and run report; None when nothing filters."""
        stage = self.filter_stage()
        if stage is None and self.sample_per_partition is None:
            return None
        record = (stage or FilterStage()).resolved()
        record["sample_per_partition"] = self.sample_per_partition
        if self.sample_per_partition is not None:
            record["sample_seed"] = self.sample_seed
        record["partition_by_detected_language"] = bool(
            self.partition_by == "lang" and stage is not None and stage.languages)
        return record

    @property
    def store_dirs(self) -> list[str]:
        """``<root>/<dataset>`` on every root, first root first."""
        return [dataset_dir(r.uri, self.dataset) for r in self.roots]

    def resolved_placement(self) -> Placement:
        return self.placement or Placement(list(self.roots), self.replication, [],
                                           field=self.partition_by)


def count_tally(tally: dict) -> tuple[int, dict, dict, int]:
    """The job's tally (``PrepareCorpus``'s ``Tally`` step: ``{"documents": n,
    "filtered.<filter>": n, "dead.<reason>": n, "kept": n}``, keys with no count
    absent) -> ``(documents read, {filter: dropped}, {dead-letter reason: lines},
    documents kept)``.  Documents read are the lines that parsed into a document
    (filtered ones included, dead letters not)."""
    filtered = {k[len("filtered."):]: v for k, v in tally.items() if k.startswith("filtered.")}
    dead = {k[len("dead."):]: v for k, v in tally.items() if k.startswith("dead.")}
    return tally.get("documents", 0), filtered, dead, tally.get("kept", 0)


def gate_bad_fraction(_, tally, max_fraction, where):
    """'' or why the run must not commit: too many bad lines (dead letters whose
    reason is not in ``NOT_BAD``, against documents read plus those)."""
    records, _, dead, _ = count_tally(tally)
    bad = sum(n for reason, n in dead.items() if reason not in NOT_BAD)
    total = records + bad
    if total and bad / total > max_fraction:
        return (f"{bad} of {total} lines are bad ({bad / total:.2%}), above "
                f"--max_bad_fraction {max_fraction:g}; see the dead letters in {where}")
    return ""


def _by_count(counts: dict) -> str:
    """``{"lang": 34, "gopher_quality": 1200}`` -> ``"gopher_quality 1,200, lang 34"``
    (largest first, then by name)."""
    return ", ".join(f"{name} {n:,}" for name, n in
                     sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def gate_nothing_kept(_, tally, dataset):
    """'' or why the run must not commit: no document is left to store, which would
    replace ``dataset`` with an empty generation; almost always a wrong input or
    recipe (``allow_empty`` commits it anyway).  Whatever removed the last document
    (no line at all, every line a dead letter, the filters and sampling, a later
    stage) is this gate; the message counts the documents read and what each
    stage removed (``tally``: see ``count_tally``)."""
    documents, filtered, dead, kept = count_tally(tally)
    if kept:
        return ""
    lines = sum(dead.values())
    if not documents:
        why = ("the input holds no document (only empty files or blank lines)" if not lines
               else f"the input holds no document: {lines:,} line(s), every one a dead "
               f"letter ({_by_count(dead)})")
    else:
        stages = []
        if filtered:
            stages.append(f"filters removed {sum(filtered.values()):,}: {_by_count(filtered)}")
        later = documents - sum(filtered.values())
        if later:   # dedup and per-partition sampling keep one at least: not so far
            stages.append(f"later stages removed {later:,}")
        why = f"0 of {documents:,} documents kept ({'; '.join(stages)})"
        if lines:
            why += f", and {lines:,} line(s) were dead letters ({_by_count(dead)})"
    return (f"{why}; nothing committed, dataset {dataset!r} stays as it was "
            "(--allow_empty commits an empty generation)")


def gate_same_inputs(_, lineage, same: SameInputs):
    """'' or why the run must not commit: an input file's content is not what
    ``same`` says (``lineage``: this run's ``{"path", "xxh3_64"}`` per file)."""
    now = {entry["path"]: entry["xxh3_64"] for entry in lineage}
    changed = [os.path.basename(path) for path, digest in same.digests
               if path in now and now[path] != digest]
    if not changed:
        return ""
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3:,} more" if len(changed) > 3
                                      else "")
    return same.message.format(files=shown)


def gate_id_conflicts(summary, id_field):
    """'' or why the run must not commit: one id names several texts."""
    if not summary["count"]:
        return ""
    return (f"{summary['count']} {id_field!r} value(s) name more than one distinct text, "
            f"e.g. {show_ids(summary['examples'])}; give every document a unique id")


class WriteAuditJsonl(beam.PTransform):
    """Dicts -> ``<directory>/<prefix>-*.jsonl.zst`` (dead letters, inputs; in the
    runner's order: the removed records have their own writer, ``WriteRemoved``)."""

    def __init__(self, directory: str, prefix: str):
        super().__init__()
        self.directory = directory
        self.prefix = prefix

    def expand(self, records):
        return (
            records
            | "ToJson" >> beam.Map(lambda rec: orjson.dumps(rec).decode())
            | "Write" >> beam.io.WriteToText(
                join(self.directory, self.prefix), file_name_suffix=".jsonl.zst",
                compression_type=CompressionTypes.ZSTD))


def _hash_records(batch) -> Packed:
    """Kept refs of an unpartitioned store -> their ``ShardRecord``s in id-hash order,
    packed (``transforms.core.records.pack``: one bytes value, not a pickle per record)."""
    ids = [ref.id for ref in batch]
    return pack_columns(ShardRecord, [[""] * len(ids), hash_orders(ids), ids, batch])


def _json_value(ref: DocRef, name: str):
    return exact_json.loads(getattr(ref, name))


class PrepareCorpus(beam.PTransform):
    """JSON Lines files -> a committed, replicated, sharded, deduplicated store.

    Apply to a pipeline (``PBegin``); ``config`` is a ``CorpusConfig``.
    Returns a dict of PCollections: ``manifest`` (one dict, once committed),
    ``dead_letters`` (dicts ``{"file", "line", "reason", "detail", ...}``),
    ``removed`` (with ``write_removed``: a ``transforms.core.records.Removal`` per
    removed document, its ``file`` indexing the composite's ``paths``, the sorted
    input files; ``transforms.storage.removed.removed_record(r, prepare.paths)`` is
    the record as written; records, not dicts: an id beyond 64 bits does not cross
    a runner as an int; else empty),
    ``inputs`` (dicts ``{"path", "xxh3_64"}``).  Audit files (dead letters, removed, inputs) are written to
    ``<first root>/<dataset>/_audit/`` (``audit_dir``); the manifest is written only
    once the removed records are (sorted by input file and line: same bytes on
    every runner).  On the multi-process DirectRunner the data-plane
    guard is applied (``transforms.processing.runner_guards``).
    """

    def __init__(self, config: CorpusConfig):
        super().__init__()
        self.config = config
        self.paths = corpus_paths(config.input)   # fails early, naming the pattern
        self.spill_dir = join(config.store_dirs[0], f"{SPILL_PREFIX}{uuid.uuid4().hex}")

    def expand(self, pbegin):
        # Beam 2.77 re-parses the flags on each of the ~1,500 options views building this
        # takes (half its CPU): each view made once (transforms/processing/option_views.py)
        with reused_option_views():
            return self._expand(pbegin)

    def _expand(self, pbegin):
        c = self.config
        pipeline = pbegin.pipeline
        # Beam 2.77's multi-process DirectRunner drops bundle input (a data-plane flush
        # race; transforms/processing/runner_guards.py says how to tell when it is fixed)
        guard_pipeline(pipeline.options)
        keep_direct_runner_local(pipeline)   # not Prism downloaded by the DirectRunner (same module)
        audit_dir = c.audit_dir or join(c.store_dirs[0], AUDIT_DIR)
        bounds = c.bounds
        num_buckets = bounds.buckets(estimate_raw_bytes(self.paths))
        signer = Signer(c.near_dedup, num_buckets) if c.near_dedup else None
        stage = c.filter_stage()
        spec = ScanSpec(signer, c.partition_by, c.range_by, self.spill_dir, stage,
                        c.write_removed, c.live_counters)
        reader = ScanJsonl(self.paths, c.id_field, c.text_field, spec, bounds,
                           max_line_bytes=c.max_line_bytes, keep_empty=c.keep_empty_text)
        scanned = pbegin | "Read" >> reader
        batches, dead = scanned["refs"], scanned["dead_letters"]
        lineage = scanned["digests"] | "DigestPaths" >> beam.Map(
            lambda digest, paths: {"path": paths[digest.file], "xxh3_64": digest.digest},
            list(reader.paths))
        dedup = batches | "ExactDedup" >> ExactDedup(
            num_buckets=num_buckets, with_removed=c.write_removed,
            batch_bytes=bounds.batch_bytes)
        kept, removed = dedup["kept"], [scanned["filtered"], dedup["removed"]]
        gates, spills_deleted = [], None
        if signer is not None:
            near = kept | "NearDedup" >> RemoveNearDuplicates(
                c.near_dedup, signer, self.spill_dir, scanned["digests"],
                with_removed=c.write_removed, batch_bytes=bounds.batch_bytes)
            kept, spills_deleted = near["kept"], near["spills_deleted"]
            gates.append(near["gate"])
            if c.write_removed:
                removed.append(near["removed"])
        if c.sample_per_partition is not None:
            sampled = kept | "SamplePerPartition" >> KeepSmallestPerPartition(
                c.sample_per_partition, c.sample_seed,
                key_fn=lambda ref: ref.partition_value, removed=c.write_removed)
            kept = sampled["kept"]
            removed.append(sampled["removed"])
        removed = tuple(removed) | "AllRemoved" >> beam.Flatten()

        impulse = pbegin | "Gate" >> beam.Create([None])
        # what every stage read, dropped and kept, for the gates: one small dict
        pair = Tuple[str, int]
        counts = (
            batches | "BatchSizes" >> beam.Map(
                lambda batch: ("documents", len(batch))).with_output_types(pair),
            scanned["filtered_counts"] | "FilteredSizes" >> beam.FlatMapTuple(
                lambda name, n: [("documents", n), (f"filtered.{name}", n)]
            ).with_output_types(pair),
            dead | "DeadReasons" >> beam.Map(
                lambda d: (f"dead.{d['reason']}", 1)).with_output_types(pair),
            kept | "KeptSizes" >> beam.Map(
                lambda batch: ("kept", len(unpack(batch)))).with_output_types(pair))
        tally = beam.pvalue.AsDict(
            counts | "AllCounts" >> beam.Flatten()
            | "Tally" >> beam.CombinePerKey(sum).with_output_types(pair))
        gates.append(impulse | "BadFraction" >> beam.Map(
            gate_bad_fraction, tally, c.max_bad_fraction, audit_dir))
        if not c.allow_empty:
            gates.append(impulse | "NotEmpty" >> beam.Map(gate_nothing_kept, tally, c.dataset))
        if c.same_inputs is not None:
            gates.append(impulse | "SameInputs" >> beam.Map(
                gate_same_inputs, beam.pvalue.AsList(lineage), c.same_inputs))
        gates.append(dedup["id_conflicts"] | "IdGate" >> beam.Map(
            gate_id_conflicts, c.id_field))
        if c.range_by and c.range_by != "length":
            gates.append(scanned["odd_range_values"] | "RangeFieldGate" >> NumericFieldGate(
                c.range_by))
        if c.write_removed:   # the commit waits for the removed records, all written
            gates.append(removed | "Removed" >> WriteRemoved(audit_dir, reader.paths))
        records, scheme, info = self._partitioned(kept)
        lines = ResolveRuns(reader, scanned, spill_dir=self.spill_dir,
                            by_order=bool(c.range_by), after=spills_deleted)
        manifest = records | "Store" >> WriteStore(
            list(c.roots), c.dataset, c.replication,
            num_shards=c.num_shards, target_shard_bytes=c.target_shard_bytes,
            codec=c.codec,
            manifest_extra={"kind": "text", "id_field": c.id_field,
                            "text_field": c.text_field, "inputs": input_files(reader.paths),
                            "sorted_by": c.range_by if c.range_by else "id",
                            **({"codec_choice": c.codec_choice} if c.codec_choice else {}),
                            **({"filters": c.filters_record()} if c.filters_record() else {})},
            preconditions=gates, partitioning=scheme, partition_info=info,
            placement=c.resolved_placement(), lines=lines, shard_format=c.shard_format)
        dead | "DeadLetters" >> WriteAuditJsonl(audit_dir, "dead_letters")
        lineage | "Inputs" >> WriteAuditJsonl(audit_dir, "inputs")
        return {"manifest": manifest, "dead_letters": dead, "removed": removed,
                "inputs": lineage}

    def _partitioned(self, kept):
        """Batches of kept refs -> (batches of ShardRecord, scheme for the manifest,
        partition info or None)."""
        c = self.config
        if c.partition_by:
            refs = kept | "Refs" >> beam.FlatMap(lambda batch: batch)
            routed, info = refs | "PartitionByField" >> PartitionByField(
                c.partition_by, c.max_partitions,
                value_fn=lambda ref: _json_value(ref, "partition_value"))
            records = routed | "HashOrder" >> beam.MapTuple(
                lambda name, ref: [ShardRecord(name, hash_order(ref.id), ref.id, ref)])
            return records, {"scheme": "field"}, info
        if c.range_by:
            refs = kept | "Refs" >> beam.FlatMap(lambda batch: batch)
            routed, info = refs | "RangePartition" >> RangePartition(
                lambda ref: _json_value(ref, "range_key"), c.num_ranges,
                key_name=c.range_by)
            records = routed | "RangeOrder" >> beam.MapTuple(
                lambda name, order, ref: [ShardRecord(name, order, ref.id, ref)])
            return records, {"scheme": "range"}, info
        return kept | "HashOrder" >> beam.Map(_hash_records), None, None
