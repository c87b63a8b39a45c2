"""Documents by reference: dedup and shard small refs, move each kept document once.

Shipping whole documents through every shuffle is what makes a Beam dedup job
slow: each stage boundary encodes, copies and decodes all the text.  Here a
document travels as a *ref* until its shard is known:

1. ``ScanJsonl`` (pass 1) reads every file once and emits, per document,
   ``(text key, id, ref)`` with ``ref = (file index, line number, shard bytes,
   reparse)``; ``reparse`` marks a record whose line was rewritten with an
   assigned id (pass 2 rebuilds it; every other line is copied as read).
   Dedup and shard assignment then work on refs alone.
2. ``ResolveRuns`` (pass 2) groups the kept refs by file, re-reads each file
   once, picks its kept lines and writes the file's lines for each shard as a
   *run*: a temporary file of lines sorted by id, in a spill folder beside the
   shards.  The runner carries only ``(shard, (ids, run path))``; the shard
   writer merges its runs.  So no document byte crosses a shuffle, and the
   runner never holds the corpus in memory (the in-process runners keep every
   shuffled element in the driver).  The spill folder goes once the manifest
   is written (``delete_spill``).

The xxh3-64 digest of every file's decompressed bytes is taken in both passes;
a file that changed in between fails the run instead of filling shards with
the wrong lines.
"""
import os

import apache_beam as beam
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.hashing import text_keys
from transforms.ids import id_order_key
from transforms.io import (DEAD_LETTER_TAG, MAX_LINE_BYTES, BadRecord, JsonlFileDoFn,
                           ReadJsonl, join, numbered_lines, open_text_stream, parse_line,
                           read_bytes)

NAMESPACE = "dataprep.read"
DIGESTS_TAG = "digests"
RUN_BYTES = 64 << 20  # a file's buffered kept lines are flushed as runs beyond this


class InputChanged(RuntimeError):
    """An input file differs between the two passes over it."""


def ref_size(record) -> int:
    """Shard bytes of a ``(partition, order, id, ref)`` record (for AssignBalancedShards)."""
    return record[3][2]


class _ScanFile(JsonlFileDoFn):
    """``(file index, path)`` -> batches of ``(text key, id, ref)``; dead letters;
    the file's digest to ``digests``."""

    def __init__(self, id_field: str, text_field: str, batch_size: int, **read_options):
        super().__init__(id_field, text_field, **read_options)
        self.batch_size = batch_size

    def process(self, indexed_path):
        index, path = indexed_path
        digest = xxhash.xxh3_64()
        batch = []
        for line_no, doc in self.documents(path, digest):
            if line_no is None:
                yield doc  # a dead letter
                continue
            doc_id, text, line = doc
            # A record given its default id has a rewritten line: pass 2 parses it
            # again.  (An id that merely equals the default costs a parse, no harm.)
            reparse = doc_id == f"{path}:{line_no}"
            batch.append((doc_id, text, (index, line_no, len(line) + 1, reparse)))
            if len(batch) >= self.batch_size:
                yield _keyed(batch)
                batch = []
        if batch:
            yield _keyed(batch)
        yield beam.pvalue.TaggedOutput(DIGESTS_TAG, (index, digest.hexdigest()))


def _keyed(batch):
    """``[(id, text, ref)]`` -> ``[(text key, id, ref)]``."""
    keys = text_keys([text for _, text, _ in batch])
    return [(key, doc_id, ref) for key, (doc_id, _, ref) in zip(keys, batch)]


class ScanJsonl(ReadJsonl):
    """JSON Lines files -> dict of ``refs`` (batches of ``(text key, id, ref)``),
    ``dead_letters`` and ``digests`` (``(file index, xxh3-64 hex)``).

    ``paths`` is the sorted file list; a ref's file index points into it.
    """

    def __init__(self, patterns, id_field: str = "id", text_field: str = "text",
                 batch_size: int = 4096, max_line_bytes: int | None = MAX_LINE_BYTES,
                 keep_empty: bool = False):
        super().__init__(patterns, id_field, text_field, batch_size, max_line_bytes,
                         keep_empty)

    def expand(self, pbegin):
        scanned = (
            pbegin
            | "ListFiles" >> beam.Create(list(enumerate(self.paths)))
            | "ScanFiles" >> beam.ParDo(
                _ScanFile(self.id_field, self.text_field, self.batch_size,
                          max_line_bytes=self.max_line_bytes,
                          keep_empty=self.keep_empty)).with_outputs(
                    DEAD_LETTER_TAG, DIGESTS_TAG, main="refs"))
        return {"refs": scanned.refs, "dead_letters": scanned[DEAD_LETTER_TAG],
                "digests": scanned[DIGESTS_TAG]}


MARKERS = -1  # the "file" that carries AssignBalancedShards' every-shard markers


def _refs_by_file(assigned):
    """``(shard, [("", order, id, ref)])`` -> ``(file index, [(line, size, reparse, id, shard)])``.

    A marker ``(shard, None)`` goes to MARKERS and comes out of ExtractRuns as
    it came in, so the writer's GroupByKey is fed by one stage, not a Flatten.
    """
    shard, records = assigned
    if records is None:
        return [(MARKERS, [shard])]
    files: dict = {}
    for _, _, doc_id, (index, line_no, size, reparse) in records:
        files.setdefault(index, []).append((line_no, size, reparse, doc_id, shard))
    return files.items()


def _write_runs(buffers: dict, spill_dir: str, prefix: str):
    """``{shard: [(id, line)]}`` -> a run file per shard, lines sorted by id ->
    ``(shard, (ids, run path))``.  Names are fixed by ``prefix`` and the shard,
    so a retried bundle overwrites its own runs."""
    for shard, docs in buffers.items():
        docs.sort(key=lambda d: (id_order_key(d[0]), d[1]))  # the store's order
        path = join(spill_dir, f"{prefix}-shard{shard[1]:05d}.jsonl")
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
            out.write(b"\n".join(line for _, line in docs))
        yield shard, ([doc_id for doc_id, _ in docs], path)


def run_docs(run) -> "iter[tuple[str, bytes]]":
    """The ``(id, line)`` documents of a run."""
    ids, path = run
    lines = read_bytes(path).split(b"\n")
    if len(lines) != len(ids):
        raise InputChanged(f"run {path} holds {len(lines)} lines, expected {len(ids)}")
    return zip(ids, lines)


def delete_spill(spill_dir: str) -> None:
    """Remove a spill folder and its runs (once the store's manifest is written)."""
    runs = [m.path for r in FileSystems.match([join(spill_dir, "*")]) for m in r.metadata_list]
    if runs:
        FileSystems.delete(runs)
    if "://" not in spill_dir and os.path.isdir(spill_dir):
        os.rmdir(spill_dir)


class _ExtractRuns(beam.DoFn):
    """``(file index, [picks])`` -> the file's kept lines as runs per shard."""

    def __init__(self, paths: list[str], id_field: str, text_field: str, spill_dir: str,
                 run_bytes: int, max_line_bytes: int | None = MAX_LINE_BYTES):
        self.paths = paths
        self.spill_dir = spill_dir
        self.id_field = id_field
        self.text_field = text_field
        self.run_bytes = run_bytes
        self.max_line_bytes = max_line_bytes
        self.rereads = Metrics.counter(NAMESPACE, "files_reread")

    def process(self, grouped, digests):
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
                if pick is None or line_no != pick[0]:
                    continue
                _, size, reparse, doc_id, shard = pick
                line = self._line(path, line_no, raw, reparse)
                if len(line) + 1 != size:
                    raise InputChanged(f"{path}: line {line_no} changed since the first read")
                buffers.setdefault(shard, []).append((doc_id, line))
                buffered += size
                if buffered >= self.run_bytes:
                    yield from self._flush(buffers, index, flushes)
                    buffers, buffered, flushes = {}, 0, flushes + 1
                pick = next(picks, None)
        if pick is not None or digest.hexdigest() != digests[index]:
            raise InputChanged(f"{path} changed while the job was reading it; rerun on "
                               "stable input")
        self.rereads.inc()
        yield from self._flush(buffers, index, flushes)

    def _flush(self, buffers, index, flushes):
        return _write_runs(buffers, self.spill_dir, f"file{index:05d}-run{flushes}")

    def _line(self, path, line_no, raw, reparse) -> bytes:
        if not reparse:
            return raw.strip()
        try:
            return parse_line(raw, self.id_field, self.text_field, f"{path}:{line_no}")[2]
        except BadRecord as err:
            raise InputChanged(f"{path}: line {line_no} changed since the first read "
                               f"({err})") from None


class ResolveRuns(beam.PTransform):
    """Shard-assigned ref records -> ``(shard, run)``, one re-read per file.

    Input: ``(shard, [("", order, id, ref)])`` lists and ``(shard, None)``
    markers (passed through) from ``AssignBalancedShards``; ``scan`` is the
    ``ScanJsonl`` that made the refs, ``digests`` its digest output; runs are
    written under ``spill_dir`` (give each job its own, on storage every
    worker sees).
    """

    def __init__(self, scan: ScanJsonl, digests, spill_dir: str, run_bytes: int = RUN_BYTES):
        super().__init__()
        self.spill_dir = spill_dir
        self.paths = scan.paths
        self.id_field = scan.id_field
        self.text_field = scan.text_field
        self.max_line_bytes = scan.max_line_bytes
        self.digests = digests
        self.run_bytes = run_bytes

    def expand(self, assigned):
        return (
            assigned
            | "RefsByFile" >> beam.FlatMap(_refs_by_file)
            | "GroupByFile" >> beam.GroupByKey()
            | "ExtractRuns" >> beam.ParDo(
                _ExtractRuns(self.paths, self.id_field, self.text_field, self.spill_dir,
                             self.run_bytes, self.max_line_bytes),
                beam.pvalue.AsDict(self.digests)))
