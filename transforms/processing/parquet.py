"""Parquet input: rows read with pyarrow, row group by row group, as JSON-line documents.

A Parquet row becomes the JSON line the store keeps by one deterministic
mapping (``transforms.core.parquet_json``: ints exact, timestamps ISO 8601,
binary base64, ...), with every column carried through in schema order.  The
id and text come from the columns named by ``--id_field`` / ``--text_field``;
a row without an id (column absent or null) gets ``"<file>:<row>"`` like a
JSON line gets ``"<file>:<line>"``.

**Refs.**  A ref addresses a row as ``(file, line)`` where ``line`` is the row's
number in the file from 1 (rows counted across row groups in file order);
its row group and the row inside it follow from the file's footer
(``locate``).  Using the same field as JSON Lines keeps every step after the
scan (dedup, shard plan, runs) unchanged.  Dead letters name ``file``,
``line`` (that number), ``row_group`` (from 0) and ``row`` (in the row group,
from 0).

**Units of work.**  A file is cut into units of consecutive row groups of
about ``SPLIT_BYTES`` (64 MiB) of uncompressed data each
(``parquet_units``); each unit is scanned on its own, and re-read on its own
by pass 2 (``transforms.processing.refs.ResolveRuns``), so one huge file is
read by several workers.  A worker holds one record batch (``BATCH_ROWS``
rows) of one row group at a time.

**Change detection.**  A file's digest is xxh3-64 of its size and its raw
footer (schema, row-group offsets and sizes, statistics), taken in both
passes: a file rewritten in between fails the run (``InputChanged``), and the
second pass also checks each picked row's JSON size.  Unlike JSON Lines,
the digest does not cover every data byte.
"""
import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.core.parquet_json import row_json, table_rows
from transforms.core.records import Digest
from transforms.processing.io import (DEAD_LETTER_TAG, MAX_LINE_BYTES,
                                      MAX_RAW_IN_DEAD_LETTER, BadRecord, InputError,
                                      _one_line, dead_letter, is_text_input)

PARQUET_EXTENSIONS = (".parquet",)
SPLIT_BYTES = 64 << 20   # uncompressed row-group bytes per unit of work
BATCH_ROWS = 1024        # rows converted at once
PAR1 = b"PAR1"


def is_parquet(path: str) -> bool:
    """Does the file name end in ``.parquet``?"""
    return path.lower().endswith(PARQUET_EXTENSIONS)


def is_corpus_input(path: str) -> bool:
    """A file prepare_corpus reads: JSON Lines (``io.TEXT_EXTENSIONS``) or Parquet."""
    return is_text_input(path) or is_parquet(path)


def _open(path: str):
    local = "://" not in path or path.startswith("file://")
    if local:
        return open(path.removeprefix("file://"), "rb")
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


class ParquetSource:
    """One Parquet file opened for reading; faults are ``InputError`` naming it.

    ``metadata``: pyarrow's ``FileMetaData``; ``digest``: xxh3-64 hex of the
    file size and raw footer; ``first_rows``: row number (from 1) of each row
    group's first row, plus one past the last row.
    """

    def __init__(self, path: str):
        self.path = path
        try:
            self.file = _open(path)
        except Exception as err:  # noqa: BLE001 - missing, permission...
            raise InputError(path, f"cannot open: {_one_line(err)}") from None
        try:
            self.file.seek(0, 2)
            size = self.file.tell()
            if size < 12:
                raise ValueError(f"{size} bytes is too short for Parquet")
            self.file.seek(size - 8)
            tail = self.file.read(8)
            if tail[4:] != PAR1:
                raise ValueError("no Parquet footer (the file does not end in PAR1; "
                                 "truncated, or not Parquet)")
            footer_len = int.from_bytes(tail[:4], "little")
            if footer_len + 8 > size - 4:
                raise ValueError(f"footer length {footer_len} exceeds the file")
            self.file.seek(size - 8 - footer_len)
            footer = self.file.read(footer_len)
            self.digest = xxhash.xxh3_64(size.to_bytes(8, "little") + footer).hexdigest()
            self.file.seek(0)
            self.reader = pq.ParquetFile(self.file)
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 - pyarrow's errors, bad footers
            self.close()
            raise InputError(path, f"cannot read Parquet: {_one_line(err)}") from None
        self.metadata = self.reader.metadata
        names = self.reader.schema_arrow.names
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            self.close()
            raise InputError(path, f"has columns named alike ({', '.join(repeated)}); a row "
                             "would be a JSON object with repeated keys")
        self.first_rows = [1]
        for g in range(self.metadata.num_row_groups):
            self.first_rows.append(self.first_rows[-1] + self.metadata.row_group(g).num_rows)

    def batches(self, group: int):
        """Record batches of one row group (at most ``BATCH_ROWS`` rows each)."""
        try:
            yield from self.reader.iter_batches(batch_size=BATCH_ROWS, row_groups=[group],
                                                use_threads=False)
        except Exception as err:  # noqa: BLE001
            raise InputError(self.path, f"cannot read row group {group}: "
                             f"{_one_line(err)}") from None

    def close(self):
        try:
            self.file.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def parquet_units(index: int, path: str, split_bytes: int | None = None) -> list[tuple]:
    """``(file index, path, first row group, end row group)`` units of a file: runs of
    consecutive row groups of about ``split_bytes`` uncompressed bytes (at least one
    group each; a file without row groups is one empty unit, so its digest is taken)."""
    split_bytes = split_bytes or SPLIT_BYTES
    with ParquetSource(path) as source:
        meta = source.metadata
        units, start, size = [], 0, 0
        for g in range(meta.num_row_groups):
            size += meta.row_group(g).total_byte_size
            if size >= split_bytes:
                units.append((index, path, start, g + 1))
                start, size = g + 1, 0
        if start < meta.num_row_groups or not units:
            units.append((index, path, start, meta.num_row_groups))
    return units


def row_document(row: dict, id_field: str, text_field: str, default_id: str,
                 keep_empty: bool = False, max_line_bytes: int | None = MAX_LINE_BYTES,
                 typed: bool = False):
    """One row (``table_rows``) -> ``(id, text, line)``, with ``typed`` ``(id, text,
    line, int_id)`` (the id is an integer column's value); raises ``BadRecord``.

    Reason codes as for JSON lines: ``missing_text`` (no such column, or null),
    ``text_not_string`` (any other type, binary included), ``empty_text``,
    ``bad_id`` (float, bool, list...), ``line_too_long`` (the JSON line is
    above ``max_line_bytes``).  A missing or null id becomes ``default_id``
    (a null in place; an absent column appended last).
    """
    text = row.get(text_field)
    if text is None:
        raise BadRecord("missing_text", f"no field {text_field!r}" if text_field not in row
                        else f"{text_field!r} is null")
    if not isinstance(text, str):
        raise BadRecord("text_not_string", type(text).__name__)
    if not keep_empty and not text.strip():
        raise BadRecord("empty_text", "text is empty or only whitespace")
    record_id = row.get(id_field)
    if record_id is None:
        row = dict(row)
        row[id_field] = record_id = default_id
    elif isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        raise BadRecord("bad_id", f"{id_field!r} is {type(record_id).__name__}")
    line = row_json(row)
    if max_line_bytes is not None and len(line) > max_line_bytes:
        raise BadRecord("line_too_long",
                        f"{len(line)} bytes, above --max_line_bytes {max_line_bytes}",
                        len(line))
    if typed:
        return str(record_id), text, line, type(record_id) is int
    return str(record_id), text, line


def _raw(row: dict) -> bytes:
    try:
        return row_json(row)[:MAX_RAW_IN_DEAD_LETTER]
    except TypeError:
        return repr(row)[:MAX_RAW_IN_DEAD_LETTER].encode()


def unit_rows(source: ParquetSource, first: int, stop: int):
    """``(row group, row in group, line number, row dict)`` of row groups ``first..stop-1``."""
    for group in range(first, stop):
        line_no = source.first_rows[group]
        for batch in source.batches(group):
            for row in table_rows(pa.Table.from_batches([batch])):
                yield group, line_no - source.first_rows[group], line_no, row
                line_no += 1


def unit_documents(source: ParquetSource, first: int, stop: int, id_field: str,
                   text_field: str, keep_empty: bool, max_line_bytes, count_bad, tally):
    """``(line number, (id, text, line, int_id))`` of a unit's rows (``row_document``'s
    ``typed``); a bad row comes out as ``(None, TaggedOutput(dead_letters, record))``
    with its row group and row."""
    path = source.path
    for group, row_no, line_no, row in unit_rows(source, first, stop):
        tally["lines"] += 1
        try:
            doc = row_document(row, id_field, text_field, f"{path}:{line_no}", keep_empty,
                               max_line_bytes, typed=True)
        except BadRecord as bad:
            count_bad(bad.reason)
            raw = _raw(row)
            letter = dead_letter(path, line_no, bad.reason, bad.detail, raw, bad.size)
            letter.update(row_group=group, row=row_no)
            yield None, beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, letter)
            continue
        tally["records"] += 1
        tally["bytes"] += len(doc[2]) + 1
        yield line_no, doc


def picked_lines(path: str, lines: list[int], id_field: str, text_field: str,
                 max_line_bytes=MAX_LINE_BYTES):
    """Pass 2: ``(line number, JSON line)`` for every row of the row groups holding one
    of ``lines`` (sorted row numbers), then ``("digest", hex)`` last.  A picked row
    that no longer makes a document raises ``BadRecord`` (the caller names it)."""
    import bisect
    with ParquetSource(path) as source:
        groups = sorted({bisect.bisect_right(source.first_rows, n) - 1 for n in lines})
        wanted = set(lines)
        for group in groups:
            if not 0 <= group < source.metadata.num_row_groups:
                continue   # a row past the end: the caller sees it was never yielded
            for _, _, line_no, row in unit_rows(source, group, group + 1):
                if line_no in wanted:
                    yield line_no, row_document(row, id_field, text_field,
                                                f"{path}:{line_no}", True, max_line_bytes)[2]
        yield "digest", source.digest


def scan_units(paths: list[str], split_bytes: int | None = None) -> list[tuple]:
    """Units of every Parquet file among ``paths`` (indices into ``paths``)."""
    return [unit for index, path in enumerate(paths) if is_parquet(path)
            for unit in parquet_units(index, path, split_bytes)]


def unit_digest(source: ParquetSource, index: int, first: int):
    """The file's ``Digest``, from its first unit only (one per file)."""
    if first == 0:
        yield beam.pvalue.TaggedOutput("digests", Digest(index, source.digest))


def probe_parquet(path: str) -> dict:
    """``{column name: is numeric}`` of a Parquet file (``InputError`` when it is not
    readable Parquet)."""
    with ParquetSource(path) as source:
        return {f.name: pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                for f in source.reader.schema_arrow}


def corpus_paths(patterns) -> list[str]:
    """``io.expand_patterns`` for prepare_corpus: a directory means its JSON Lines
    and Parquet files."""
    from transforms.processing.io import TEXT_EXTENSIONS, expand_patterns
    return expand_patterns(patterns, is_corpus_input,
                           "/".join(TEXT_EXTENSIONS + PARQUET_EXTENSIONS))


def schema_text(schema: pa.Schema) -> str:
    return schema.to_string(show_schema_metadata=False)
