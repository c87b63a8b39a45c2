"""Large JSON Lines files split into byte ranges, so one huge file does not serialise
the scan.

**What splits.**  Uncompressed JSON Lines (``.jsonl``, ``.ndjson``) larger
than ``SPLIT_BYTES`` (64 MiB): byte ranges ``[start, end)`` of about that size.
Compressed files (``.gz``, ``.zst``, ``.lz4``, ``.bz2``, ``.xz``) are read
whole, one task per file (a zstd file of several frames could be cut at frame
boundaries; not done).  Parquet files split by row groups
(``transforms.processing.parquet``).

**Lines.**  A range owns the lines that *start* inside it: it skips the tail
of a line begun before ``start`` and reads its last line past ``end`` to its
newline.  Line numbers stay exact: a cheap parallel pass counts each range's
line starts (``count_lines``: one ``bytes.count`` over the range, no
parsing), and a range's first line number is one plus the counts of the ranges
before it.  (Refs addressed by byte offset would spare that pass but change
what ``line`` means in refs, dead letters and default ids.)

**Pass 2.**  The re-read that copies kept lines into shard runs
(``transforms.processing.refs.ResolveRuns``) goes by the same ranges: a
kept line belongs to the range whose line numbers hold it (the scan's
``ScannedRange`` records: start, end, first line, lines, digest), and each
range holding a kept line is one task, a ``RangeReader`` from its first line
number.  So neither pass reads a split file in one task.

**Digest.**  Each range hashes exactly its bytes ``[start, end)`` (xxh3-64),
in pass 1 and again in pass 2, which compares the two per range: a range that
changed in between fails the run.  The file's lineage digest is xxh3-64 of
the ranges' hex digests joined by commas (``combine_digests``).  (For an
unsplit file the digest stays xxh3-64 of its bytes.)
"""
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.processing.io import InputError, _one_line, codec_of, input_files, is_text_input

SPLIT_BYTES = 64 << 20
_CHUNK = 4 << 20


def is_splittable(path: str) -> bool:
    """Uncompressed JSON Lines (the only text input read from the middle)."""
    return is_text_input(path) and codec_of(path) is None


def split_ranges(size: int, split_bytes: int) -> list[tuple[int, int]]:
    """``[(start, end)]`` of about ``split_bytes`` each covering ``0..size``."""
    count = max(1, -(-size // split_bytes))
    cuts = [size * i // count for i in range(count + 1)]
    return list(zip(cuts, cuts[1:]))


def plan_splits(paths: list[str], split_bytes: int | None = None) -> dict:
    """``{file index: [(start, end), ...]}`` of the files that split (two ranges or more)."""
    split_bytes = split_bytes or SPLIT_BYTES
    plans = {}
    for index, info in enumerate(input_files(paths)):
        if is_splittable(info["path"]) and (info["bytes"] or 0) > split_bytes:
            plans[index] = split_ranges(info["bytes"], split_bytes)
    return plans


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


def combine_digests(hexes: list[str]) -> str:
    """A split file's digest from its ranges' digests, in range order."""
    return xxhash.xxh3_64(",".join(hexes).encode()).hexdigest()
