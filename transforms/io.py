"""Reading JSON Lines into documents, with dead letters for what cannot be read.

A document travels through the pipeline as a plain tuple ``(id, line)``: the
record id (a string) and the original JSON line as bytes.  Keeping the line
verbatim means fields we do not know pass through untouched and the stored
record is byte-for-byte the input record.
"""
import gzip
import posixpath

import apache_beam as beam
import orjson
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

NAMESPACE = "dataprep.read"
DEAD_LETTER_TAG = "dead_letters"
MAX_RAW_IN_DEAD_LETTER = 1000  # bytes of the offending line kept for diagnosis
_CHUNK = 4 << 20
BOM = b"\xef\xbb\xbf"


class BadRecord(ValueError):
    """A line that cannot become a document; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def expand_patterns(patterns: str | list[str]) -> list[str]:
    """Comma-separated paths/globs -> sorted unique file paths.

    A pattern that matches nothing is an error naming it: an empty input is
    almost always a typo, and silently writing an empty dataset hides it.
    """
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    if not patterns:
        raise ValueError("no input pattern given")
    paths = set()
    for pattern, result in zip(patterns, FileSystems.match(patterns)):
        found = [m.path for m in result.metadata_list]
        if not found:
            raise FileNotFoundError(f"input pattern matches no file: {pattern}")
        paths.update(found)
    return sorted(paths)


def join(base: str, *parts: str) -> str:
    """Join path parts for local paths and URIs alike."""
    if "://" in base:
        return posixpath.join(base, *parts)
    return FileSystems.join(base, *parts)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def estimate_raw_bytes(paths: list[str]) -> int:
    """Rough uncompressed size of input files (compressed JSONL assumed 4x)."""
    total = 0
    for result in FileSystems.match(paths):
        for meta in result.metadata_list:
            factor = 4 if meta.path.endswith((".gz", ".zst", ".zstd")) else 1
            total += meta.size_in_bytes * factor
    return total


def open_text_stream(path: str):
    """Binary stream of a file's decompressed bytes (by extension: .gz, .zst)."""
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if path.endswith((".zst", ".zstd")):
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
    return raw


def iter_lines(stream, digest=None) -> "iter[bytes]":
    """Lines of a binary stream split on b'\\n' only (JSON allows U+2028 inside strings).

    ``digest`` (an xxhash object), when given, is fed every byte read.
    """
    pending = b""
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        if digest is not None:
            digest.update(chunk)
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending


def numbered_lines(stream, digest=None):
    """``(line number from 1, line)``; a UTF-8 byte-order mark on line 1 is dropped."""
    for line_no, raw in enumerate(iter_lines(stream, digest), start=1):
        if line_no == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        yield line_no, raw


def parse_line(line: bytes, id_field: str, text_field: str, default_id: str):
    """One JSON line -> ``(id, text, line)``; raises BadRecord with a reason code.

    ``line`` comes back stripped of CR/whitespace at the ends; when the record
    has no id, it gets ``default_id`` and the line is re-serialised with it, so
    the stored record carries the id it is known by.
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        reason = "invalid_utf8" if "utf-8" in str(err).lower() else "invalid_json"
        raise BadRecord(reason, str(err)) from None
    if not isinstance(obj, dict):
        raise BadRecord("not_an_object", type(obj).__name__)
    text = obj.get(text_field)
    if text is None:
        raise BadRecord("missing_text", f"no field {text_field!r}")
    if not isinstance(text, str):
        raise BadRecord("text_not_string", type(text).__name__)
    record_id = obj.get(id_field)
    if record_id is None:
        obj[id_field] = record_id = default_id
        line = orjson.dumps(obj)
    elif isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        raise BadRecord("bad_id", f"{id_field!r} is {type(record_id).__name__}")
    else:
        record_id = str(record_id)
        line = line.strip()
    return record_id, text, line


def dead_letter(path: str, line_no: int, reason: str, detail: str, raw: bytes) -> dict:
    return {
        "file": path,
        "line": line_no,
        "reason": reason,
        "detail": detail[:300],
        "raw": raw[:MAX_RAW_IN_DEAD_LETTER].decode("utf-8", "replace"),
        "raw_bytes": len(raw),
    }


def parsed_lines(path: str, id_field: str, text_field: str, tally: dict, digest=None):
    """``(line number, raw line, document or BadRecord)`` for each non-blank line of a file.

    ``tally`` counts ``lines``, ``blank_lines`` and ``bytes`` as the file is read.
    """
    with open_text_stream(path) as stream:
        for line_no, raw in numbered_lines(stream, digest):
            tally["lines"] += 1
            tally["bytes"] += len(raw) + 1
            if not raw.strip():
                tally["blank_lines"] += 1
                continue
            try:
                yield line_no, raw, parse_line(raw, id_field, text_field, f"{path}:{line_no}")
            except BadRecord as bad:
                yield line_no, raw, bad


class JsonlFileDoFn(beam.DoFn):
    """Base of the DoFns that read whole JSON Lines files: counters under
    ``dataprep.read`` and dead letters for bad lines."""

    def __init__(self, id_field: str, text_field: str):
        self.id_field = id_field
        self.text_field = text_field
        self.counters = {name: Metrics.counter(NAMESPACE, name)
                         for name in ("lines", "blank_lines", "records", "bytes")}
        self.bad = {}

    def documents(self, path: str, digest=None):
        """``(line number, document)`` of a file; bad lines become dead-letter outputs."""
        tally = dict.fromkeys(self.counters, 0)
        for line_no, raw, doc in parsed_lines(path, self.id_field, self.text_field, tally,
                                              digest):
            if isinstance(doc, BadRecord):
                self._count_bad(doc.reason)
                yield None, beam.pvalue.TaggedOutput(
                    DEAD_LETTER_TAG, dead_letter(path, line_no, doc.reason, doc.detail, raw))
                continue
            tally["records"] += 1
            yield line_no, doc
        for name, counter in self.counters.items():
            counter.inc(tally[name])

    def _count_bad(self, reason: str):
        if reason not in self.bad:
            self.bad[reason] = Metrics.counter(NAMESPACE, f"bad.{reason}")
        self.bad[reason].inc()


class _ReadJsonlFile(JsonlFileDoFn):
    """path -> documents ``(id, text, line)`` (or lists of up to ``batch_size`` of
    them); bad lines to the dead-letter output."""

    def __init__(self, id_field: str, text_field: str, batch_size: int | None):
        super().__init__(id_field, text_field)
        self.batch_size = batch_size

    def process(self, path: str):
        batch = []
        for line_no, doc in self.documents(path):
            if line_no is None or self.batch_size is None:
                yield doc
                continue
            batch.append(doc)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


class ReadJsonl(beam.PTransform):
    """Read JSON Lines files into ``(id, text, line)`` documents.

    Returns a tuple ``(docs, dead_letters)``; with ``batch_size`` the docs come
    as lists of up to that many (the hot path then pays Beam's per-element cost
    once per batch).  Files are matched when the pipeline is built (a pattern
    matching nothing fails early) and read in parallel, one file per task.
    """

    def __init__(self, patterns, id_field: str = "id", text_field: str = "text",
                 batch_size: int | None = None):
        super().__init__()
        self.paths = expand_patterns(patterns)
        self.id_field = id_field
        self.text_field = text_field
        self.batch_size = batch_size

    def expand(self, pbegin):
        results = (
            pbegin
            | "ListFiles" >> beam.Create(self.paths)
            | "ParseLines" >> beam.ParDo(_ReadJsonlFile(self.id_field, self.text_field, self.batch_size))
            .with_outputs(DEAD_LETTER_TAG, main="docs"))
        return results.docs, results[DEAD_LETTER_TAG]
