"""Spill files: bucketed records and shard runs written to storage instead of
through the runner's shuffle (see DESIGN.md, 'Bounded elements').

``Spill``/``SpillWriter``: near-dedup's band entries and signatures, bucketed;
runs: a shard's kept lines taken from one input file, one lz4 frame (content
size stored), read back by ``WriteStore``, whose shard writer deletes a shard's
runs once the shard is committed to its replicas (``shard_written``,
``delete_runs``; a sidecar says the shard is written, for a retried bundle).
"""
import os

import lz4.frame
import orjson
import xxhash
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.core.ids import id_order_key, id_sort_keys
from transforms.core.records import Run
from transforms.storage.commit import write_atomically
from transforms.storage.files import file_size, join, read_bytes

# Spill runs: lz4 frames at the default (fast) level: ~2.2x on JSON text, compressed
# ~1.4x and read back ~1.25x faster than zstd-1 (BENCHMARKS.md, "lz4 runs deleted
# shard by shard"); their bigger size is bounded by deleting each shard's runs
# once it is written.
RUN_SUFFIX = ".jsonl.lz4"
WRITTEN_SUFFIX = ".written.json"
# Largest decompressed bucket body of a part file a compressed Spill reads back (a body
# holds at most a writer's flush bytes plus one record).
MAX_BODY_BYTES = 1 << 30


class InputChanged(RuntimeError):
    """An input file differs between the two passes over it."""


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
    finished (give them the writers' output as a side input).  With
    ``zstd_level``, each bucket's body in a part file is one zstd frame
    (the index gives the compressed range).
    """

    HEADER = 4
    ENTRY = 20

    def __init__(self, spill_dir: str, name: str, zstd_level: "int | None" = None):
        self.spill_dir = spill_dir
        self.name = name
        self.zstd_level = zstd_level
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
                data = f.read(length)
            if self.zstd_level is not None:
                data = zstandard.ZstdDecompressor().decompress(
                    data, max_output_size=MAX_BODY_BYTES)
            data = memoryview(data)
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
        return {"spill_dir": self.spill_dir, "name": self.name,
                "zstd_level": self.zstd_level, "_indexes": None}


class SpillWriter:
    """Appends records to a ``Spill``'s buckets for one input file; writes a part
    file beyond ``flush_bytes`` buffered, and on ``close()``.  ``unit`` tells apart
    the writers of one file's units of work (a split file): unit ``u``'s parts are
    numbered from ``u * 100000``."""

    def __init__(self, spill: Spill, file_index: int, flush_bytes: int, unit: int = 0):
        self.spill = spill
        self.unit = unit
        self.file_index = file_index
        self.flush_bytes = flush_bytes
        self.buffers: dict[int, list] = {}
        self.buffered = 0
        self.parts = 0

    def add(self, bucket: int, record: bytes) -> None:
        # One bytearray per bucket: a record costs its bytes, not a bytes object each
        # (~40 bytes more, for band entries of ~20).
        body = self.buffers.get(bucket)
        if body is None:
            body = self.buffers[bucket] = bytearray()
        body += len(record).to_bytes(4, "little")
        body += record
        self.buffered += len(record) + 4
        if self.buffered >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.buffers:
            return
        buckets = sorted(self.buffers)
        bodies = [self.buffers[b] for b in buckets]
        if self.spill.zstd_level is not None:
            compressor = zstandard.ZstdCompressor(level=self.spill.zstd_level,
                                                  write_content_size=True)
            bodies = [compressor.compress(bytes(body)) for body in bodies]
        offset = Spill.HEADER + Spill.ENTRY * len(buckets)
        index = [len(buckets).to_bytes(4, "little")]
        for bucket, body in zip(buckets, bodies):
            index.append(bucket.to_bytes(4, "little") + offset.to_bytes(8, "little")
                         + len(body).to_bytes(8, "little"))
            offset += len(body)
        path = self.spill.path(self.file_index, self.unit * 100000 + self.parts)
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
            out.write(b"".join(index))
            for body in bodies:
                out.write(body)
        self.parts += 1
        self.buffers, self.buffered = {}, 0

    close = flush


def run_order(doc: tuple, by_order: bool) -> tuple:
    """Sort key of a run's ``(order, id, line)``: the order inside a shard.

    Range-ordered runs (``by_order``) follow the range key, then the id;
    the others the id alone; ids compare in the id order (``transforms.core.ids``:
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


def sorted_docs(docs: list, by_order: bool) -> list:
    """``docs`` (``(order, id, line)``) sorted by ``run_order``; the ids' keys are
    computed once for the list (``id_sort_keys``: ints when every id is an integer),
    with no Python call per document."""
    keys = id_sort_keys([d[1] for d in docs])
    lines = [d[2] for d in docs]
    if by_order:
        ranked = sorted(zip([d[0] for d in docs], keys, lines, range(len(docs))))
    else:
        ranked = sorted(zip(keys, lines, range(len(docs))))
    return [docs[r[-1]] for r in ranked]


def _write_runs(buffers: dict, spill_dir: str, prefix: str, by_order: bool):
    """``{shard: [(order, id, line)]}`` -> a run file per shard (its lines sorted by
    ``run_order``, newline-joined, one lz4 frame with its content size) ->
    ``(shard, Run)``.  Names are fixed by ``prefix`` and the shard, so a retried
    bundle overwrites its own runs."""
    for shard, docs in buffers.items():
        docs = sorted_docs(docs, by_order)  # the store's order
        raw = b"\n".join(line for _, _, line in docs)
        path = join(spill_dir, f"{prefix}-{shard[0]}-shard{shard[1]:05d}{RUN_SUFFIX}")
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
            out.write(lz4.frame.compress(raw, store_size=True))
        yield shard, Run([order for order, _, _ in docs] if by_order else [],
                         [doc_id for _, doc_id, _ in docs], path, len(raw))


def _run_bytes(run: Run) -> bytes:
    """A run file's decompressed bytes; ``InputChanged`` unless it is one lz4 frame
    whose content is ``run.raw_bytes`` long (never more is decompressed)."""
    data = read_bytes(run.path)
    try:
        size = lz4.frame.get_frame_info(data)["content_size"]
        if size != run.raw_bytes:
            raise InputChanged(f"run {run.path} holds a frame of {size} bytes, "
                               f"expected {run.raw_bytes}")
        decompressor = lz4.frame.LZ4FrameDecompressor()
        raw = decompressor.decompress(data, max_length=run.raw_bytes)
        if not decompressor.eof or decompressor.unused_data:
            raise InputChanged(f"run {run.path} does not hold exactly one frame of "
                               f"{run.raw_bytes} bytes")
    except RuntimeError as err:   # lz4's errors on a damaged or foreign file
        if isinstance(err, InputChanged):
            raise
        raise InputChanged(f"run {run.path} is not a readable lz4 frame: {err}") from err
    return raw


def run_lines(run: Run) -> list:
    """The lines of a run (bytes, no newline), in the run's order; ``InputChanged``
    when the file does not hold what the ``Run`` says (another size, line count,
    not one lz4 frame)."""
    raw = _run_bytes(run)
    lines = raw.split(b"\n")
    if len(raw) != run.raw_bytes or len(lines) != len(run.ids):
        raise InputChanged(f"run {run.path} holds {len(lines)} lines ({len(raw)} bytes), "
                           f"expected {len(run.ids)} ({run.raw_bytes} bytes)")
    return lines


def run_docs(run: Run) -> "iter[tuple]":
    """The documents of a run: ``(id, line)``, or ``(order, id, line)`` when the
    run is range-ordered (has orders)."""
    lines = run_lines(run)
    if run.orders:
        return zip(run.orders, run.ids, lines)
    return zip(run.ids, lines)


def shard_lines(runs) -> list:
    """The lines of one shard's runs (``Run``s; None, a shard's marker, is skipped) in
    the store's order (``shard_doc_order``): by id (``id_sort_keys``), or by order then
    id when the runs are range-ordered; the line breaks a tie.  Each run is sorted
    already, so the sort merges them (no tuple per document is built but the sort's)."""
    orders, ids, lines = [], [], []
    for run in runs:
        if run is None:
            continue
        lines.extend(run_lines(run))
        ids.extend(run.ids)
        orders.extend(run.orders)
    keys = id_sort_keys(ids)
    if orders:
        if len(orders) != len(ids):
            raise ValueError("the runs of one shard mix range-ordered and id-ordered ones")
        return [doc[2] for doc in sorted(zip(orders, keys, lines))]
    return [doc[1] for doc in sorted(zip(keys, lines))]


def written_path(spill_dir: str, shard: tuple) -> str:
    """Where the shard writer records that ``shard`` (``(partition, index, count)``)
    is committed: ``<spill_dir>/<partition>-shard<index>-of-<count>.written.json``."""
    partition, index, count = shard
    return join(spill_dir, f"{partition}-shard{index:05d}-of-{count:05d}{WRITTEN_SUFFIX}")


def runs_digest(runs) -> str:
    """What a shard's runs are (their file names, sizes and ids, in any order; None
    markers skipped) as 32 hex digits: a retried writer is given the same runs, a later
    run of the same transform (same spill folder) other ones unless its input is the same."""
    described = sorted((run.path.rsplit("/", 1)[-1], run.raw_bytes, list(run.ids))
                       for run in runs if run is not None)
    return xxhash.xxh3_128_hexdigest(orjson.dumps(described))


def read_sidecar(spill_dir: str, shard: tuple) -> "tuple[dict, str | None] | None":
    """``(entry, runs digest)`` a writer recorded for ``shard`` (``write_written``), or
    None when there is none.  ValueError naming the file when it cannot be read as one
    (e.g. cut short by a crash of the machine)."""
    path = written_path(spill_dir, shard)
    if file_size(path) is None:
        return None
    try:
        recorded = orjson.loads(read_bytes(path))
        return recorded["entry"], recorded.get("runs")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a shard writer's record ({err})") from None


def read_written(spill_dir: str, shard: tuple) -> "dict | None":
    """The shard entry a writer recorded for ``shard`` (``write_written``), or None."""
    recorded = read_sidecar(spill_dir, shard)
    return None if recorded is None else recorded[0]


def write_written(spill_dir: str, shard: tuple, entry: dict, runs=None) -> None:
    """Record (atomically) that ``shard`` is committed: its manifest entry and the
    ``runs_digest`` of the runs it was written from (``runs``; None: not recorded)."""
    write_atomically(written_path(spill_dir, shard), orjson.dumps(
        {"entry": entry, "runs": None if runs is None else runs_digest(runs)}))


def delete_runs(runs) -> int:
    """Delete the files of ``runs`` (``Run``s; None skipped) -> how many were named.  One
    batched delete (no look-up per file: on gs:// or s3:// that is a request each); a
    file already gone (another attempt deleted it) is fine."""
    paths = sorted({run.path for run in runs if run is not None})
    _delete_existing(paths)
    return len(paths)


def runs_present(runs) -> bool:
    """Every file of ``runs`` (None skipped) still exists."""
    return all(FileSystems.exists(run.path) for run in runs if run is not None)


def _delete_existing(paths: list) -> None:
    """Delete ``paths``; one already gone (deleted by another attempt) is fine."""
    if not paths:
        return
    try:
        FileSystems.delete(paths)
    except Exception:  # noqa: BLE001 - BeamIOError: retry one by one, missing ones skipped
        for path in paths:
            if FileSystems.exists(path):
                FileSystems.delete([path])


def delete_spill(spill_dir: str) -> None:
    """Remove a spill folder: what is left of its runs (the shard writer deletes each
    shard's once it is written) and the writers' sidecars (once the store's manifest
    is written, or after a failed run).  A folder already gone is fine."""
    found = [m.path for r in FileSystems.match([join(spill_dir, "*")]) for m in r.metadata_list]
    _delete_existing(found)
    if "://" not in spill_dir and os.path.isdir(spill_dir):
        os.rmdir(spill_dir)
