"""Reading JSON Lines into documents, with dead letters for what cannot be read.

A document travels through the pipeline as a plain tuple ``(id, line)``: the
record id (a string) and the original JSON line as bytes.  Keeping the line
verbatim means fields we do not know pass through untouched and the stored
record is byte-for-byte the input record.
"""
import bz2
import glob
import gzip
import json
import lzma
import os
import posixpath
import re
import threading
from typing import NamedTuple

import apache_beam as beam
import lz4.frame
import orjson
import simdjson
import xxhash
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.storage.files import file_size, join, read_bytes  # noqa: F401 - part of io's API

NAMESPACE = "dataprep.read"
DEAD_LETTER_TAG = "dead_letters"
LINEAGE_TAG = "lineage"  # (path, xxh3-64 hex of the decompressed bytes) per file read
MAX_RAW_IN_DEAD_LETTER = 1000  # bytes of the offending line kept for diagnosis
MAX_LINE_BYTES = 32 << 20  # default bound on one line (--max_line_bytes)
_CHUNK = 4 << 20
BOM = b"\xef\xbb\xbf"

# Codecs of text inputs, by the file name's last extension.  Every decoder's
# end of stream is checked: a file cut short is an InputError, never a
# shorter file (see ``open_text_stream``).
CODEC_EXTENSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".lz4": "lz4",
                    ".bz2": "bz2", ".xz": "xz"}
# A directory given as --input means its files with one of these endings.
TEXT_EXTENSIONS = tuple(base + codec for base in (".jsonl", ".ndjson")
                        for codec in ("",) + tuple(CODEC_EXTENSIONS))


class InputError(ValueError):
    """An input file cannot be read (truncated, corrupt, wrong kind, missing).

    The message is one line and starts with the file's path; ``line`` and
    ``offset`` (decompressed bytes before the failure) are given where known.
    """

    def __init__(self, path: str, detail: str, line: int | None = None,
                 offset: int | None = None):
        self.path, self.detail, self.line, self.offset = path, detail, line, offset
        where = []
        if line is not None:
            where.append(f"at line {line}")
        if offset is not None:
            where.append(f"after {offset} decompressed bytes")
        at = f" ({', '.join(where)})" if where else ""
        super().__init__(" ".join(f"{path}: {detail}{at}".split()))

    def at_line(self, line: int) -> "InputError":
        return InputError(self.path, self.detail, line, self.offset)

    def __reduce__(self):  # picklable across runner processes with its fields
        return InputError, (self.path, self.detail, self.line, self.offset)


class NoInputFiles(FileNotFoundError):
    """An input item (path, directory or glob) names no input file: a path given
    on the command line that names nothing (the jobs exit 2), not a fault inside
    a file (``InputError``)."""


class BadRecord(ValueError):
    """A line that cannot become a document; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str = "", size: int | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.size = size  # bytes of the whole line, when ``raw`` holds only its head


# ---------------------------------------------------------------- paths

def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def is_text_input(path: str) -> bool:
    """Does the file name end in a recognised text input extension (``TEXT_EXTENSIONS``)?"""
    return path.lower().endswith(TEXT_EXTENSIONS)


def _walk_local(directory: str, recognised) -> list[str]:
    found = []
    for top, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(top, f) for f in files
                  if not f.startswith(".") and recognised(f)]
    return found


def _expand_one(pattern: str, recognised, extensions: str) -> list[str]:
    local = _is_local(pattern)
    plain = pattern.removeprefix("file://") if local else pattern
    if local and os.path.isfile(plain):
        return [pattern]                 # an existing literal path wins over globbing
    if local and os.path.isdir(plain):
        found = _walk_local(plain, recognised)
        if not found:
            raise NoInputFiles(f"{pattern}: is a directory with no file ending in "
                               f"{extensions} (searched recursively; hidden files skipped)")
        return found
    if not local:
        if FileSystems.exists(pattern) and not pattern.endswith("/"):
            return [pattern]
        if pattern.endswith("/"):
            found = [m.path for r in FileSystems.match([pattern + "**"])
                     for m in r.metadata_list if recognised(m.path)]
            if not found:
                raise NoInputFiles(f"{pattern}: is a directory with no file ending in "
                                   f"{extensions}")
            return found
        return [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    # Local pattern, relative ones included: Python's glob (``**`` spans folders).
    return [p for p in glob.glob(plain, recursive=True) if os.path.isfile(p)]


def expand_patterns(patterns: str | list[str], recognised=is_text_input,
                    extensions: str = "/".join(TEXT_EXTENSIONS)) -> list[str]:
    """Comma-separated paths, directories and globs -> sorted unique file paths.

    Per item, in this order: an existing file is taken literally, even if its
    name has glob characters (``data [v1].jsonl``); a directory (local, or a
    remote prefix ending in ``/``) means every file under it, recursively,
    whose name passes ``recognised`` (default: ends in one of
    ``TEXT_EXTENSIONS``), hidden files and folders skipped; anything else is a
    glob (local: Python's ``glob`` with ``**``, relative patterns from the
    working directory; remote: Beam's FileSystems); a leading ``~`` is the
    home folder.  Local paths come back absolute.  An item that matches
    nothing, or a directory without a recognised file, raises ``NoInputFiles``
    (a FileNotFoundError) naming it (an empty input is almost always a typo,
    and silently writing an empty dataset hides it).
    """
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    if not patterns:
        raise NoInputFiles("no input pattern given")
    paths = set()
    for pattern in patterns:
        # "~/a.jsonl,~/b.jsonl": the shell expands only the first
        found = _expand_one(os.path.expanduser(pattern) if pattern.startswith("~")
                            else pattern, recognised, extensions)
        if not found:
            raise NoInputFiles(f"input pattern matches no file: {pattern}")
        # absolute, so workers started in another folder (a cluster's worker pool) and
        # the manifest's lineage name the same files
        paths.update(os.path.abspath(p) if "://" not in p else p for p in found)
    return sorted(paths)


def input_files(paths: list[str]) -> list[dict]:
    """``[{"path", "bytes"}]`` of the files a job reads, for the manifest and run report;
    each path taken literally (``files.file_size``: ``data[1].jsonl`` is that file),
    bytes None for a file that is not there."""
    return [{"path": p, "bytes": file_size(p)} for p in paths]


def estimate_raw_bytes(paths: list[str]) -> int:
    """Rough uncompressed size of input files (compressed JSONL and Parquet assumed 4x)."""
    return sum((4 if codec_of(f["path"]) or f["path"].lower().endswith(".parquet") else 1)
               * (f["bytes"] or 0)
               for f in input_files(paths))


# ---------------------------------------------------------------- decoders

def codec_of(path: str) -> str | None:
    """The codec a text input is compressed with, by its last extension (None: plain)."""
    return CODEC_EXTENSIONS.get(os.path.splitext(path)[1].lower())


ZSTD_MAGIC = 0xFD2FB528


class ZstdFrame(NamedTuple):
    """One frame of a zstd stream, found from its headers (``ZstdFrameCheck``).

    ``start``/``end``: compressed byte offsets ``[start, end)`` in the file;
    ``content_size``: decompressed bytes the header declares (None: not
    declared); ``skippable``: a skippable frame (RFC 8878 3.1.2, no content)."""
    start: int
    end: int
    content_size: int | None
    skippable: bool


class ZstdFrameCheck:
    """Follows the frame structure of a zstd stream as its compressed bytes go by.

    Frame and block headers are read, block bodies skipped (nothing is
    decompressed here): RFC 8878 sections 3.1.1 (frame header: descriptor,
    window, dictionary id, content size), 3.1.1.2 (block header: last flag,
    type, size; an RLE block holds one byte) and 3.1.2 (skippable frames).
    ``finish()`` raises ValueError unless the stream ended exactly at the end
    of a frame: python-zstandard's stream reader reports a clean end of data
    at a frame cut short, without raising.  (A complete frame's declared
    content size and checksum are checked by libzstd as it decodes.)

    ``record=True`` keeps every complete frame as a ``ZstdFrame`` in
    ``found`` (``zstd_frames`` walks a file's headers with it, seeking over the
    block bodies: the bytes to skip next are ``skip``).  ``base``: the
    compressed offset of the first byte fed.
    """

    def __init__(self, record: bool = False, base: int = 0):
        self.state, self.need, self.buf = "magic", 4, b""
        self.skip = 0
        self.checksum = False
        self.frames = 0   # frames complete (a frame counts once its last header is read)
        self.current = 1  # the frame being read, from 1
        self.offset = 0   # compressed bytes seen
        self.pos = base   # compressed offset of the next byte the state machine takes
        self.found = [] if record else None
        self.frame_start, self.fcs_bytes, self.content_size = base, 0, None
        self.skippable = False

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        self.offset += n
        while i < n:
            if self.skip:
                take = min(self.skip, n - i)
                self.skip -= take
                i += take
                self.pos += take
                continue
            take = min(self.need - len(self.buf), n - i)
            self.buf += data[i:i + take]
            i += take
            self.pos += take
            if len(self.buf) == self.need:
                header, self.buf = self.buf, b""
                self._advance(header)

    def skipped(self, count: int) -> None:
        """``count`` bytes of ``skip`` passed over without being fed (a seek)."""
        self.skip -= count
        self.offset += count
        self.pos += count

    def _advance(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        if self.state == "magic":
            self.current = self.frames + 1
            self.frame_start, self.content_size, self.skippable = self.pos - 4, None, False
            if value == ZSTD_MAGIC:
                self.state, self.need = "descriptor", 1
            elif value & 0xFFFFFFF0 == 0x184D2A50:
                self.state, self.need = "skippable", 4
            else:
                raise ValueError(f"no zstd frame starts at compressed byte {self.pos - 4}")
        elif self.state == "skippable":
            self.skip, self.skippable, self.content_size = value, True, 0
            self._frame_done()
        elif self.state == "descriptor":
            fcs, single = value >> 6, (value >> 5) & 1
            self.checksum = bool((value >> 2) & 1)
            self.fcs_bytes = ((1 if single else 0), 2, 4, 8)[fcs]
            rest = (0 if single else 1) + (0, 1, 2, 4)[value & 3] + self.fcs_bytes
            if value & 0x08:
                raise ValueError("a zstd frame header has its reserved bit set")
            self.state, self.need = ("frame_header", rest) if rest else ("block", 3)
        elif self.state == "frame_header":
            if self.fcs_bytes:   # the content size closes the header (RFC 8878 3.1.1.1.4)
                self.content_size = int.from_bytes(header[-self.fcs_bytes:], "little") + (
                    256 if self.fcs_bytes == 2 else 0)
            self.state, self.need = "block", 3
        elif self.state == "block":
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == 3:
                raise ValueError("a zstd block has the reserved type")
            self.skip = 1 if kind == 1 else size
            if last:
                if self.checksum:
                    self.state, self.need = "checksum", 4
                else:
                    self._frame_done()
        elif self.state == "checksum":
            self._frame_done()

    def _frame_done(self) -> None:
        """The frame's last header is read (its last ``skip`` bytes may follow)."""
        self.frames += 1
        self.state, self.need = "magic", 4
        if self.found is not None:
            self.found.append(ZstdFrame(self.frame_start, self.pos + self.skip,
                                        self.content_size, self.skippable))

    def finish(self) -> None:
        if self.skip or self.buf or self.state != "magic":
            raise ValueError(f"the zstd stream ends inside frame {self.current} "
                             f"(truncated file?) after {self.pos} compressed bytes")


def zstd_frames(path: str) -> list[ZstdFrame]:
    """The frames of a zstd file, found by reading their headers and seeking over
    block bodies (``ZstdFrameCheck``): about 3 bytes read per block of up to
    128 KiB, nothing decompressed.  Raises ``InputError`` naming the file when
    it is not a zstd stream or ends inside a frame (truncated)."""
    check = ZstdFrameCheck(record=True)
    try:
        raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as err:  # noqa: BLE001
        raise InputError(path, f"cannot open: {_one_line(err)}") from None
    try:
        with raw:
            raw.seek(0, os.SEEK_END)
            size = raw.tell()
            raw.seek(0)
            while check.pos < size:
                if check.skip:
                    if check.pos + check.skip > size:   # the last body is cut short
                        check.skipped(size - check.pos)
                        break
                    check.skipped(check.skip)
                    raw.seek(check.pos)
                    continue
                data = raw.read(min(check.need - len(check.buf), size - check.pos))
                if not data:
                    raise ValueError(f"ended at byte {check.pos}, expected {size} bytes "
                                     "(it changed while the job was reading it?)")
                check.feed(data)
        if size == 0:
            raise ValueError("is empty (0 bytes), not a zstd stream")
        check.finish()
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - a header's fault or the file system's
        raise InputError(path, _one_line(err)) from None
    return check.found


class _RawTee:
    """A raw binary stream that counts what is read and feeds it to ``check``."""

    def __init__(self, raw, check=None):
        self.raw, self.check, self.count = raw, check, 0

    def read(self, size=-1):
        data = self.raw.read(size)
        self.count += len(data)
        if self.check is not None:
            self.check.feed(data)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readable(self):
        return True

    def close(self):
        self.raw.close()

    @property
    def closed(self):
        return self.raw.closed


class _Window:
    """The compressed bytes ``[start, end)`` of a file (``end`` None: to its end);
    ending before ``end`` is an ``InputError`` (the file changed)."""

    def __init__(self, path: str, raw, start: int, end: int | None):
        self.path, self.raw, self.pos, self.end = path, raw, start, end
        raw.seek(start)

    def read(self, size=-1):
        left = None if self.end is None else self.end - self.pos
        if left is not None and (size is None or size < 0 or size > left):
            size = left
        data = self.raw.read(size) if size != 0 else b""
        self.pos += len(data)
        if not data and left:
            raise InputError(self.path, f"ended at compressed byte {self.pos}, before "
                             f"{self.end} (it changed while the job was reading it?)")
        return data

    def close(self):
        self.raw.close()

    @property
    def closed(self):
        return self.raw.closed


class CheckedTextStream:
    """Decompressed bytes of one input file; every fault an ``InputError`` naming it.

    ``read(n)`` returns at most ``n`` bytes (decoding is bounded however much a
    block expands).  At the end of data the codec's end of stream is checked:
    gzip, lz4, bz2 and xz readers raise on a stream cut short; zstd frames are
    followed by ``ZstdFrameCheck``; a compressed file of zero bytes is not a
    valid stream either.  ``offset`` counts decompressed bytes delivered.

    ``window=(start, end)`` (zstd only): the frames at compressed bytes
    ``[start, end)`` (``end`` None: to the end of the file), which must start
    and end at frame boundaries (``zstd_frames``); used by
    ``transforms.processing.splits`` to read a file by runs of frames.
    ``offset`` then counts from ``start``'s first decompressed byte.
    """

    def __init__(self, path: str, window: tuple[int, int | None] | None = None):
        self.path = path
        self.codec = codec_of(path)
        self.offset = 0
        self.window = window
        self._ended = False
        try:
            raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as err:  # noqa: BLE001 - missing, permission, a directory...
            raise InputError(path, f"cannot open: {_one_line(err)}") from None
        if window is not None:
            if self.codec != "zstd":
                raise ValueError(f"{path}: a window of compressed bytes needs zstd frames")
            raw = _Window(path, raw, *window)
        self.check = (ZstdFrameCheck(base=window[0] if window else 0)
                      if self.codec == "zstd" else None)
        self.tee = _RawTee(raw, self.check)
        if self.codec is None:
            self.reader = self.tee
        elif self.codec == "gzip":
            self.reader = gzip.GzipFile(fileobj=self.tee, mode="rb")
        elif self.codec == "zstd":
            self.reader = zstandard.ZstdDecompressor().stream_reader(
                self.tee, read_across_frames=True, closefd=False)
        elif self.codec == "lz4":
            self.reader = lz4.frame.LZ4FrameFile(self.tee, mode="rb")
        elif self.codec == "bz2":
            self.reader = bz2.BZ2File(self.tee, mode="rb")
        else:
            self.reader = lzma.LZMAFile(self.tee, mode="rb")

    def read(self, size: int = _CHUNK) -> bytes:
        try:
            data = self.reader.read(size)
            if not data and not self._ended:
                self._ended = True
                self._check_end()
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 - any decoder's or file system's fault
            where = "" if self.window is None else (
                f" (reading the frames from compressed byte {self.window[0]})")
            raise InputError(self.path, f"cannot read {self.codec or 'file'} data: "
                             f"{_one_line(err)}{where}",
                             offset=self.offset if self.window is None else None) from None
        self.offset += len(data)
        return data

    def _check_end(self) -> None:
        if self.codec is None:
            return
        if self.tee.count == 0 and self.window is None:
            raise InputError(self.path, f"is empty (0 bytes), not a {self.codec} stream")
        if self.check is not None:
            while self.tee.read(1 << 20):  # bytes the decoder left unread: still checked
                pass
            try:
                self.check.finish()
            except ValueError as err:
                raise InputError(self.path, str(err),
                                 offset=self.offset if self.window is None else None) from None

    def close(self):
        try:
            if self.reader is not self.tee:
                self.reader.close()
        finally:
            self.tee.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def open_text_stream(path: str) -> CheckedTextStream:
    """Binary stream of a file's decompressed bytes (codec by extension, see
    ``CODEC_EXTENSIONS``), whose faults are ``InputError``s naming the file."""
    return CheckedTextStream(path)


# ---------------------------------------------------------------- lines

class LongLine:
    """A line longer than the bound, not held: its first bytes and its length."""

    __slots__ = ("head", "size")

    def __init__(self, head: bytes, size: int):
        self.head, self.size = head, size


def line_blocks(stream, digest=None, max_line_bytes: int | None = None) -> "iter[list]":
    """The lines of ``iter_lines``, a list per chunk read (about 4 MiB of lines): for a
    reader that wants a few of the lines, without a Python step per line."""
    pending = b""
    long_head, long_size = None, 0   # while inside a too-long line
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        if digest is not None:
            digest.update(chunk)
        block = []
        if long_head is not None:
            cut = chunk.find(b"\n")
            if cut < 0:
                long_size += len(chunk)
                continue
            block.append(LongLine(long_head, long_size + cut))
            long_head, chunk = None, chunk[cut + 1:]
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        if block:
            block.extend(lines)
        else:
            block = lines
        if block:
            yield block
        if max_line_bytes is not None and len(pending) > max_line_bytes:
            long_head, long_size = pending[:MAX_RAW_IN_DEAD_LETTER], len(pending)
            pending = b""
    if long_head is not None:
        yield [LongLine(long_head, long_size)]
    elif pending:
        yield [pending]


def iter_lines(stream, digest=None, max_line_bytes: int | None = None) -> "iter[bytes]":
    """Lines of a binary stream split on b'\\n' only (JSON allows U+2028 inside strings).

    ``digest`` (an xxhash object), when given, is fed every byte read.  A line
    longer than ``max_line_bytes`` comes out as a ``LongLine`` and is never
    held whole: memory stays about ``max_line_bytes`` plus one read chunk.
    """
    for block in line_blocks(stream, digest, max_line_bytes):
        yield from block


def numbered_lines(stream, digest=None, max_line_bytes: int | None = None,
                   first_line: int = 1):
    """``(line number from first_line, line)``; a UTF-8 byte-order mark on line 1 is
    dropped.  (``first_line`` > 1: the stream starts inside a file, at that line.)

    An ``InputError`` from the stream comes out with the line it was reading.
    """
    line_no = first_line - 1
    try:
        for line_no, raw in enumerate(iter_lines(stream, digest, max_line_bytes),
                                      start=first_line):
            if line_no == 1 and isinstance(raw, bytes) and raw.startswith(BOM):
                raw = raw[len(BOM):]
            yield line_no, raw
    except InputError as err:
        raise err.at_line(line_no + 1) from None


def lines_at(stream, wanted, digest=None, max_line_bytes: int | None = None,
             first_line: int = 1):
    """``(line number, line)`` of the lines numbered ``wanted`` (ascending; a number
    given twice gives its line twice), as ``numbered_lines`` numbers and cuts them;
    the stream is read to its end (so ``digest`` sees every byte) with one Python
    step per chunk and per wanted line, not per line.  A wanted number below
    ``first_line`` or out of order stops the output (the rest is still read)."""
    wanted = iter(wanted)
    want = next(wanted, None)
    base = first_line
    try:
        for block in line_blocks(stream, digest, max_line_bytes):
            if base == 1 and isinstance(block[0], bytes) and block[0].startswith(BOM):
                block[0] = block[0][len(BOM):]
            end = base + len(block)
            while want is not None and base <= want < end:
                yield want, block[want - base]
                previous, want = want, next(wanted, None)
                if want is not None and want < previous:
                    want = None   # out of order: nothing more is given
            base = end
    except InputError as err:
        raise err.at_line(base) from None


# ---------------------------------------------------------------- records

_LOCAL = threading.local()


def _top_level_keys(line: bytes) -> int | None:
    """Number of top-level keys, repeats included (simdjson's DOM keeps them all).

    None when simdjson refuses the line (numbers beyond 64 bits); the caller
    then asks the standard library.
    """
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = simdjson.Parser()
    try:
        obj = parser.parse(line)
        count = len(obj)
        del obj  # the parser is reused only once no view of its document lives
        return count
    except (ValueError, RuntimeError):
        return None


def _repeated_key(line: bytes) -> str | None:
    """A top-level key given twice (after unescaping), by the standard library."""
    top = []

    def hook(items):
        top[:] = items  # objects close inner first: the last one is the top level
        return {}
    try:
        json.loads(line, object_pairs_hook=hook)
    except ValueError:
        return None
    seen = set()
    for key, _ in top:
        if key in seen:
            return key
        seen.add(key)
    return None


def _exact_id(line: bytes, id_field: str):
    """The id as the standard library reads it: integers of any size exactly."""
    try:
        return json.loads(line).get(id_field)
    except ValueError:
        return None


def splice_field(line: bytes, field: str, value: str) -> bytes:
    """``line`` (a JSON object, stripped) with ``"field": value`` added before its
    closing brace; every other byte kept."""
    body = line[:-1].rstrip()
    sep = b"" if body.endswith(b"{") else b","
    return body + sep + orjson.dumps(field) + b":" + orjson.dumps(value) + b"}"


_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],:]')


def replace_null_field(line: bytes, field: str, value: str) -> bytes | None:
    """``line`` (a JSON object without repeated keys) with its top-level ``field``'s
    ``null`` replaced by ``value``, every other byte kept; None if not found."""
    depth, expect_key, key = 0, False, None
    for token in _TOKENS.finditer(line):
        text = token.group()
        if text in (b"{", b"["):
            depth += 1
            expect_key = depth == 1 and text == b"{"
        elif text in (b"}", b"]"):
            depth -= 1
        elif text == b",":
            expect_key = depth == 1
        elif text == b":":
            if depth == 1 and key == field:
                rest = line[token.end():]
                start = token.end() + len(rest) - len(rest.lstrip())
                if line[start:start + 4] == b"null":
                    return line[:start] + orjson.dumps(value) + line[start + 4:]
                return None
        elif expect_key:   # a string in key position at the top level
            key, expect_key = json.loads(text), False
    return None


def checked_text(record: dict, text_field: str, keep_empty: bool = False) -> str:
    """The record's text, or ``BadRecord`` with the dead-letter reason: ``missing_text``
    (absent or null), ``text_not_string``, ``empty_text`` (empty or only whitespace,
    unless ``keep_empty``)."""
    text = record.get(text_field)
    if text is None:
        raise BadRecord("missing_text", f"no field {text_field!r}")
    if not isinstance(text, str):
        raise BadRecord("text_not_string", type(text).__name__)
    if not keep_empty and not text.strip():
        raise BadRecord("empty_text", "text is empty or only whitespace")
    return text


def parse_line(line: bytes, id_field: str, text_field: str, default_id: str,
               keep_empty: bool = False, typed: bool = False):
    """One JSON line -> ``(id, text, line)``; raises BadRecord with a reason code.
    With ``typed``: ``(id, text, line, int_id)``, ``int_id`` True when the id is a
    JSON integer (``id`` is then its decimal digits; False for a string id, also
    one of digits, and for ``default_id``).

    ``line`` comes back stripped of CR/whitespace at the ends, otherwise byte
    for byte as read.  A record without an id gets ``default_id``, spliced
    into the line before its closing brace (``,"id":"<file>:<line>"``), or in
    place of the ``null`` of ``"id": null``; no other byte changes, so numbers
    of any size and key order survive.  An id is an integer (any size, kept
    exactly as its decimal digits) or a string.

    Reason codes: ``invalid_json``, ``invalid_utf8``, ``not_an_object``,
    ``duplicate_key`` (a top-level key given twice, also after unescaping:
    JSON parsers disagree on which value counts, so the record has no one
    meaning), ``missing_text``, ``text_not_string``, ``bad_id`` (float, bool,
    object, array), ``empty_text`` (text empty or only whitespace, unless
    ``keep_empty``).
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        reason = "invalid_utf8" if "utf-8" in str(err).lower() else "invalid_json"
        raise BadRecord(reason, str(err)) from None
    if not isinstance(obj, dict):
        raise BadRecord("not_an_object", type(obj).__name__)
    keys = _top_level_keys(line)
    if keys is None or keys != len(obj):
        repeated = _repeated_key(line)
        if repeated is not None:
            raise BadRecord("duplicate_key", f"key {repeated!r} appears more than once")
    text = checked_text(obj, text_field, keep_empty)
    line = line.strip()
    if id_field not in obj:
        spliced = splice_field(line, id_field, default_id)
        return (default_id, text, spliced, False) if typed else (default_id, text, spliced)
    record_id = obj[id_field]
    if record_id is None:  # "id": null is no id: the default replaces the null
        replaced = replace_null_field(line, id_field, default_id)
        if replaced is not None:
            return (default_id, text, replaced, False) if typed else (
                default_id, text, replaced)
    if isinstance(record_id, float):  # orjson reads integers beyond 64 bits as floats
        record_id = _exact_id(line, id_field)
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        kind = "null" if record_id is None else type(record_id).__name__
        raise BadRecord("bad_id", f"{id_field!r} is {kind}")
    if typed:
        return str(record_id), text, line, type(record_id) is int
    return str(record_id), text, line


def dead_letter(path: str, line_no: int, reason: str, detail: str, raw: bytes,
                raw_bytes: int | None = None) -> dict:
    """The dead-letter record of a bad line: raw line cut at 1000 bytes, its full length."""
    return {
        "file": path,
        "line": line_no,
        "reason": reason,
        "detail": detail[:300],
        "raw": raw[:MAX_RAW_IN_DEAD_LETTER].decode("utf-8", "replace"),
        "raw_bytes": len(raw) if raw_bytes is None else raw_bytes,
    }


def parsed_lines(path: str, id_field: str, text_field: str, tally: dict, digest=None,
                 max_line_bytes: int | None = MAX_LINE_BYTES, keep_empty: bool = False,
                 opened=None, first_line: int = 1, typed: bool = False):
    """``(line number, raw line, document or BadRecord)`` for each non-blank line of a file.

    ``tally`` counts ``lines``, ``blank_lines`` and ``bytes`` as the file is read.
    A line over ``max_line_bytes`` is ``BadRecord("line_too_long")`` with its
    first bytes as the raw line.  A fault of the file itself (truncated,
    corrupt) raises ``InputError`` naming the file and line.  ``opened`` (a
    context manager giving a stream) and ``first_line`` read a part of the file
    (``transforms.processing.splits``).  ``typed``: documents as ``parse_line``'s
    ``typed`` gives them (with ``int_id``).
    """
    with (opened if opened is not None else open_text_stream(path)) as stream:
        for line_no, raw in numbered_lines(stream, digest, max_line_bytes, first_line):
            tally["lines"] += 1
            if isinstance(raw, LongLine) or (max_line_bytes is not None
                                             and len(raw) > max_line_bytes):
                size = raw.size if isinstance(raw, LongLine) else len(raw)
                head = raw.head if isinstance(raw, LongLine) else raw[:MAX_RAW_IN_DEAD_LETTER]
                tally["bytes"] += size + 1
                yield line_no, head, BadRecord(
                    "line_too_long", f"{size} bytes, above --max_line_bytes {max_line_bytes}",
                    size)
                continue
            tally["bytes"] += len(raw) + 1
            if not raw.strip():
                tally["blank_lines"] += 1
                continue
            try:
                yield line_no, raw, parse_line(raw, id_field, text_field, f"{path}:{line_no}",
                                               keep_empty, typed)
            except BadRecord as bad:
                yield line_no, raw, bad


COUNT_EVERY = 4096   # records between counter updates inside a file (live progress)


class JsonlFileDoFn(beam.DoFn):
    """Base of the DoFns that read whole JSON Lines files: counters under
    ``dataprep.read`` (updated every ``COUNT_EVERY`` records and at the end of
    the file) and dead letters for bad lines.  ``TYPED_IDS``: documents come as
    ``(id, text, line, int_id)`` (``parse_line``'s ``typed``), else ``(id, text,
    line)``."""

    TYPED_IDS = False

    def __init__(self, id_field: str, text_field: str,
                 max_line_bytes: int | None = MAX_LINE_BYTES, keep_empty: bool = False):
        self.id_field = id_field
        self.text_field = text_field
        self.max_line_bytes = max_line_bytes
        self.keep_empty = keep_empty
        self.counters = {name: Metrics.counter(NAMESPACE, name)
                         for name in ("lines", "blank_lines", "records", "bytes")}
        self.bad = {}

    def documents(self, path: str, digest=None, opened=None, first_line: int = 1):
        """``(line number, document)`` of a file (or of the part ``opened`` gives,
        see ``parsed_lines``); bad lines become dead-letter outputs."""
        tally = dict.fromkeys(self.counters, 0)
        counted = dict.fromkeys(self.counters, 0)

        def count():  # what the tally gained since the last call, into the counters
            for name, counter in self.counters.items():
                if tally[name] != counted[name]:
                    counter.inc(tally[name] - counted[name])
                    counted[name] = tally[name]

        for line_no, raw, doc in parsed_lines(path, self.id_field, self.text_field, tally,
                                              digest, self.max_line_bytes, self.keep_empty,
                                              opened, first_line, self.TYPED_IDS):
            if isinstance(doc, BadRecord):
                self._count_bad(doc.reason)
                yield None, beam.pvalue.TaggedOutput(
                    DEAD_LETTER_TAG, dead_letter(path, line_no, doc.reason, doc.detail, raw,
                                                 doc.size))
                continue
            tally["records"] += 1
            if tally["records"] % COUNT_EVERY == 0:
                count()   # a progress display sees a large file's read move
            yield line_no, doc
        count()

    def _count_bad(self, reason: str):
        if reason not in self.bad:
            self.bad[reason] = Metrics.counter(NAMESPACE, f"bad.{reason}")
        self.bad[reason].inc()


class _ReadJsonlFile(JsonlFileDoFn):
    """path -> documents ``(id, text, line)`` (or lists of up to ``batch_size`` of
    them); bad lines to the dead-letter output."""

    def __init__(self, id_field: str, text_field: str, batch_size: int | None,
                 max_line_bytes: int | None = MAX_LINE_BYTES, keep_empty: bool = False):
        super().__init__(id_field, text_field, max_line_bytes, keep_empty)
        self.batch_size = batch_size

    def process(self, path: str):
        batch = []
        digest = xxhash.xxh3_64()
        for line_no, doc in self.documents(path, digest):
            if line_no is None or self.batch_size is None:
                yield doc
                continue
            batch.append(doc)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
        yield beam.pvalue.TaggedOutput(LINEAGE_TAG, (path, digest.hexdigest()))


class ReadJsonl(beam.PTransform):
    """Read JSON Lines files into ``(id, text, line)`` documents.

    Returns a tuple ``(docs, dead_letters)``; with ``batch_size`` the docs come
    as lists of up to that many (the hot path then pays Beam's per-element cost
    once per batch).  Files are matched when the pipeline is built (a pattern
    matching nothing fails early, see ``expand_patterns``) and read in
    parallel, one file per task.  ``max_line_bytes`` (default 32 MiB) bounds a
    line (longer: dead letter ``line_too_long``); ``keep_empty=False`` makes a
    record whose text is empty or whitespace a dead letter ``empty_text``.
    A file that cannot be read (truncated, corrupt) fails the job with an
    ``InputError`` naming it.  Once applied, ``lineage`` holds one
    ``(path, xxh3-64 hex of its decompressed bytes)`` per file read.
    """

    def __init__(self, patterns, id_field: str = "id", text_field: str = "text",
                 batch_size: int | None = None, max_line_bytes: int | None = MAX_LINE_BYTES,
                 keep_empty: bool = False):
        super().__init__()
        self.paths = expand_patterns(patterns)
        self.id_field = id_field
        self.text_field = text_field
        self.batch_size = batch_size
        self.max_line_bytes = max_line_bytes
        self.keep_empty = keep_empty

    def expand(self, pbegin):
        results = (
            pbegin
            | "ListFiles" >> beam.Create(self.paths)
            | "ParseLines" >> beam.ParDo(_ReadJsonlFile(
                self.id_field, self.text_field, self.batch_size, self.max_line_bytes,
                self.keep_empty)).with_outputs(DEAD_LETTER_TAG, LINEAGE_TAG, main="docs"))
        self.lineage = results[LINEAGE_TAG]
        return results.docs, results[DEAD_LETTER_TAG]


# ---------------------------------------------------------------- early checks

PROBE_FILES = 32     # inputs looked at before the job starts (evenly spaced)
PROBE_LINES = 1000   # lines read from the start of each
_PROBE_BYTES = 4 << 20
_MAGICS = {b"PAR1": "a Parquet file", b"\x1f\x8b": "gzip-compressed",
           b"\x28\xb5\x2f\xfd": "zstd-compressed", b"\x04\x22\x4d\x18": "lz4-compressed",
           b"BZh": "bzip2-compressed", b"\xfd7zXZ\x00": "xz-compressed",
           b"PK\x03\x04": "a zip archive", b"\x93NUMPY": "a .npy array"}


def _wrong_kind(path: str, head: bytes) -> str | None:
    """Why a file is not JSON Lines by its first raw bytes (None: it may be)."""
    for magic, kind in _MAGICS.items():
        if head.startswith(magic):
            if kind.endswith("-compressed") and codec_of(path):
                return None
            if kind.endswith("-compressed"):
                return f"is {kind} but its name does not say so (give it the codec's extension)"
            if kind == "a Parquet file":
                return "is a Parquet file, not JSON Lines: name it .parquet to read it as Parquet"
            return f"is {kind}, not JSON Lines"
    return None


def _not_objects(first: bytes, lines: int) -> str:
    text = first.decode("utf-8", "replace")[:80]
    stripped = text.lstrip()
    if stripped.startswith("["):
        return ("holds a JSON array, not JSON Lines (one JSON object per line): convert it, "
                "e.g. jq -c '.[]'")
    if "," in text or "\t" in text:
        return (f"looks like CSV/TSV, not JSON Lines: none of its first {lines} lines is a "
                f"JSON object (first line: {text!r})")
    return f"is not JSON Lines: none of its first {lines} lines is a JSON object " \
           f"(first line: {text!r})"


def probe_inputs(paths: list[str], text_field: str, numeric_field: str | None = None,
                 max_files: int = PROBE_FILES, max_lines: int = PROBE_LINES) -> dict:
    """Look at the first lines of the inputs before the job starts; refuse wrong kinds.

    Reads up to ``max_lines`` lines (and 4 MiB) from each of up to
    ``max_files`` inputs, evenly spaced in path order (of a ``.parquet`` file,
    its footer's columns and their types).  Raises ``InputError``
    naming a file that is Parquet under another name, not Parquet under a
    ``.parquet`` name, a zip, compressed under a plain name, a
    JSON array, CSV or otherwise holds no JSON object; ``ValueError`` when no
    record read has ``text_field`` ("no record has field 'body'; fields seen:
    id, text, url") or when ``numeric_field`` holds a non-numeric value
    (the values seen are named).  A faulty file (truncated...) is left to the
    job, which names it.  Returns ``{"files", "records", "fields"}`` of what
    was read.
    """
    step = max(1, -(-len(paths) // max_files))
    probed = paths[::step][:max_files]
    fields: set = set()
    records = with_text = 0
    odd_values: dict = {}
    for path in probed:
        if path.lower().endswith(".parquet"):   # columns from the footer
            from transforms.processing.parquet import probe_parquet
            columns = probe_parquet(path)
            fields.update(columns)
            records += 1
            with_text += text_field in columns
            if numeric_field and numeric_field in columns and not columns[numeric_field]:
                odd_values.setdefault(f"values of a non-numeric Parquet column", None)
            continue
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                head = f.read(8)
        except Exception as err:  # noqa: BLE001
            raise InputError(path, f"cannot open: {_one_line(err)}") from None
        why = _wrong_kind(path, head)
        if why:
            raise InputError(path, why)
        objects, first, seen_lines, read = 0, None, 0, 0
        try:
            with open_text_stream(path) as stream:
                for _, raw in numbered_lines(stream, None, _PROBE_BYTES):
                    if isinstance(raw, LongLine):
                        raw = raw.head
                    read += len(raw) + 1
                    if raw.strip():
                        seen_lines += 1
                        first = raw if first is None else first
                        try:
                            obj = orjson.loads(raw)
                        except orjson.JSONDecodeError:
                            obj = None
                        if isinstance(obj, dict):
                            objects += 1
                            fields.update(obj)
                            with_text += text_field in obj
                            value = obj.get(numeric_field) if numeric_field else None
                            if value is not None and (isinstance(value, bool) or not isinstance(
                                    value, (int, float))):
                                odd_values.setdefault(repr(value)[:40], None)
                    if seen_lines >= max_lines or read >= _PROBE_BYTES:
                        break
        except InputError:
            continue  # the job reads it again and fails naming the file and line
        if seen_lines and not objects:
            raise InputError(path, _not_objects(first, seen_lines))
        records += objects
    if records and not with_text:
        shown = ", ".join(sorted(fields)[:20]) + (", ..." if len(fields) > 20 else "")
        raise ValueError(f"no record has field {text_field!r}; fields seen: {shown} (first "
                         f"{max_lines} lines of {len(probed)} file(s); set --text_field)")
    if odd_values:
        shown = ", ".join(list(odd_values)[:5])
        raise ValueError(f"--range_by {numeric_field}: the field holds non-numeric values "
                         f"({shown}); ranges need numbers (--partition_by {numeric_field} "
                         "makes one partition per value)")
    return {"files": len(probed), "records": records, "fields": sorted(fields)}
