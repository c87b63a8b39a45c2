"""Large JSON Lines files split into ranges, so one huge file does not serialise
the scan.

**What splits.**  Uncompressed JSON Lines (``.jsonl``, ``.ndjson``) larger
than ``SPLIT_BYTES`` (64 MiB): byte ranges ``[start, end)`` of about that size.
zstd JSON Lines (``.zst``, ``.zstd``) of several frames: runs of whole frames
of about ``SPLIT_BYTES`` of decompressed bytes (``plan_frames``).  A
single-frame zstd file, and gzip, lz4, bz2 and xz files, cannot be entered in
the middle: one task per file.  Parquet files split by row groups
(``transforms.processing.parquet``).

**Lines.**  A range owns the lines that *start* inside it: it skips the tail
of a line begun before ``start`` and reads its last line past ``end`` to its
newline.  Line numbers stay exact: a cheap parallel pass counts each range's
line starts (``count_lines``: one ``bytes.count`` over the range, no
parsing), and a range's first line number is one plus the counts of the ranges
before it.  (Refs addressed by byte offset would spare that pass but change
what ``line`` means in refs, dead letters and default ids.)

**zstd frames.**  Frame boundaries come from the frame and block headers
(``transforms.processing.io.zstd_frames``, RFC 8878: about 3 bytes read per
block, nothing decompressed), walked by the driver when the job is built, for
zstd inputs above ``SPLIT_BYTES / 4`` compressed.  A frame need not end on a
line: whether a range begins inside a line is decided by the last
decompressed byte before it, which only the ranges before it hold.  So the
counting pass decompresses each range (``count_frame_lines``: its newlines,
size and whether its last byte is a newline, a ``FrameLines``) and
``range_numbers`` derives from those of a file's ranges each range's first
line number, line count and ``inside_line`` flag; no reader looks back.  A
``FrameRangeReader`` decompresses its frames, skips their head when
``inside_line``, and decompresses on past ``end`` (frame after frame, also
over ranges owning no line) until its last line's newline.  Each range's
frames are followed header by header as they are read, and must end exactly
at ``end``: a file cut short fails naming it, as an unsplit one does.

**Pass 2.**  The re-read that copies kept lines into shard runs
(``transforms.processing.refs.ResolveRuns``) goes by the same ranges: a
kept line belongs to the range whose line numbers hold it (the scan's
``ScannedRange`` records: start, end, first line, lines, digest), and each
range holding a kept line is one task, a ``RangeReader`` (or
``FrameRangeReader``) from its first line number.  So neither pass reads a
split file in one task.

**Digest.**  Each range hashes exactly its bytes ``[start, end)`` (xxh3-64;
of a zstd range, its frames' decompressed bytes), in pass 1 and again in pass
2, which compares the two per range: a range that changed in between fails
the run.  The file's lineage digest is xxh3-64 of the ranges' hex digests
joined by commas (``combine_digests``).  (For an unsplit file the digest stays
xxh3-64 of its decompressed bytes.)
"""
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.core.records import FrameLines
from transforms.processing.io import (CheckedTextStream, InputError, ZstdFrame, _one_line,
                                      codec_of, input_files, is_text_input, zstd_frames)

SPLIT_BYTES = 64 << 20
_CHUNK = 4 << 20
ZSTD_RATIO = 4   # decompressed bytes per compressed byte assumed where a frame declares none


def is_splittable(path: str) -> bool:
    """Uncompressed JSON Lines (read from the middle by byte ranges)."""
    return is_text_input(path) and codec_of(path) is None


def is_frame_splittable(path: str) -> bool:
    """zstd JSON Lines (read from the middle at frame boundaries, when it has several)."""
    return is_text_input(path) and codec_of(path) == "zstd"


def split_ranges(size: int, split_bytes: int) -> list[tuple[int, int]]:
    """``[(start, end)]`` of about ``split_bytes`` each covering ``0..size``."""
    count = max(1, -(-size // split_bytes))
    cuts = [size * i // count for i in range(count + 1)]
    return list(zip(cuts, cuts[1:]))


def frame_weight(frame: ZstdFrame) -> int:
    """Decompressed bytes of a frame: declared, else ``ZSTD_RATIO`` x compressed."""
    if frame.skippable:
        return 0
    if frame.content_size is not None:
        return frame.content_size
    return ZSTD_RATIO * (frame.end - frame.start)


def plan_frames(frames: list[ZstdFrame], split_bytes: int) -> list[tuple[int, int]]:
    """Runs of whole frames ``[(compressed start, compressed end)]`` covering every
    frame, cut where the running decompressed size (``frame_weight``) first
    reaches ``total * i / n`` for ``n = ceil(total / split_bytes)`` (at most one
    run per frame).  One run: the file does not split."""
    weights = [frame_weight(f) for f in frames]
    total = sum(weights)
    count = max(1, min(-(-total // split_bytes), len(frames)))
    if count == 1:
        return [(frames[0].start, frames[-1].end)] if frames else []
    cuts, running, target = [0], 0, 1
    for i, weight in enumerate(weights[:-1]):
        running += weight
        if target < count and running * count >= total * target:
            cuts.append(i + 1)
            target = running * count // total + 1
    cuts.append(len(frames))
    return [(frames[a].start, frames[b - 1].end) for a, b in zip(cuts, cuts[1:])]


def plan_splits(paths: list[str], split_bytes: int | None = None) -> dict:
    """``{file index: [(start, end), ...]}`` of the files that split (two ranges or
    more): byte ranges of uncompressed JSON Lines above ``split_bytes``; runs of
    frames (compressed offsets) of zstd files above ``split_bytes / 4``
    compressed that hold more than ``split_bytes`` in several frames.  Raises
    ``InputError`` naming a zstd file so planned that is not a zstd stream or
    is cut short."""
    split_bytes = split_bytes or SPLIT_BYTES
    plans = {}
    for index, info in enumerate(input_files(paths)):
        size = info["bytes"] or 0
        if is_splittable(info["path"]) and size > split_bytes:
            plans[index] = split_ranges(size, split_bytes)
        elif is_frame_splittable(info["path"]) and size * ZSTD_RATIO > split_bytes:
            ranges = plan_frames(zstd_frames(info["path"]), split_bytes)
            if len(ranges) > 1:
                plans[index] = ranges
    return plans


def is_frame_range(path: str) -> bool:
    """Are the ranges of this (split) file runs of zstd frames, not byte ranges?"""
    return codec_of(path) == "zstd"


def _open(path):
    try:
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as err:  # noqa: BLE001
        raise InputError(path, f"cannot open: {_one_line(err)}") from None


def count_lines(path: str, start: int, end: int, size: int) -> int:
    """Lines starting in ``[start, end)`` of a file of ``size`` bytes: position 0, and
    every position after a newline, short of the end of the file."""
    count = 1 if start == 0 and size > 0 else 0
    lo, hi = max(start - 1, 0), min(end - 1, size - 1)   # newlines at q: q + 1 in range
    if hi <= lo:
        return count
    with _open(path) as f:
        f.seek(lo)
        left = hi - lo
        while left > 0:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise InputError(path, f"ended at byte {hi - left}, expected {size} bytes "
                                 "(it changed while the job was reading it?)")
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count


def count_frame_lines(path: str, start: int, end: int) -> FrameLines:
    """The ``FrameLines`` of the zstd frames at compressed bytes ``[start, end)``
    (decompressed, counted, not held); their stream end checked."""
    newlines = size = 0
    last = b""
    with CheckedTextStream(path, window=(start, end)) as stream:
        while chunk := stream.read(_CHUNK):
            newlines += chunk.count(b"\n")
            size += len(chunk)
            last = chunk[-1:]
    ends_line = last == b"\n"
    return FrameLines(newlines - ends_line, size, ends_line)


def range_numbers(counts: dict, index: int, start: int) -> tuple[int, int, bool]:
    """``(first line, lines, inside_line)`` of the range of file ``index`` starting
    at ``start``, from ``counts`` ``{(file index, range start): count}`` of every
    range of the file: lines starting in the range (an int, byte ranges) or a
    ``FrameLines`` (zstd ranges: a range holds a line start at its first byte
    unless the last byte before it, in the nearest earlier range holding bytes,
    is not a newline, and one after each newline short of its last byte)."""
    first, at_line_start = 1, True
    for (i, s), count in sorted(counts.items()):
        if i != index or s > start:
            continue
        if isinstance(count, int):
            lines, inside = count, False
        else:
            count = FrameLines(*count)
            lines = (1 if count.size and at_line_start else 0) + count.newlines
            inside = not at_line_start
            if count.size:
                at_line_start = count.ends_line
        if s == start:
            return first, lines, inside
        first += lines
    raise KeyError(f"no range of file {index} starts at {start}")


class RangeReader:
    """A binary stream of the lines starting in ``[start, end)`` of a file (see the
    module docstring); ``digest`` (xxh3-64) is fed exactly the bytes ``[start, end)``."""

    def __init__(self, path: str, start: int, end: int):
        self.path, self.start, self.end = path, start, end
        self.digest = xxhash.xxh3_64()
        self.file = _open(path)
        self.pos = max(start - 1, 0)
        self.file.seek(self.pos)
        self.need_start = start > 0   # still skipping the line begun before start
        self.lines_over = False
        self.done = False

    def read(self, size: int = _CHUNK) -> bytes:
        while not self.done:
            chunk = self.file.read(max(size, 1))
            if not chunk:
                self.done = True
                if self.pos < self.end:
                    raise InputError(self.path, f"ended at byte {self.pos}, before {self.end} "
                                     "(it changed while the job was reading it?)")
                return b""
            first, self.pos = self.pos, self.pos + len(chunk)
            lo, hi = max(self.start, first) - first, min(self.end, self.pos) - first
            if hi > lo:
                self.digest.update(chunk[lo:hi])
            if self.lines_over:   # past the last owned line: reading on for the digest
                self.done = self.pos >= self.end
                continue
            begin = 0
            if self.need_start:
                cut = chunk.find(b"\n")
                if cut < 0 or first + cut + 1 >= self.end:
                    # no line starts in the range (yet, or at all once end is passed)
                    if cut >= 0 or self.pos >= self.end:
                        self.lines_over = True
                        self.done = self.pos >= self.end
                    continue
                self.need_start, begin = False, cut + 1
            stop = chunk.find(b"\n", max(begin, self.end - 1 - first))
            if stop >= 0:   # the newline ending the last line that starts before end
                self.done = True   # (stop >= end - 1: the digest has its range)
                return chunk[begin:stop + 1]
            if begin < len(chunk):
                return chunk[begin:]
        return b""

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class FrameRangeReader:
    """A binary stream of the lines starting in the decompressed bytes of the zstd
    frames at compressed bytes ``[start, end)`` of a file (see the module
    docstring); ``digest`` (xxh3-64) is fed exactly those decompressed bytes.

    ``inside_line``: the frames begin inside a line begun before them, whose
    tail (to the first newline) is skipped.  The last owned line is read past
    ``end``, decompressing the following frames until its newline or the end
    of the file.  Faults (a frame cut short, frames not ending at ``end``, a
    corrupt block) are ``InputError``s naming the file.
    """

    def __init__(self, path: str, start: int, end: int, inside_line: bool):
        self.path, self.start, self.end = path, start, end
        self.digest = xxhash.xxh3_64()
        self.stream = CheckedTextStream(path, window=(start, end))
        self.tail = None
        self.skipping = inside_line   # still skipping the line begun before start
        self.open_line = False        # what was delivered ends inside a line
        self.state = "own"            # own -> tail (the last line past end) -> done

    def read(self, size: int = _CHUNK) -> bytes:
        size = max(size, 1)
        while self.state == "own":
            chunk = self.stream.read(size)
            if not chunk:
                self.state = "tail" if self.open_line else "done"
                break
            self.digest.update(chunk)
            if self.skipping:
                cut = chunk.find(b"\n")
                if cut < 0:
                    continue
                self.skipping, chunk = False, chunk[cut + 1:]
                if not chunk:
                    continue
            self.open_line = not chunk.endswith(b"\n")
            return chunk
        while self.state == "tail":
            if self.tail is None:
                self.tail = CheckedTextStream(self.path, window=(self.end, None))
            chunk = self.tail.read(size)
            if not chunk:
                self.state = "done"
                break
            cut = chunk.find(b"\n")
            if cut >= 0:
                self.state = "done"
                return chunk[:cut + 1]
            return chunk
        return b""

    def close(self):
        self.stream.close()
        if self.tail is not None:
            self.tail.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_range(path: str, start: int, end: int, inside_line: bool = False):
    """The reader of one range of a split file: ``FrameRangeReader`` for zstd,
    else ``RangeReader``."""
    if is_frame_range(path):
        return FrameRangeReader(path, start, end, inside_line)
    return RangeReader(path, start, end)


def count_range(path: str, start: int, end: int, size: int):
    """The counting pass over one range: ``count_lines`` (an int) or, for zstd,
    ``count_frame_lines`` (a ``FrameLines``)."""
    if is_frame_range(path):
        return count_frame_lines(path, start, end)
    return count_lines(path, start, end, size)


def combine_digests(hexes: list[str]) -> str:
    """A split file's digest from its ranges' digests, in range order."""
    return xxhash.xxh3_64(",".join(hexes).encode()).hexdigest()
