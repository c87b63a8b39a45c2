"""The typed records that cross the job's transforms, and the bounds on their batches.

Pure Python (no Beam): ``transforms.processing.refs`` registers Beam's
``RowCoder`` for ``DocRef`` and ``Digest`` when it is imported.
"""
import pickle
import sys
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Iterable, NamedTuple, Optional, Tuple

NO_VALUE = b""        # a DocRef field the job does not use


class DocRef(NamedTuple):
    """One document by reference: what every step after the scan needs.

    ``id``: record id; ``key``: 16-byte xxh3-128 of the normalised text
    (``transforms.core.hashing.text_key``); ``file``: index into the scan's sorted
    file list; ``line``: line number from 1; ``size``: bytes the record takes
    in a JSON Lines shard (stored line + newline); ``reparse``: the stored line
    was rewritten with an assigned id (pass 2 parses it again; every other
    line is copied as read); ``signed``: the scan wrote a MinHash signature
    and band keys for it (near-dedup on and the text has shingles); ``partition_value``: canonical JSON of the ``--partition_by``
    field (``b"null"`` when absent; ``b""`` when not partitioning);
    ``range_key``: JSON of the ``--range_by`` key (``b"null"`` when missing;
    ``b""`` when unused).  Filter decisions of the scan (only kept documents
    become refs): ``redacted``: PII redaction changed the text, so the stored
    line and the text key are of the redacted text (pass 2 redacts again,
    deterministically); ``lang``/``lang_score``: the detected language and its
    score, written into the stored record's ``metadata`` (``""``/``0.0`` when
    not recorded).  ``size`` is that of the line as stored, after both edits.
    ``int_id``: the input's id is a JSON integer (``id`` holds its decimal digits),
    else a string (a string of digits too) or the default ``<file>:<line>``; what
    the removed-records audit needs to give back the input's id value
    (``Removal``).
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
    redacted: bool = False
    lang: str = ""
    lang_score: float = 0.0
    int_id: bool = False


def typed_id(doc_id: str, int_id: bool):
    """An id as the input gave it: ``int`` (any size) when ``int_id``, else the str."""
    return int(doc_id) if int_id else doc_id


class Removal(NamedTuple):
    """One document the job removed, for the removed-records audit (``--write_removed``;
    ``transforms.storage.removed`` writes them).

    ``file``: index into the scan's sorted file list; ``line``: its line number
    from 1 (a Parquet row number); ``id``/``int_id``: its id as ``DocRef.id`` /
    ``DocRef.int_id``; ``reason``: ``"<filter>.<rule>"`` (``dedup.exact_duplicate``,
    ``near_dedup.near_duplicate``, ``gopher_quality.short_doc``...); ``detail``:
    free text; ``kept``/``kept_int``: the id of the document kept in its place
    (dedup; None when nothing was kept for it); ``jaccard``: near dedup's Jaccard
    with the kept document (None otherwise)."""
    file: int
    line: int
    id: str
    int_id: bool
    reason: str
    detail: str
    kept: Optional[str] = None
    kept_int: bool = False
    jaccard: Optional[float] = None


class Digest(NamedTuple):
    """xxh3-64 (hex) of one input file's decompressed bytes."""
    file: int
    digest: str


class ScannedRange(NamedTuple):
    """A unit of work of an input file as the scan read it; pass 2 re-reads the file
    unit by unit with these.  JSON Lines split by bytes
    (``transforms.processing.splits``): the byte range ``[start, end)``, owning the
    ``lines`` lines starting in it, numbered from ``first_line``; ``digest`` is
    the xxh3-64 (hex) of exactly its bytes.  A zstd file split by frames (same
    module): the frames at compressed bytes ``[start, end)``, owning the lines
    that start in their decompressed bytes; ``digest`` is the xxh3-64 of those
    decompressed bytes; ``inside_line``: they begin inside a line begun in an
    earlier range (their bytes up to the first newline belong to it).  Parquet
    (``transforms.processing.parquet``): row groups ``[start, end)``, holding
    rows ``first_line .. first_line + lines - 1`` of the file; ``digest`` is the
    file's footer digest."""
    file: int
    start: int
    end: int
    first_line: int
    lines: int
    digest: str
    inside_line: bool = False


class FrameLines(NamedTuple):
    """The line count of a run of zstd frames (``transforms.processing.splits``),
    from which every range's first line number follows: ``newlines`` in its
    decompressed bytes, its last byte excluded; ``size``: its decompressed bytes;
    ``ends_line``: its last byte is a newline."""
    newlines: int
    size: int
    ends_line: bool


class Pick(NamedTuple):
    """A kept line to copy from its file into a shard's run."""
    line: int
    size: int
    reparse: bool
    order: tuple      # the record's order key in its partition (sharding.ShardRecord.order)
    id: str
    shard: Tuple[str, int, int]  # (partition, shard index, shard count)
    redacted: bool = False  # redact the text again (DocRef.redacted)
    lang: str = ""          # write metadata.lang / lang_score (DocRef.lang)
    lang_score: float = 0.0


class Run(NamedTuple):
    """Lines of one shard taken from one file, sorted by ``(id, line)`` or, for
    range-ordered stores, ``(order, id, line)``; ``path`` holds them as one lz4 frame,
    newline-separated; ``raw_bytes`` is their decompressed size."""
    orders: list
    ids: list
    path: str
    raw_bytes: int


class Packed(NamedTuple):
    """A batch of records (refs, id keys, picks, shard records) as one bytes value,
    for the steps that carry every document (exact dedup, the near-dedup drop,
    the shard plan, the re-read by file).  The in-process runners hold a grouped
    value decoded until its group is read: as Python objects a ref takes
    ~300-500 bytes, as part of a packed batch ~50.  ``blob``: the batch
    pickled (protocol 5) *by columns* (``pack``): a list of NamedTuples of one
    class is stored as the class and one list per field (recursively, so a
    ``ShardRecord``'s ``DocRef`` payloads are columns too), of str, bytes, int,
    float, bool, None and tuples only."""
    blob: bytes


_ROWS = 0      # a plain list of values
_COLUMNS = 1   # NamedTuples of one class, by field


_BY_NAME: dict = {}


def _is_record_class(cls) -> bool:
    """A NamedTuple class that pickle can name (importable by module and qualified
    name).  Beam's schema-generated classes (``apache_beam.typehints.schemas.
    BeamSchema_<uuid>``, what a RowCoder decodes into on some runners, e.g. the
    Flink and Spark clusters) are not: their lists keep the plain row form, whose
    instances pickle through Beam's own ``__reduce__``."""
    known = _BY_NAME.get(cls)
    if known is None:
        known = False
        if issubclass(cls, tuple) and hasattr(cls, "_fields"):
            found = sys.modules.get(cls.__module__)
            for part in cls.__qualname__.split("."):
                found = getattr(found, part, None)
            known = found is cls
        _BY_NAME[cls] = known
    return known


_PLAIN = (str, bytes, int, float, bool)
_PLAIN_FIELDS: dict = {}


def _plain_fields(cls) -> tuple:
    """Per field of a NamedTuple class: True when it is annotated ``str``, ``bytes``,
    ``int``, ``float`` or ``bool``.  Such a column is stored as rows without looking
    at its values' types (``_columns``' scan of every value finds no records there);
    a value of another type in it is still pickled whole, so the rows form is right
    whatever the column holds: only the scan is skipped."""
    plain = _PLAIN_FIELDS.get(cls)
    if plain is None:
        hints = getattr(cls, "__annotations__", {})
        plain = _PLAIN_FIELDS[cls] = tuple(hints.get(f) in _PLAIN for f in cls._fields)
    return plain


def _column(values: list, plain: bool) -> tuple:
    return (_ROWS, values) if plain else _columns(values)


def _columns(items: list) -> tuple:
    """A list -> ``(_COLUMNS, class, count, [column, ...])`` when it is NamedTuples of
    one class (each column encoded the same way), else ``(_ROWS, items)``."""
    if items:
        types = set(map(type, items))
        if len(types) == 1:
            cls = types.pop()
            if _is_record_class(cls) and cls._fields:
                return _COLUMNS, cls, len(items), [
                    _column(list(map(itemgetter(i), items)), plain)
                    for i, plain in enumerate(_plain_fields(cls))]
    return _ROWS, items


def _rows(encoded: tuple) -> list:
    if encoded[0] == _ROWS:
        return encoded[1]
    _, cls, _, columns = encoded
    # tuple.__new__ builds each record in C (no Python __new__ call per record)
    return list(map(tuple.__new__, repeat(cls), zip(*map(_rows, columns))))


def pack(records: Iterable) -> Packed:
    """A list of records -> ``Packed`` (``unpack`` gives the list back, equal).

    Pickled by columns (see ``Packed``): pickling NamedTuples one by one calls
    Python code twice per record (``__getnewargs__``, then ``__new__`` to load),
    the largest cost of moving refs between stages; columns of plain values
    pickle and load in C."""
    return Packed(pickle.dumps(_columns(list(records)), protocol=5))


def unpack(batch) -> list:
    """``Packed`` -> its list of records; a plain list (a batch not packed) as is.

    Checks the ``blob`` field, not the class: a worker's RowCoder may decode a
    ``Packed`` into a schema-generated class of the same fields.  The blob is
    only ever one ``pack`` made in an earlier stage of the same job (an element
    between transforms, as trusted as Beam's own pickled elements); input files
    and stores are never unpickled (arrays are loaded with allow_pickle=False)."""
    blob = getattr(batch, "blob", None)
    if isinstance(blob, bytes):
        return _rows(pickle.loads(blob))
    if isinstance(batch, list):
        return batch
    raise TypeError(f"expected Packed or a list of records, got {type(batch).__name__}")


class Columns:
    """A ``Packed`` batch of NamedTuples of one class, read by field without building
    the records (``unpack_columns``): ``columns["id"]`` is the list of the batch's ids
    (records rebuilt only for a field that holds records, e.g. a ``ShardRecord``'s
    payload); ``columns.nested("payload")`` the columns of such a field (None when it
    is not records of one class); ``columns.take(indices)`` the records at ``indices``
    (ints into the batch), packed, as ``pack([records[i] for i in indices])`` would."""

    def __init__(self, encoded: tuple):
        _, self.cls, self.count, self._encoded = encoded
        self._index = {name: i for i, name in enumerate(self.cls._fields)}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, name: str) -> list:
        return _rows(self._encoded[self._index[name]])

    def nested(self, name: str) -> "Columns | None":
        encoded = self._encoded[self._index[name]]
        return Columns(encoded) if encoded[0] == _COLUMNS else None

    def take(self, indices: list) -> Packed:
        return Packed(pickle.dumps(_take((_COLUMNS, self.cls, self.count, self._encoded),
                                         indices), protocol=5))


def _take(encoded: tuple, indices: list) -> tuple:
    """The encoded items at ``indices``, every column cut by one getter: ``itemgetter``
    (items taken in C) for two or more, a one-item list for one, nothing for none."""
    if len(indices) > 1:
        take = itemgetter(*indices)
    else:
        def take(items):
            return [items[i] for i in indices]
    return _take_with(encoded, take, len(indices))


def _take_with(encoded: tuple, take, count: int) -> tuple:
    if encoded[0] == _ROWS:
        return _ROWS, list(take(encoded[1]))
    _, cls, _, columns = encoded
    return _COLUMNS, cls, count, [_take_with(c, take, count) for c in columns]


def unpack_columns(batch) -> "Columns | None":
    """A ``Packed`` batch stored by columns -> its ``Columns``; None for a plain list
    or a batch in the row form (``unpack`` those).  Unpickles only what ``unpack``
    does: a ``pack`` of an earlier stage of the same job, never input or store bytes."""
    blob = getattr(batch, "blob", None)
    if not isinstance(blob, bytes):
        return None
    encoded = pickle.loads(blob)
    return Columns(encoded) if encoded[0] == _COLUMNS else None


def pack_columns(cls, columns: list) -> Packed:
    """Records of NamedTuple class ``cls`` given by field (one list per field, in field
    order, all of one length; a field's values may be records themselves) -> ``Packed``,
    equal to ``pack`` of the records, without building them.  ValueError: not one
    column per field of ``cls``, or columns of unequal lengths (named)."""
    fields = getattr(cls, "_fields", None)
    if columns and fields is not None and len(columns) != len(fields):
        raise ValueError(f"pack_columns: {len(columns)} column(s) for the "
                         f"{len(fields)} field(s) of {cls.__name__}")
    lengths = [len(c) for c in columns]
    if len(set(lengths)) > 1:
        raise ValueError(f"pack_columns: columns of unequal lengths {lengths} for "
                         f"{cls.__name__}")
    count = lengths[0] if lengths else 0
    if not count:
        return pack([])
    plain = _plain_fields(cls) if fields is not None else (False,) * len(columns)
    return Packed(pickle.dumps((_COLUMNS, cls, count, [_column(list(c), p)
                                                       for c, p in zip(columns, plain)]),
                               protocol=5))


def ref_bytes(ref: DocRef) -> int:
    """Approximate encoded bytes of a ref (for the batch bound)."""
    return 48 + len(ref.id) + len(ref.partition_value) + len(ref.range_key) + len(ref.lang)


def _ref_sizes(refs: list) -> list:
    """``ref_bytes`` of each ref, computed inline (no call per ref)."""
    return [48 + len(r[0]) + len(r[7]) + len(r[8]) + len(r[10]) for r in refs]


def sized_chunks(records: Iterable, max_bytes: int, size_of=ref_bytes) -> "iter[tuple]":
    """``(batch, bytes)``: lists of consecutive records, each at most ``max_bytes`` by
    ``size_of`` (a record larger than the bound travels alone), with their total
    bytes.  Never yields an empty list."""
    if not isinstance(records, list):   # a stream: chunked as it comes
        batch, total = [], 0
        for record in records:
            size = size_of(record)
            if batch and total + size > max_bytes:
                yield batch, total
                batch, total = [], 0
            batch.append(record)
            total += size
        if batch:
            yield batch, total
        return
    sizes = _ref_sizes(records) if size_of is ref_bytes else list(map(size_of, records))
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if total + size > max_bytes and i > start:
            yield records[start:i], total
            start, total = i, 0
        total += size
    if start < len(records):
        yield records[start:], total


def chunked(records: Iterable, max_bytes: int, size_of=ref_bytes) -> "iter[list]":
    """Lists of consecutive records, each at most ``max_bytes`` by ``size_of``
    (a record larger than the bound travels alone).  Never yields an empty list."""
    for batch, _ in sized_chunks(records, max_bytes, size_of):
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
