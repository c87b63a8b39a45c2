"""Documents by reference: every prepare_corpus configuration moves small refs,
and each kept line is read once, into its shard.

Shipping whole documents through every shuffle is what makes a Beam job slow
and its memory grow with the corpus: each stage boundary encodes, copies and
decodes all the text, and the in-process runners keep every shuffled element
in the driver.  Here a document travels as a ``DocRef`` until its shard is
known:

1. ``ScanJsonl`` (pass 1) reads every file once and computes, per document,
   everything later steps need from the text: the text key (exact dedup),
   the MinHash signature (near-dedup), the partition value, the range key and
   the shard bytes.  Output: batches of ``DocRef``, each batch at most
   ``batch_bytes`` (see ``Bounds``).  The signature and its LSH band keys are
   the bulk of near-dedup's data (about 1 KB a document), so they do not ride
   on the ref: the scan writes them into bucketed ``Spill`` files (band
   entries by band-key bucket, signatures by id bucket), which the LSH step
   and the signature look-up of verification read one bucket at a time.
2. Dedup, LSH, connected components, partitioning and the shard plan work on
   refs alone.
3. ``ResolveRuns`` (pass 2) groups the kept refs by file, re-reads each file
   once, picks its kept lines and writes the file's lines for each shard as a
   *run*: a zstd-1 compressed temporary file of lines sorted by their key in
   the shard, in a spill folder beside the shards.  The runner carries only
   ``(shard, Run)``; the shard writer merges its runs.  The spill folder goes
   once the manifest is written (``delete_spill``).

The xxh3-64 digest of every file's decompressed bytes is taken in both passes;
a file that changed in between fails the run instead of filling shards with
the wrong lines.
"""
import os
from dataclasses import dataclass
from typing import Iterable, List, NamedTuple, Optional, Tuple

import apache_beam as beam
import orjson
import xxhash
import zstandard
from apache_beam import coders
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.hashing import text_keys
from transforms.ids import id_order_key
from transforms.io import (DEAD_LETTER_TAG, MAX_LINE_BYTES, BadRecord, JsonlFileDoFn,
                           ReadJsonl, join, numbered_lines, open_text_stream, parse_line,
                           read_bytes)

NAMESPACE = "dataprep.read"
ODD_RANGE_TAG = "odd_range_values"
DIGESTS_TAG = "digests"
RUN_BYTES = 64 << 20  # a file's buffered kept lines are flushed as runs beyond this
RUN_ZSTD_LEVEL = 1    # spill runs: fast, ~3-4x on JSON text
NO_VALUE = b""        # a DocRef field the job does not use


class InputChanged(RuntimeError):
    """An input file differs between the two passes over it."""


# ---------------------------------------------------------------- records and bounds

class DocRef(NamedTuple):
    """One document by reference: what every step after the scan needs.

    ``id``: record id; ``key``: 16-byte xxh3-128 of the normalised text
    (``transforms.hashing.text_key``); ``file``: index into the scan's sorted
    file list; ``line``: line number from 1; ``size``: bytes the record takes
    in a JSON Lines shard (stored line + newline); ``reparse``: the stored line
    was rewritten with an assigned id (pass 2 parses it again; every other
    line is copied as read); ``signed``: the scan wrote a MinHash signature
    and band keys for it (near-dedup on and the text has shingles); ``partition_value``: canonical JSON of the ``--partition_by``
    field (``b"null"`` when absent; ``b""`` when not partitioning);
    ``range_key``: JSON of the ``--range_by`` key (``b"null"`` when missing;
    ``b""`` when unused).
    """
    id: str
    key: bytes
    file: int
    line: int
    size: int
    reparse: bool
    signed: bool
    partition_value: bytes
    range_key: bytes


class Digest(NamedTuple):
    """xxh3-64 (hex) of one input file's decompressed bytes."""
    file: int
    digest: str


class Pick(NamedTuple):
    """A kept line to copy from its file into a shard's run."""
    line: int
    size: int
    reparse: bool
    order: tuple      # the record's order key in its partition (sharding.ShardRecord.order)
    id: str
    shard: Tuple[str, int, int]  # (partition, shard index, shard count)


class Run(NamedTuple):
    """Lines of one shard taken from one file, sorted by ``(id, line)`` or, for
    range-ordered stores, ``(order, id, line)``; ``path`` holds them zstd-compressed,
    newline-separated; ``raw_bytes`` is their decompressed size."""
    orders: list
    ids: list
    path: str
    raw_bytes: int


for _record in (DocRef, Digest):
    coders.registry.register_coder(_record, coders.RowCoder)


def ref_bytes(ref: DocRef) -> int:
    """Approximate encoded bytes of a ref (for the batch bound)."""
    return 48 + len(ref.id) + len(ref.partition_value) + len(ref.range_key)


def chunked(records: Iterable, max_bytes: int, size_of=ref_bytes) -> "iter[list]":
    """Lists of consecutive records, each at most ``max_bytes`` by ``size_of``
    (a record larger than the bound travels alone).  Never yields an empty list."""
    batch, total = [], 0
    for record in records:
        size = size_of(record)
        if batch and total + size > max_bytes:
            yield batch
            batch, total = [], 0
        batch.append(record)
        total += size
    if batch:
        yield batch


@dataclass(frozen=True)
class Bounds:
    """Size bounds that keep every element and grouped value independent of the corpus.

    ``batch_bytes``: at most this many bytes of refs per element (a batch),
    give or take one record (default 1 MiB).  ``text_bytes``: text the scan
    signs at once (worker memory; default 8 MiB).  ``bucket_bytes``: raw
    input bytes per grouping bucket (exact dedup, id check, LSH, joins): the
    bucket count is ``ceil(input bytes / bucket_bytes)`` within 16..65536, so
    what one bucket holds (its distinct texts, band keys, ids) stays about
    constant as the corpus grows (default 64 MiB of input).
    """
    batch_bytes: int = 1 << 20
    text_bytes: int = 8 << 20
    bucket_bytes: int = 64 << 20

    def __post_init__(self):
        for name in ("batch_bytes", "text_bytes", "bucket_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def buckets(self, raw_bytes: int) -> int:
        """Grouping buckets for an input of about ``raw_bytes``: 16..65536."""
        return max(16, min(65536, -(-raw_bytes // self.bucket_bytes)))


# ---------------------------------------------------------------- spills

class Spill:
    """Bucketed records on storage, for data too bulky for the runner's shuffle.

    Writers (one per input file) append byte records to buckets and flush
    them, every bucket at once, as one *part* file
    ``<dir>/<name>-f<file>-p<part>.bin``: an index (uint32 entry count, then
    per bucket uint32 bucket, uint64 offset, uint64 length, little-endian)
    followed by each bucket's records (uint32 length + bytes), buckets in
    order.  So the file count is the flush count, whatever the bucket count.
    Names depend only on the input file and the flush count: a retried bundle
    overwrites its own files.  A reader takes one bucket: from every part
    file, only that bucket's byte range; run readers after every writer
    finished (give them the writers' output as a side input).
    """

    HEADER = 4
    ENTRY = 20

    def __init__(self, spill_dir: str, name: str):
        self.spill_dir = spill_dir
        self.name = name
        self._indexes = None  # part path -> {bucket: (offset, length)}, once complete

    def path(self, file_index: int, part: int) -> str:
        return join(self.spill_dir, f"{self.name}-f{file_index:05d}-p{part:05d}.bin")

    def part_paths(self) -> list[str]:
        pattern = join(self.spill_dir, f"{self.name}-f*-p*.bin")
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)

    def _index(self) -> dict:
        if self._indexes is None:
            indexes = {}
            for path in self.part_paths():
                with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                    count = int.from_bytes(f.read(self.HEADER), "little")
                    raw = f.read(count * self.ENTRY)
                entries = {}
                for i in range(count):
                    entry = raw[i * self.ENTRY:(i + 1) * self.ENTRY]
                    entries[int.from_bytes(entry[:4], "little")] = (
                        int.from_bytes(entry[4:12], "little"),
                        int.from_bytes(entry[12:20], "little"))
                indexes[path] = entries
            self._indexes = indexes
        return self._indexes

    def read(self, bucket: int) -> "iter[bytes]":
        """The records of one bucket, part file by part file."""
        for path, entries in sorted(self._index().items()):
            if bucket not in entries:
                continue
            offset, length = entries[bucket]
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                f.seek(offset)
                data = memoryview(f.read(length))
            pos = 0
            while pos < len(data):
                size = int.from_bytes(data[pos:pos + 4], "little")
                yield bytes(data[pos + 4:pos + 4 + size])
                pos += 4 + size

    def delete(self) -> int:
        paths = self.part_paths()
        if paths:
            FileSystems.delete(paths)
        self._indexes = None
        return len(paths)

    def __getstate__(self):
        return {"spill_dir": self.spill_dir, "name": self.name, "_indexes": None}


class SpillWriter:
    """Appends records to a ``Spill``'s buckets for one input file; writes a part
    file beyond ``flush_bytes`` buffered, and on ``close()``."""

    def __init__(self, spill: Spill, file_index: int, flush_bytes: int):
        self.spill = spill
        self.file_index = file_index
        self.flush_bytes = flush_bytes
        self.buffers: dict[int, list] = {}
        self.buffered = 0
        self.parts = 0

    def add(self, bucket: int, record: bytes) -> None:
        self.buffers.setdefault(bucket, []).append(
            len(record).to_bytes(4, "little") + record)
        self.buffered += len(record) + 4
        if self.buffered >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.buffers:
            return
        buckets = sorted(self.buffers)
        bodies = [b"".join(self.buffers[b]) for b in buckets]
        offset = Spill.HEADER + Spill.ENTRY * len(buckets)
        index = [len(buckets).to_bytes(4, "little")]
        for bucket, body in zip(buckets, bodies):
            index.append(bucket.to_bytes(4, "little") + offset.to_bytes(8, "little")
                         + len(body).to_bytes(8, "little"))
            offset += len(body)
        path = self.spill.path(self.file_index, self.parts)
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
            out.write(b"".join(index + bodies))
        self.parts += 1
        self.buffers, self.buffered = {}, 0

    close = flush


# ---------------------------------------------------------------- pass 1: scan

@dataclass(frozen=True)
class ScanSpec:
    """What the scan computes besides the text key.

    ``signer``: a ``transforms.near_dedup.Signer`` (None: no signatures),
    which writes each signed document's band entries and signature into its
    spills (``signer.spills(spill_dir)``); ``partition_by``: field name whose
    value goes into ``partition_value``; ``range_by``: ``"length"``
    (characters of the text) or a numeric field.
    """
    signer: object = None
    partition_by: Optional[str] = None
    range_by: Optional[str] = None
    spill_dir: Optional[str] = None


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
    return orjson.dumps(value)


class _ScanFile(JsonlFileDoFn):
    """``(file index, path)`` -> batches of ``DocRef``; dead letters; the file's
    ``Digest`` to ``digests``."""

    def __init__(self, id_field: str, text_field: str, spec: ScanSpec, bounds: Bounds,
                 **read_options):
        super().__init__(id_field, text_field, **read_options)
        self.spec = spec
        self.bounds = bounds
        self.batch_bytes = Metrics.distribution(NAMESPACE, "ref_batch_bytes")

    def setup(self):
        from transforms.partition import json_field  # partition imports nothing of ours back
        self.signer = self.spec.signer
        if self.signer is not None:
            self.signer.setup()
            self.signer_spills = self.signer.spills(self.spec.spill_dir)
        self.partition_of = json_field(self.spec.partition_by) if self.spec.partition_by else None
        self.range_field = (json_field(self.spec.range_by)
                            if self.spec.range_by not in (None, "length") else None)

    def process(self, indexed_path):
        index, path = indexed_path
        digest = xxhash.xxh3_64()
        block, text_bytes = [], 0
        self.writers = None
        if self.signer is not None:
            self.writers = [SpillWriter(spill, index, RUN_BYTES // 2)
                            for spill in self.signer_spills]
        for line_no, doc in self.documents(path, digest):
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
        yield beam.pvalue.TaggedOutput(DIGESTS_TAG, Digest(index, digest.hexdigest()))

    def _refs(self, index, path, block):
        texts = [text for _, (_, text, _) in block]
        keys = text_keys(texts)
        signed = [False] * len(texts)
        if self.signer is not None:
            signed = self.signer.spill([doc_id for _, (doc_id, _, _) in block], keys, texts,
                                       self.writers)
        refs = []
        for (line_no, (doc_id, text, line)), key, signature in zip(block, keys, signed):
            value = NO_VALUE
            if self.partition_of is not None:
                value = orjson.dumps(self.partition_of(("", line)),
                                     option=orjson.OPT_SORT_KEYS)
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
                               doc_id == f"{path}:{line_no}", signature, value, range_key))
        for batch in chunked(refs, self.bounds.batch_bytes):
            self.batch_bytes.update(sum(map(ref_bytes, batch)))
            yield batch


class ScanJsonl(ReadJsonl):
    """JSON Lines files -> dict of ``refs`` (batches of ``DocRef``; band entries
    and signatures into ``spec.spill_dir`` with near-dedup),
    ``dead_letters`` (dicts, ``transforms.io.dead_letter``), ``digests``
    (``Digest``) and ``odd_range_values`` (``repr`` strings of ``--range_by``
    field values that are present but not numbers; such documents get range key
    ``null``, and ``transforms.partition.NumericFieldGate`` fails the run on them).

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

    def expand(self, pbegin):
        scanned = (
            pbegin
            | "ListFiles" >> beam.Create(list(enumerate(self.paths)))
            | "ScanFiles" >> beam.ParDo(
                _ScanFile(self.id_field, self.text_field, self.spec, self.bounds,
                          max_line_bytes=self.max_line_bytes, keep_empty=self.keep_empty))
            .with_output_types(List[DocRef])
            .with_outputs(DEAD_LETTER_TAG, DIGESTS_TAG, ODD_RANGE_TAG, main="refs"))
        return {"refs": scanned.refs, "dead_letters": scanned[DEAD_LETTER_TAG],
                "digests": scanned[DIGESTS_TAG],
                "odd_range_values": scanned[ODD_RANGE_TAG]}


# ---------------------------------------------------------------- pass 2: materialise

MARKERS = -1  # the "file" that carries AssignBalancedShards' every-shard markers


def _picks_by_file(assigned):
    """``(shard, [ShardRecord])`` -> ``(file index, [Pick])`` per file.

    A marker ``(shard, None)`` goes to MARKERS and comes out of ExtractRuns as
    it came in, so the writer's GroupByKey is fed by one stage, not a Flatten.
    """
    shard, records = assigned
    if records is None:
        return [(MARKERS, [shard])]
    files: dict = {}
    for _, order, doc_id, ref in records:
        files.setdefault(ref.file, []).append(
            Pick(ref.line, ref.size, ref.reparse, order, doc_id, shard))
    return files.items()


def run_order(doc: tuple, by_order: bool) -> tuple:
    """Sort key of a run's ``(order, id, line)``: the order inside a shard.

    Range-ordered runs (``by_order``) follow the range key, then the id;
    the others the id alone; ids compare in the id order (``transforms.ids``:
    integers numerically, then strings), the line breaks no tie a store has.
    """
    order, doc_id, line = doc
    if by_order:
        return order, id_order_key(doc_id), line
    return id_order_key(doc_id), line


def shard_doc_order(doc: tuple) -> tuple:
    """Sort key of ``run_docs``' ``(id, line)`` or ``(order, id, line)``."""
    if len(doc) == 3:
        return run_order(doc, True)
    return id_order_key(doc[0]), doc[1]


def _write_runs(buffers: dict, spill_dir: str, prefix: str, by_order: bool):
    """``{shard: [(order, id, line)]}`` -> a compressed run file per shard ->
    ``(shard, Run)``.  Names are fixed by ``prefix`` and the shard, so a retried
    bundle overwrites its own runs."""
    compressor = zstandard.ZstdCompressor(level=RUN_ZSTD_LEVEL, write_content_size=True)
    for shard, docs in buffers.items():
        docs.sort(key=lambda d: run_order(d, by_order))  # the store's order
        raw = b"\n".join(line for _, _, line in docs)
        path = join(spill_dir, f"{prefix}-{shard[0]}-shard{shard[1]:05d}.jsonl.zst")
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
            out.write(compressor.compress(raw))
        yield shard, Run([order for order, _, _ in docs] if by_order else [],
                         [doc_id for _, doc_id, _ in docs], path, len(raw))


def run_docs(run: Run) -> "iter[tuple]":
    """The documents of a run: ``(id, line)``, or ``(order, id, line)`` when the
    run is range-ordered (has orders)."""
    raw = zstandard.ZstdDecompressor().decompress(read_bytes(run.path),
                                                  max_output_size=max(1, run.raw_bytes))
    lines = raw.split(b"\n")
    if len(raw) != run.raw_bytes or len(lines) != len(run.ids):
        raise InputChanged(f"run {run.path} holds {len(lines)} lines ({len(raw)} bytes), "
                           f"expected {len(run.ids)} ({run.raw_bytes} bytes)")
    if run.orders:
        return zip(run.orders, run.ids, lines)
    return zip(run.ids, lines)


def delete_spill(spill_dir: str) -> None:
    """Remove a spill folder and its runs (once the store's manifest is written)."""
    runs = [m.path for r in FileSystems.match([join(spill_dir, "*")]) for m in r.metadata_list]
    if runs:
        FileSystems.delete(runs)
    if "://" not in spill_dir and os.path.isdir(spill_dir):
        os.rmdir(spill_dir)


class _ExtractRuns(beam.DoFn):
    """``(file index, [[Pick]])`` -> the file's kept lines as runs per shard.

    Holds the file's picks (about 100 bytes per kept line of that file) and at
    most ``run_bytes`` of lines before writing them out.
    """

    def __init__(self, paths: list[str], id_field: str, text_field: str, spill_dir: str,
                 run_bytes: int, by_order: bool,
                 max_line_bytes: int | None = MAX_LINE_BYTES):
        self.paths = paths
        self.spill_dir = spill_dir
        self.id_field = id_field
        self.text_field = text_field
        self.run_bytes = run_bytes
        self.by_order = by_order
        self.max_line_bytes = max_line_bytes
        self.rereads = Metrics.counter(NAMESPACE, "files_reread")

    def process(self, grouped, digests, _after):
        index, parts = grouped
        if index == MARKERS:
            for part in parts:
                yield part[0], None
            return
        path = self.paths[index]
        picks = iter(sorted(pick for part in parts for pick in part))
        pick = next(picks, None)
        digest = xxhash.xxh3_64()
        buffers: dict = {}
        buffered = flushes = 0
        with open_text_stream(path) as stream:
            for line_no, raw in numbered_lines(stream, digest,  # to the end: digest
                                               self.max_line_bytes):
                if pick is None or line_no != pick.line:
                    continue
                line = self._line(path, line_no, raw, pick.reparse)
                if len(line) + 1 != pick.size:
                    raise InputChanged(f"{path}: line {line_no} changed since the first read")
                buffers.setdefault(pick.shard, []).append((pick.order, pick.id, line))
                buffered += pick.size
                if buffered >= self.run_bytes:
                    yield from self._flush(buffers, index, flushes)
                    buffers, buffered, flushes = {}, 0, flushes + 1
                pick = next(picks, None)
                if pick is not None and pick.line == line_no:
                    raise InputChanged(f"{path}: line {line_no} picked twice")
        if pick is not None or digest.hexdigest() != digests[index]:
            raise InputChanged(f"{path} changed while the job was reading it; rerun on "
                               "stable input")
        self.rereads.inc()
        yield from self._flush(buffers, index, flushes)

    def _flush(self, buffers, index, flushes):
        return _write_runs(buffers, self.spill_dir, f"file{index:05d}-run{flushes}",
                           self.by_order)

    def _line(self, path, line_no, raw, reparse) -> bytes:
        if not reparse:
            return raw.strip()
        try:
            return parse_line(raw, self.id_field, self.text_field, f"{path}:{line_no}")[2]
        except BadRecord as err:
            raise InputChanged(f"{path}: line {line_no} changed since the first read "
                               f"({err})") from None


class ResolveRuns(beam.PTransform):
    """Shard-assigned records -> ``(shard, Run)``, one re-read per file.

    Input: ``(shard, [ShardRecord])`` lists and ``(shard, None)`` markers
    (passed through) from ``AssignBalancedShards``, each record's payload a
    ``DocRef``; ``scan`` is the ``ScanJsonl`` that made the refs, ``digests``
    its digest output; runs are written under ``spill_dir`` (give each job its
    own, on storage every worker sees).  ``by_order``: runs sort by the
    records' order key first (range-partitioned stores), else by id.  Runs are
    written only after ``after`` (a PCollection, optional) is complete: e.g.
    once near-dedup's spills are deleted, so the two never take disk together.
    """

    def __init__(self, scan: ScanJsonl, digests, spill_dir: str, run_bytes: int = RUN_BYTES,
                 by_order: bool = False, after=None):
        super().__init__()
        self.spill_dir = spill_dir
        self.paths = scan.paths
        self.id_field = scan.id_field
        self.text_field = scan.text_field
        self.max_line_bytes = scan.max_line_bytes
        self.digests = digests
        self.run_bytes = run_bytes
        self.by_order = by_order
        self.after = after

    def expand(self, assigned):
        digests = self.digests | "DigestPairs" >> beam.Map(tuple)
        after = self.after
        if after is None:
            after = assigned.pipeline | "NothingBefore" >> beam.Create([])
        return (
            assigned
            | "PicksByFile" >> beam.FlatMap(_picks_by_file)
            | "GroupByFile" >> beam.GroupByKey()
            | "ExtractRuns" >> beam.ParDo(
                _ExtractRuns(self.paths, self.id_field, self.text_field, self.spill_dir,
                             self.run_bytes, self.by_order, self.max_line_bytes),
                beam.pvalue.AsDict(digests), beam.pvalue.AsList(after)))
