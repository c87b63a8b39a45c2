"""Documents by reference: every prepare_corpus configuration moves small refs,
and each kept line is read once, into its shard.

Shipping whole documents through every shuffle is what makes a Beam job slow
and its memory grow with the corpus: each stage boundary encodes, copies and
decodes all the text, and the in-process runners keep every shuffled element
in the driver.  Here a document travels as a ``DocRef`` until its shard is
known:

1. ``ScanJsonl`` (pass 1) reads every file once and computes, per document,
   everything later steps need from the text: the text key (exact dedup),
   the MinHash band keys and verification sketch (near-dedup), the filter
   stage's decisions, the partition value, the range key and the shard bytes.  Output: batches of ``DocRef``, each batch at most
   ``batch_bytes`` (see ``Bounds``).  The LSH band keys and the verification
   sketch (the document's distinct 32-bit shingle hashes, at most 1,024) are
   the bulk of near-dedup's data (a few KB a document), so they do not ride
   on the ref: the scan writes them into bucketed ``Spill`` files (band
   entries by band-key bucket, sketches by id bucket), which the LSH step and
   the sketch look-up of verification read one bucket at a time.
2. Dedup, LSH, connected components, partitioning and the shard plan work on
   refs alone.
3. ``ResolveRuns`` (pass 2) groups the kept refs by file (by range for a
   split file, bytes or zstd frames: ``transforms.processing.splits``), re-reads each file or range
   once, picks its kept lines and writes the file's lines for each shard as a
   *run*: a temporary file of lines sorted by their key in the shard (one lz4
   frame), in a spill folder beside the shards.  The runner carries only
   ``(shard, Run)``; the shard writer merges its runs and deletes them once the
   shard is committed (``transforms.storage.spill``); the spill folder goes
   once the manifest is written (``delete_spill``).

The xxh3-64 digest of every file's decompressed bytes is taken in both passes;
a file that changed in between fails the run instead of filling shards with
the wrong lines.
"""
import bisect
from dataclasses import dataclass
from typing import List, Optional

import apache_beam as beam
import orjson
import xxhash
from apache_beam import coders
from apache_beam.metrics import Metrics

from transforms.core import exact_json
from transforms.core.hashing import text_keys
from transforms.core.worker_gc import tune_gc
from transforms.core.records import (  # noqa: F401 - the records travel with the refs
    NO_VALUE, Bounds, Digest, DocRef, Packed, Pick, Removal, Run, ScannedRange, chunked, pack,
    pack_columns, ref_bytes, sized_chunks, unpack, unpack_columns)
from transforms.processing.parquet import is_parquet, picked_lines, scan_units
from transforms.processing.splits import open_range, plan_splits
from transforms.processing.io import (DEAD_LETTER_TAG, MAX_LINE_BYTES, BadRecord,
                                      JsonlFileDoFn, ReadJsonl, dead_letter, lines_at,
                                      numbered_lines, open_text_stream, parse_line)
from transforms.processing.line_edits import EditError, replace_field, set_metadata
from transforms.processing import live
from transforms.storage.spill import (  # noqa: F401 - re-exported for the scan's users
    InputChanged, Spill, SpillWriter, _write_runs, delete_spill, run_docs, run_order,
    shard_doc_order)

NAMESPACE = "dataprep.read"
ODD_RANGE_TAG = "odd_range_values"
DIGESTS_TAG = "digests"
RANGES_TAG = "ranges"   # ScannedRange of every range of a split file (bytes or zstd frames)
FILTERED_TAG = "filtered"   # Removal records of the filter stage (with write_removed)
# documents the filter stage dropped: (filter name, count) per file (or unit) and filter
FILTERED_COUNT_TAG = "filtered_counts"

for _record in (DocRef, Digest, Packed, Removal, ScannedRange):
    coders.registry.register_coder(_record, coders.RowCoder)
RUN_BYTES = 64 << 20  # a file's buffered kept lines are flushed as runs beyond this
SPILL_FLUSH_BYTES = 16 << 20  # a scan's buffered band entries and sketches written out beyond this


# ---------------------------------------------------------------- pass 1: scan

@dataclass(frozen=True)
class ScanSpec:
    """What the scan computes besides the text key.

    ``signer``: a ``transforms.reduction.near_dedup.Signer`` (None: no signatures),
    which writes each signed document's band entries and sketch into its
    spills (``signer.spills(spill_dir)``); ``partition_by``: field name whose
    value goes into ``partition_value``; ``range_by``: ``"length"``
    (characters of the text) or a numeric field.  ``filters``: a
    ``transforms.reduction.filters.stage.FilterStage`` (None: keep every
    document), decided here, before the text key and MinHash, on the text as
    read; kept documents are keyed, signed and sized on the (redacted) text
    they are stored with.  ``filter_removed``: output a ``Removal`` per
    dropped document.  ``partition_by == "lang"`` with a stage that detects
    languages partitions by the detected language, not a field.
    ``live_counters``: a driver's ``transforms.processing.live.Receiver``
    address; each worker process scanning sends it its live counter totals
    (display only, changes nothing computed; None: nothing sent).
    """
    signer: object = None
    partition_by: Optional[str] = None
    range_by: Optional[str] = None
    spill_dir: Optional[str] = None
    filters: object = None
    filter_removed: bool = False
    live_counters: Optional[str] = None


def non_numeric(value) -> str | None:
    """``repr`` (40 characters at most) of a present range value that is no number
    (a string, bool, list, NaN...), else None (a number, or absent/null)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return repr(value)[:40]
    return None


def _range_key(text: str, line: bytes, range_by: str, field_of) -> bytes:
    if range_by == "length":
        return orjson.dumps(len(text))
    value = field_of(line)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return b"null"  # not a number (NaN has no place in an order)
    return exact_json.dumps(value)


def stored_line(line: bytes, text_field: str, text: str, kept_text: str,
                lang=None, score=None):
    """The line as stored after the filter stage's edits, and the ref's flags.

    ``kept_text`` differs from ``text`` when PII redaction changed it: the
    text field's value is replaced (``line_edits.replace_field``).  With
    ``lang`` (recording languages) ``metadata.lang`` and ``metadata.lang_score``
    are set (``line_edits.set_metadata``).  Returns ``(line, redacted, lang,
    score)`` with ``""``/``0.0`` when no language is recorded.  Raises
    ``EditError`` when the record's ``metadata`` is not an object.
    """
    redacted = kept_text != text
    if redacted:
        line = replace_field(line, text_field, kept_text)
    if lang is None:
        return line, redacted, "", 0.0
    return set_metadata(line, {"lang": lang, "lang_score": score}), redacted, lang, score


class _ScanFile(JsonlFileDoFn):
    """``(file index, path)`` -> batches of ``DocRef``; dead letters; the file's
    ``Digest`` to ``digests``."""

    TYPED_IDS = True   # documents (id, text, line, int_id): refs carry the id's JSON type

    def __init__(self, id_field: str, text_field: str, spec: ScanSpec, bounds: Bounds,
                 **read_options):
        super().__init__(id_field, text_field, **read_options)
        self.spec = spec
        self.bounds = bounds
        self.batch_bytes = Metrics.distribution(NAMESPACE, "ref_batch_bytes")

    def setup(self):
        tune_gc()
        from transforms.processing.partition import json_field  # partition imports nothing of ours back
        live.send_to(self.spec.live_counters)
        self.signer = self.spec.signer
        if self.signer is not None:
            self.signer.setup()
            self.signer_spills = self.signer.spills(self.spec.spill_dir)
        self.partition_of = json_field(self.spec.partition_by) if self.spec.partition_by else None
        self.filters = self.spec.filters
        if self.filters is not None:
            self.filters.setup()
            if self.spec.partition_by == "lang" and self.filters.languages:
                self.partition_of = None  # the detected language, set per document
        self.range_field = (json_field(self.spec.range_by)
                            if self.spec.range_by not in (None, "length") else None)

    def process(self, indexed_path):
        index, path = indexed_path
        digest = xxhash.xxh3_64()
        yield from self.scan(index, path, self.documents(path, digest))
        yield beam.pvalue.TaggedOutput(DIGESTS_TAG, Digest(index, digest.hexdigest()))

    def scan(self, index, path, documents, part: int = 0):
        """``(line number, document)`` or ``(None, dead letter)`` -> batches of refs
        (and dead letters); ``part`` tells apart the spill files of one file's units."""
        block, text_bytes = [], 0
        self.dropped = {}   # filter name -> documents it dropped from this file (unit)
        self.writers = None
        if self.signer is not None:
            self.writers = [SpillWriter(spill, index, SPILL_FLUSH_BYTES, part)
                            for spill in self.signer_spills]
        for line_no, doc in documents:
            if line_no is None:
                yield doc  # a dead letter
                continue
            block.append((line_no, doc))
            text_bytes += len(doc[1])
            if text_bytes >= self.bounds.text_bytes or len(block) >= 4096:
                yield from self._refs(index, path, block)
                block, text_bytes = [], 0
        if block:
            yield from self._refs(index, path, block)
        for writer in self.writers or ():
            writer.close()
        for name, count in sorted(self.dropped.items()):
            yield beam.pvalue.TaggedOutput(FILTERED_COUNT_TAG, (name, count))

    def _filter(self, index, path, block):
        """The filter stage over a block (judged at once, ``FilterStage.decide_block``):
        the kept ``(line_no, (id, text, line, int_id), (redacted, lang, score))`` with
        text and line as stored; drops counted (and output as ``Removal`` records with
        ``filter_removed``)."""
        kept = []
        decisions = self.filters.decide_block(
            [(doc_id, text) for _, (doc_id, text, _, _) in block])
        for (line_no, (doc_id, text, line, int_id)), decision in zip(block, decisions):
            if decision.drop is not None:
                name = decision.drop.filter
                self.dropped[name] = self.dropped.get(name, 0) + 1
                if self.spec.filter_removed:
                    yield beam.pvalue.TaggedOutput(FILTERED_TAG, Removal(
                        index, line_no, doc_id, int_id, decision.drop.reason,
                        decision.drop.detail))
                continue
            try:
                line, redacted, lang, score = stored_line(
                    line, self.text_field, text, decision.text,
                    decision.lang if self.filters.record_language else None, decision.lang_score)
            except EditError as err:
                self._count_bad("metadata_not_object")
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, dead_letter(
                    path, line_no, "metadata_not_object", str(err), line))
                continue
            kept.append((line_no, (doc_id, decision.text, line, int_id),
                         (redacted, lang, score, decision.lang)))
        self.kept_block = kept

    def _refs(self, index, path, block):
        edits = None
        if self.filters is not None:
            yield from self._filter(index, path, block)
            block = [(line_no, doc) for line_no, doc, _ in self.kept_block]
            edits = [edit for _, _, edit in self.kept_block]
            if not block:
                return
        texts = [text for _, (_, text, _, _) in block]
        keys = text_keys(texts)
        signed = [False] * len(texts)
        if self.signer is not None:
            signed = self.signer.spill([doc_id for _, (doc_id, _, _, _) in block], keys, texts,
                                       self.writers)
        if edits is None and self.spec.partition_by is None and self.spec.range_by is None:
            refs = self._plain_refs(index, path, block, keys, signed)
        else:
            refs = yield from self._full_refs(index, path, block, keys, signed, edits)
        for batch, size in sized_chunks(refs, self.bounds.batch_bytes):
            self.batch_bytes.update(size)
            yield batch

    @staticmethod
    def _plain_refs(index, path, block, keys, signed) -> list:
        """The refs of a block when nothing is filtered, partitioned or ranged: the
        loop of ``_full_refs`` without its per-document branches (same refs)."""
        prefix = f"{path}:"
        new = tuple.__new__
        return [new(DocRef, (doc_id, key, index, line_no, len(line) + 1,
                             doc_id.startswith(prefix) and doc_id == f"{prefix}{line_no}",
                             signature, NO_VALUE, NO_VALUE, False, "", 0.0, int_id))
                for (line_no, (doc_id, _, line, int_id)), key, signature
                in zip(block, keys, signed)]

    def _full_refs(self, index, path, block, keys, signed, edits):
        refs = []
        for i, ((line_no, (doc_id, text, line, int_id)), key, signature) in enumerate(
                zip(block, keys, signed)):
            redacted, lang, score, detected = edits[i] if edits else (False, "", 0.0, None)
            value = NO_VALUE
            if self.partition_of is not None:
                value = exact_json.dumps(self.partition_of(("", line)),
                                         option=orjson.OPT_SORT_KEYS)
            elif self.spec.partition_by is not None:  # the detected language
                value = orjson.dumps(detected)
            range_key = NO_VALUE
            if self.spec.range_by is not None:
                range_key = _range_key(text, line, self.spec.range_by,
                                       lambda ln: self.range_field(("", ln)))
                if range_key == b"null" and self.range_field is not None:
                    odd = non_numeric(self.range_field(("", line)))
                    if odd is not None:  # a present value that is not a number
                        yield beam.pvalue.TaggedOutput(ODD_RANGE_TAG, odd)
            # A record given its default id has a rewritten line: pass 2 parses it
            # again.  (An id that merely equals the default costs a parse, no harm.)
            refs.append(DocRef(doc_id, key, index, line_no, len(line) + 1,
                               doc_id == f"{path}:{line_no}", signature, value, range_key,
                               redacted, lang, score, int_id))
        return refs


class ScanJsonl(ReadJsonl):
    """JSON Lines files -> dict of ``refs`` (batches of ``DocRef``; band entries
    and sketches into ``spec.spill_dir`` with near-dedup),
    ``dead_letters`` (dicts, ``transforms.processing.io.dead_letter``), ``digests``
    (``Digest``, one per file), ``ranges`` (``ScannedRange``, one per range
    of a split JSON Lines file (bytes or zstd frames) and per unit of row groups of a Parquet file;
    empty when neither is read) and ``odd_range_values``
    (``repr`` strings of ``--range_by`` field values that are present but not numbers; such documents get range key
    ``null``, and ``transforms.processing.partition.NumericFieldGate`` fails the run on them);
    with a filter stage, ``filtered`` (a ``Removal`` per dropped document, with
    ``spec.filter_removed``) and ``filtered_counts`` (``(filter name, documents it
    dropped)`` per file or unit and filter; nothing for a filter that dropped none).

    Parquet files (``.parquet``) are scanned in units of row groups
    (``transforms.processing.parquet``; a ref's ``line`` is the row number in
    the file), uncompressed JSON Lines files above 64 MiB in byte ranges and
    zstd files of several frames in runs of frames
    (``transforms.processing.splits``), every other file whole, one task each.

    ``paths`` is the sorted file list; a ref's ``file`` indexes it.  ``spec``
    says what to compute besides the text key (``ScanSpec``); ``bounds`` the
    batch and text-block bounds.  Bad lines are dead letters, as in ReadJsonl.
    """

    def __init__(self, patterns, id_field: str = "id", text_field: str = "text",
                 spec: ScanSpec = ScanSpec(), bounds: Bounds = Bounds(),
                 max_line_bytes: int | None = MAX_LINE_BYTES, keep_empty: bool = False):
        super().__init__(patterns, id_field, text_field, None, max_line_bytes, keep_empty)
        self.spec = spec
        self.bounds = bounds
        # large uncompressed JSON Lines files (byte ranges) and zstd files of several
        # frames (runs of frames, compressed offsets): {file index: [(start, end), ...]}
        self.splits = plan_splits(self.paths)

    def expand(self, pbegin):
        tags = ("refs", DEAD_LETTER_TAG, DIGESTS_TAG, ODD_RANGE_TAG, FILTERED_TAG,
                FILTERED_COUNT_TAG)
        options = dict(max_line_bytes=self.max_line_bytes, keep_empty=self.keep_empty)
        outputs = []
        splits = self.splits
        jsonl = [(i, p) for i, p in enumerate(self.paths)
                 if not is_parquet(p) and i not in splits]
        if jsonl or not self.paths:
            outputs.append(
                pbegin
                | "ListFiles" >> beam.Create(jsonl)
                | "ScanFiles" >> beam.ParDo(
                    _ScanFile(self.id_field, self.text_field, self.spec, self.bounds,
                              **options))
                .with_output_types(List[DocRef])
                .with_outputs(*tags[1:], main="refs"))
        units = scan_units(self.paths)
        ranges = []   # the units of split files and of Parquet files (ScannedRange)
        if units:  # Parquet: units of row groups (transforms.processing.parquet)
            from transforms.processing.unit_scan import UNIT_DIGESTS_TAG, ScanParquetUnit
            scanned = (
                pbegin
                | "ListParquetUnits" >> beam.Create(units)
                | "ScanParquet" >> beam.ParDo(
                    ScanParquetUnit(self.id_field, self.text_field, self.spec, self.bounds,
                                    **options))
                .with_output_types(List[DocRef])
                .with_outputs(*tags[1:], UNIT_DIGESTS_TAG, main="refs"))
            outputs.append(scanned)
            ranges.append(scanned[UNIT_DIGESTS_TAG])
        if splits:  # large JSON Lines files: byte ranges or runs of zstd frames (splits)
            from transforms.processing.unit_scan import (
                UNIT_DIGESTS_TAG, ScanJsonlRange, count_unit_lines)
            from transforms.processing.splits import combine_digests
            units = pbegin | "ListRanges" >> beam.Create([
                (i, self.paths[i], start, end, parts[-1][1])
                for i, parts in sorted(splits.items()) for start, end in parts])
            counts = units | "CountLines" >> beam.Map(count_unit_lines)
            scanned = units | "ScanRanges" >> beam.ParDo(
                ScanJsonlRange(self.id_field, self.text_field, self.spec, self.bounds,
                               **options), beam.pvalue.AsDict(counts)
            ).with_output_types(List[DocRef]).with_outputs(
                *tags[1:], UNIT_DIGESTS_TAG, main="refs")
            ranges.append(scanned[UNIT_DIGESTS_TAG])
            digests = (
                scanned[UNIT_DIGESTS_TAG]
                | "RangesByFile" >> beam.Map(lambda r: (r.file, (r.start, r.digest)))
                | "GroupRangesByFile" >> beam.GroupByKey()
                | "FileDigests" >> beam.MapTuple(lambda index, parts: Digest(
                    index, combine_digests([h for _, h in sorted(parts)]))))
            outputs.append({"refs": scanned.refs, DEAD_LETTER_TAG: scanned[DEAD_LETTER_TAG],
                            DIGESTS_TAG: digests, ODD_RANGE_TAG: scanned[ODD_RANGE_TAG],
                            FILTERED_TAG: scanned[FILTERED_TAG],
                            FILTERED_COUNT_TAG: scanned[FILTERED_COUNT_TAG]})
        if not ranges:
            ranges = pbegin | "NoRanges" >> beam.Create([]).with_output_types(ScannedRange)
        elif len(ranges) == 1:
            ranges = ranges[0]
        else:
            ranges = tuple(ranges) | "AllRanges" >> beam.Flatten()
        if len(outputs) == 1:
            return {**{tag: outputs[0][tag] for tag in tags}, RANGES_TAG: ranges}
        return {**{tag: [out[tag] for out in outputs] | f"All_{tag}" >> beam.Flatten()
                   for tag in tags}, RANGES_TAG: ranges}


# ---------------------------------------------------------------- pass 2: materialise

MARKERS = -1  # the "file" that carries AssignBalancedShards' every-shard markers


class _RangeOfLine:
    """Which unit of a file (a range of a split JSON Lines file, row groups of a
    Parquet file) holds a line: ``{file: (first lines, starts)}`` from the
    ``ScannedRange``s (units holding no line left out)."""

    def __init__(self, ranges):
        by_file: dict = {}
        for r in sorted(ranges, key=lambda r: (r.file, r.start)):
            if r.lines:
                firsts, starts = by_file.setdefault(r.file, ([], []))
                firsts.append(r.first_line)
                starts.append(r.start)
        self.by_file = by_file

    def start(self, file: int, line: int) -> int:
        """Start (byte offset, or first row group) of the unit holding ``line`` of
        ``file`` (0: a JSON Lines file not split)."""
        found = self.by_file.get(file)
        if found is None:
            return 0
        firsts, starts = found
        return starts[bisect.bisect_right(firsts, line) - 1]


class _PicksByUnit(beam.DoFn):
    """``(shard, Packed([ShardRecord]) or [ShardRecord])`` -> ``((file index, start),
    Packed([Pick]))`` per unit
    of pass 2: a whole file (start 0), a range of a split file or a unit of
    row groups of a Parquet file, whose start ``ranges`` (a side input of
    ``ScannedRange``) tells (packed: the grouping carries every kept document).

    A marker ``(shard, None)`` goes to ``(MARKERS, 0)`` and comes out of
    ExtractRuns as it came in, so the writer's GroupByKey is fed by one stage,
    not a Flatten.
    """

    def setup(self):
        tune_gc()

    def start_bundle(self):
        self.lookup = None

    def process(self, assigned, ranges):
        shard, records = assigned
        if records is None:
            yield (MARKERS, 0), [shard]
            return
        if self.lookup is None:
            self.lookup = _RangeOfLine(ranges)
        split = self.lookup.by_file   # files read in units; every other file is unit 0
        columns = unpack_columns(records)
        refs = columns.nested("payload") if columns is not None else None
        if refs is not None and refs.cls is DocRef:
            yield from self._by_columns(shard, columns, refs, split)
            return
        units: dict = {}
        for _, order, doc_id, ref in unpack(records):
            file = ref.file
            unit = (file, self.lookup.start(file, ref.line)) if file in split else (file, 0)
            picks = units.get(unit)
            if picks is None:
                picks = units[unit] = []
            picks.append(Pick(ref.line, ref.size, ref.reparse, order, doc_id, shard,
                              ref.redacted, ref.lang, ref.lang_score))
        for unit, picks in units.items():
            yield unit, pack(picks)

    def _by_columns(self, shard, columns, refs, split):
        """``process`` for a batch packed by columns: the picks of each unit built as
        columns (``pack_columns``), no ``ShardRecord``, ``DocRef`` or ``Pick`` made."""
        files, lines = refs["file"], refs["line"]
        if split:
            start = self.lookup.start
            keys = [(f, start(f, n)) if f in split else (f, 0) for f, n in zip(files, lines)]
        else:
            keys = [(f, 0) for f in files]
        units: dict = {}
        for i, unit in enumerate(keys):
            members = units.get(unit)
            if members is None:
                members = units[unit] = []
            members.append(i)
        fields = [lines, refs["size"], refs["reparse"], columns["order"], columns["id"],
                  None, refs["redacted"], refs["lang"], refs["lang_score"]]
        for unit, members in units.items():
            if len(units) == 1:
                picked = [field if field is not None else [shard] * len(members)
                          for field in fields]
            else:
                picked = [[field[i] for i in members] if field is not None
                          else [shard] * len(members) for field in fields]
            yield unit, pack_columns(Pick, picked)


class _ExtractRuns(beam.DoFn):
    """``((file index, start), [Packed([Pick]) or [Pick]])`` -> the unit's kept lines
    as runs per shard.  A unit is a whole JSON Lines file (start 0); for a split
    file the range (bytes, or zstd frames at compressed offsets) starting at ``start`` (``ranges``: ``{(file index,
    start): ScannedRange}``), read with a ``RangeReader`` (a ``FrameRangeReader``
    for zstd frames) from its own first line number and checked against its own
    digest; for a Parquet file the
    unit of row groups starting at group ``start`` (its picks' row groups are
    read; the footer digest is checked).  So a split file is re-read by as many
    tasks as it has units holding a kept line.  Counters: ``files_reread``
    (whole files), ``units_reread`` (ranges of split files and Parquet units).

    Holds the unit's picks (about 100 bytes per kept line of the file or range)
    and at most ``run_bytes`` of lines before writing them out.
    """

    def __init__(self, paths: list[str], id_field: str, text_field: str, spill_dir: str,
                 run_bytes: int, by_order: bool,
                 max_line_bytes: int | None = MAX_LINE_BYTES, filters=None):
        self.filters = filters  # FilterStage: redact() for refs flagged redacted
        self.paths = paths
        self.spill_dir = spill_dir
        self.id_field = id_field
        self.text_field = text_field
        self.run_bytes = run_bytes
        self.by_order = by_order
        self.max_line_bytes = max_line_bytes
        self.rereads = Metrics.counter(NAMESPACE, "files_reread")
        self.unit_rereads = Metrics.counter(NAMESPACE, "units_reread")

    def setup(self):
        tune_gc()

    def process(self, grouped, digests, ranges, _after):
        (index, start), parts = grouped
        if index == MARKERS:
            for part in parts:
                yield part[0], None
            return
        path = self.paths[index]
        picks = sorted(pick for part in parts for pick in unpack(part))
        wanted = [p.line for p in picks]
        picks = iter(picks)
        pick = next(picks, None)
        parquet = is_parquet(path)
        scanned = None if parquet else ranges.get((index, start))
        if scanned is not None:   # a range of a split file (bytes or zstd frames)
            opened, first_line, prefix = (
                open_range(path, scanned.start, scanned.end, scanned.inside_line),
                scanned.first_line, f"file{index:05d}-at{start}")
            digest, expected = None, scanned.digest
        else:   # a whole JSON Lines file, or a Parquet file's unit (its picks' row groups)
            opened = _NullContext() if parquet else open_text_stream(path)
            first_line, prefix = 1, f"file{index:05d}-at{start}" if parquet else f"file{index:05d}"
            digest = _KnownDigest() if parquet else xxhash.xxh3_64()
            expected = digests[index]
        buffers: dict = {}
        buffered = flushes = 0
        with opened as stream:
            source = (self._parquet_lines(path, sorted({p.line for part in parts for p in unpack(part)}),
                                          digest) if parquet
                      else lines_at(stream, wanted, digest,  # to the end: digest
                                    self.max_line_bytes, first_line))
            for line_no, raw in source:
                if pick is None or line_no != pick.line:
                    continue
                line = raw if parquet else self._line(path, line_no, raw, pick.reparse)
                if pick.redacted or pick.lang:
                    line = self._edited(path, line_no, line, pick)
                if len(line) + 1 != pick.size:
                    raise InputChanged(f"{path}: line {line_no} changed since the first read")
                buffers.setdefault(pick.shard, []).append((pick.order, pick.id, line))
                buffered += pick.size
                if buffered >= self.run_bytes:
                    yield from self._flush(buffers, prefix, flushes)
                    buffers, buffered, flushes = {}, 0, flushes + 1
                pick = next(picks, None)
                if pick is not None and pick.line == line_no:
                    raise InputChanged(f"{path}: line {line_no} picked twice")
        got = (stream.digest if scanned is not None else digest).hexdigest()
        if pick is not None or got != expected:
            raise InputChanged(f"{path} changed while the job was reading it; rerun on "
                               "stable input")
        (self.rereads if scanned is None and not parquet else self.unit_rereads).inc()
        yield from self._flush(buffers, prefix, flushes)

    def _parquet_lines(self, path, lines, digest):
        """Pass 2 of a Parquet file: its picked rows as JSON lines; the footer digest."""
        try:
            for line_no, line in picked_lines(path, lines, self.id_field, self.text_field,
                                              self.max_line_bytes):
                if line_no == "digest":
                    digest.value = line
                    continue
                yield line_no, line
        except BadRecord as err:
            raise InputChanged(f"{path}: a picked row changed since the first read "
                               f"({err})") from None

    def _flush(self, buffers, prefix, flushes):
        return _write_runs(buffers, self.spill_dir, f"{prefix}-run{flushes}", self.by_order)

    def _edited(self, path, line_no, line, pick) -> bytes:
        """The filter stage's edits again (``stored_line``): redaction, language."""
        try:
            text = orjson.loads(line)[self.text_field]
            kept = self.filters.redact(text) if pick.redacted else text
            return stored_line(line, self.text_field, text, kept,
                               pick.lang or None, pick.lang_score)[0]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise InputChanged(f"{path}: line {line_no} changed since the first read "
                               f"({err})") from None

    def _line(self, path, line_no, raw, reparse) -> bytes:
        if not isinstance(raw, bytes):   # a LongLine: past max_line_bytes now
            raise InputChanged(f"{path}: line {line_no} changed since the first read "
                               f"(now {raw.size} bytes, over the bound of "
                               f"{self.max_line_bytes})")
        if not reparse:
            return raw.strip()
        try:
            return parse_line(raw, self.id_field, self.text_field, f"{path}:{line_no}")[2]
        except BadRecord as err:
            raise InputChanged(f"{path}: line {line_no} changed since the first read "
                               f"({err})") from None


class _KnownDigest:
    """A digest pass 2 of a Parquet file is told (its footer digest), not fed."""
    value = None

    def hexdigest(self):
        return self.value


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class ResolveRuns(beam.PTransform):
    """Shard-assigned records -> ``(shard, Run)``, one re-read per file, or per byte
    range of a split file.

    Input: ``(shard, Packed([ShardRecord]))`` (or plain lists) and ``(shard, None)`` markers
    (passed through) from ``AssignBalancedShards``, each record's payload a
    ``DocRef``; ``scan`` is the ``ScanJsonl`` that made the refs, ``scanned``
    its output dict (``digests`` and ``ranges`` are used); runs are written
    under ``spill_dir`` (give each job its own, on storage every worker sees).
    ``by_order``: runs sort by the records' order key first (range-partitioned
    stores), else by id.  Runs are written only after ``after`` (a
    PCollection, optional) is complete: e.g. once near-dedup's spills are
    deleted, so the two never take disk together.  A file or range holding no
    kept line is not re-read (nor its digest checked again).
    """

    def __init__(self, scan: ScanJsonl, scanned: dict, spill_dir: str,
                 run_bytes: int = RUN_BYTES, by_order: bool = False, after=None):
        super().__init__()
        self.spill_dir = spill_dir
        self.paths = scan.paths
        self.id_field = scan.id_field
        self.text_field = scan.text_field
        self.max_line_bytes = scan.max_line_bytes
        self.filters = scan.spec.filters
        self.digests = scanned[DIGESTS_TAG]
        self.ranges = scanned[RANGES_TAG]
        self.run_bytes = run_bytes
        self.by_order = by_order
        self.after = after

    def expand(self, assigned):
        digests = self.digests | "DigestPairs" >> beam.Map(tuple)
        ranges = self.ranges | "RangesByStart" >> beam.Map(lambda r: ((r.file, r.start), r))
        after = self.after
        if after is None:
            after = assigned.pipeline | "NothingBefore" >> beam.Create([])
        return (
            assigned
            | "PicksByUnit" >> beam.ParDo(_PicksByUnit(), beam.pvalue.AsList(self.ranges))
            | "GroupByUnit" >> beam.GroupByKey()
            | "ExtractRuns" >> beam.ParDo(
                _ExtractRuns(self.paths, self.id_field, self.text_field, self.spill_dir,
                             self.run_bytes, self.by_order, self.max_line_bytes,
                             self.filters),
                beam.pvalue.AsDict(digests), beam.pvalue.AsDict(ranges),
                beam.pvalue.AsList(after)))
