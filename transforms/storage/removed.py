"""The removed-records audit files (``--write_removed``): format, order, writer.

Every document a run removes (a filter, sampling, exact or near dedup) is one
line of ``<audit dir>/removed-NNNNN-of-MMMMM.jsonl.zst`` (``removed_record``)::

    {"removed": 17, "kept": 3, "reason": "dedup.exact_duplicate", "detail": "kept=3",
     "file": "/data/part-0.jsonl.zst", "line": 12}

* ``removed``, ``kept``: the ids exactly as the input gave them: a JSON integer
  stays an integer of any size, a string stays a string (``"17"`` too); a
  document that had no id has its default ``"<file>:<line>"``.  ``kept`` (the
  document kept in its place) only for dedup's reasons.
* ``reason``: ``"<filter>.<rule>"`` (``dedup.exact_duplicate``,
  ``near_dedup.near_duplicate``, ``sample_per_partition.not_sampled``,
  ``gopher_quality.short_doc``...); ``detail``: free text; ``jaccard`` (after
  ``detail``) only for ``near_dedup.near_duplicate``.
* ``file``, ``line``: where the document was read (the path as the input
  listing gave it, as in the dead letters; the line number from 1, for a
  Parquet file the row number).

Order: the lines are sorted by ``(file, line)`` (files in the order of their
paths, Python string order; each line of input is removed at most once), and
the files, in name order, continue each other: reading ``removed-*`` sorted by
name gives every removed record in that order.  The content and the file names
depend only on the records, never on the runner or its number of workers: the
records are grouped by parts of ``part_lines`` lines of one input file,
consecutive parts are packed into files of at most ``piece_records`` records
(one part alone may reach ``part_lines``), and each file is sorted in memory
and compressed in one call (zstd level 3).  No record: one empty file,
``removed-00000-of-00001.jsonl.zst``.  Each file is written atomically
(``commit.write_atomically``).
"""
import apache_beam as beam
import zstandard

from transforms.core import exact_json
from transforms.core.records import Removal, typed_id
from transforms.storage.commit import write_atomically
from transforms.storage.files import join

PART_LINES = 1 << 16      # lines of one input file grouped together (at most one record each)
PIECE_RECORDS = 1 << 16   # records per removed file, parts permitting
ZSTD_LEVEL = 3


def removed_record(removal: Removal, paths: list) -> dict:
    """A ``Removal`` -> its audit record (the module's format); ``paths``: the scan's
    sorted file list, which ``removal.file`` indexes."""
    record = {"removed": typed_id(removal.id, removal.int_id)}
    if removal.kept is not None:
        record["kept"] = typed_id(removal.kept, removal.kept_int)
    record["reason"] = removal.reason
    record["detail"] = removal.detail
    if removal.jaccard is not None:
        record["jaccard"] = removal.jaccard
    record["file"] = paths[removal.file]
    record["line"] = removal.line
    return record


def plan_pieces(counts: list, piece_records: int) -> tuple[dict, int]:
    """``[((file, part), records)...]`` -> ``({(file, part): file number}, files)``:
    consecutive parts (in ``(file, part)`` order) share a file while their records
    fit in ``piece_records``; a part is never split."""
    plan, piece, size = {}, 0, 0
    for key, count in sorted(counts):
        if size and size + count > piece_records:
            piece, size = piece + 1, 0
        plan[key] = piece
        size += count
    return plan, (piece + 1 if plan else 0)


def piece_name(prefix: str, piece: int, pieces: int) -> str:
    return f"{prefix}-{piece:05d}-of-{pieces:05d}.jsonl.zst"


def piece_bytes(removals, paths: list) -> bytes:
    """The records of one file, sorted by ``(file, line)``, as its compressed bytes."""
    ordered = sorted((r.file, r.line, exact_json.dumps(removed_record(r, paths)))
                     for r in removals)
    data = b"".join(line + b"\n" for _, _, line in ordered)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)


class _WritePiece(beam.DoFn):
    """``(file number, [Removal...])`` -> the file written; its name out."""

    def __init__(self, directory: str, paths: list, prefix: str):
        self.directory = directory
        self.paths = paths
        self.prefix = prefix

    def process(self, piece_removals, plan):
        piece, removals = piece_removals
        name = piece_name(self.prefix, piece, plan[1])
        write_atomically(join(self.directory, name), piece_bytes(removals, self.paths))
        yield name


def _finish(_, directory: str, prefix: str, plan, written: list) -> str:
    """Once every file is written: '' (or why the set of files is wrong); with no
    record, the one empty file."""
    pieces = plan[1]
    if not pieces:
        write_atomically(join(directory, piece_name(prefix, 0, 1)), piece_bytes([], []))
        return ""
    if len(set(written)) != pieces:
        return f"removed records: {len(set(written))} of {pieces} files written"
    return ""


class WriteRemoved(beam.PTransform):
    """``PCollection[Removal]`` -> the removed-records files in ``directory`` (format
    and order: see the module), and one string, ``""`` once every file is written
    (else why not): give it to ``WriteStore(preconditions=...)`` so that a generation
    is committed only with its complete removed records.

    ``paths``: the scan's sorted file list (``Removal.file`` indexes it);
    ``prefix``: the files' name prefix (default ``removed``); ``part_lines``,
    ``piece_records``: the grouping bounds (default ``PART_LINES``,
    ``PIECE_RECORDS``): a worker holds at most ``max(part_lines, piece_records)``
    records.
    """

    def __init__(self, directory: str, paths: list, prefix: str = "removed",
                 part_lines: int | None = None, piece_records: int | None = None):
        super().__init__()
        self.directory = directory
        self.paths = list(paths)
        self.prefix = prefix
        self.part_lines = part_lines or PART_LINES
        self.piece_records = piece_records or PIECE_RECORDS

    def expand(self, removals):
        part_lines, piece_records = self.part_lines, self.piece_records
        keyed = removals | "ByPart" >> beam.Map(
            lambda r: ((r.file, r.line // part_lines), r))
        plan = beam.pvalue.AsSingleton(
            keyed
            | "Parts" >> beam.Keys()
            | "CountPerPart" >> beam.combiners.Count.PerElement()
            | "AllParts" >> beam.combiners.ToList()
            | "Plan" >> beam.Map(plan_pieces, piece_records))
        written = (
            keyed
            | "ToFile" >> beam.Map(lambda keyed_removal, plan: (
                plan[0][keyed_removal[0]], keyed_removal[1]), plan)
            | "GroupFiles" >> beam.GroupByKey()
            | "WriteFiles" >> beam.ParDo(_WritePiece(self.directory, self.paths, self.prefix),
                                         plan))
        return (removals.pipeline
                | "Finish" >> beam.Create([None])
                | "AllWritten" >> beam.Map(_finish, self.directory, self.prefix, plan,
                                           beam.pvalue.AsList(written)))
