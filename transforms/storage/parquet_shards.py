"""Parquet shards for text stores (``--format parquet``): one schema per store, fixed
writer options, so the same records give the same bytes on every runner.

**Schema.**  The store's schema is inferred from every kept record before any
shard is written (``record_schema`` per record, ``merge`` across all; a
``CombineFn`` in ``WriteStore``), so every shard has the same schema and a
glob over the shards reads as one table.  Columns: the id field, the text
field, then every other top-level field sorted by name.  JSON -> Arrow:

=========================================  ======================================
JSON values seen in a field (nulls aside)  Arrow column
=========================================  ======================================
only ``null``                              ``null``
booleans                                   ``bool``
integers within int64                      ``int64``
integers and floats                        ``double`` (ints read back as floats)
strings                                    ``string``
arrays                                     ``list<merged element type>``
objects                                    ``struct<fields sorted by name>``
anything else (mixed kinds, integers       ``string`` holding each value's JSON text
beyond int64, only empty objects, a        (the column is listed in the manifest's
conflict inside)
                                           ``parquet.json_columns``; ``ReadStore``
                                           decodes it back)
=========================================  ======================================

A field a record lacks is ``null`` in its row (Parquet has no "absent").  So a
Parquet store's records read back (``shard_lines``; ``ReadStore``) with every
column in schema order and nulls for missing fields; otherwise the values are
the stored JSON's.

**Bytes.**  pyarrow's writer with every option pinned (``WRITER_OPTIONS``):
zstd level 3 inside, dictionary encoding, statistics, format 2.6, data page
v1, 1 MiB pages, row groups of about ``ROW_GROUP_BYTES`` (32 MiB) of JSON
each; the file's only metadata is the Arrow schema and ``created_by``
(``parquet-cpp-arrow version X``): no time, no host.  The pyarrow version is
pinned in pyproject.toml's range; a rerun with another pyarrow version may
write other bytes (the manifest records ``created_by``).
"""
import io

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.core import exact_json
from transforms.core.parquet_json import row_json, table_rows

SUFFIX = ".parquet"
ROW_GROUP_BYTES = 32 << 20
WRITER_OPTIONS = dict(compression="zstd", compression_level=3, use_dictionary=True,
                      write_statistics=True, version="2.6", data_page_version="1.0",
                      data_page_size=1 << 20, write_page_index=False,
                      use_byte_stream_split=False, store_schema=True)
INT64 = (-(1 << 63), (1 << 63) - 1)
# An int64 beyond 2**53 has no exact float64: a column mixing one with floats cannot
# be a float column (pyarrow refuses it, and widening would change the value), so it
# is "wide_int" (stored int64), which merges with "int" but not with "float".
EXACT_IN_FLOAT = 1 << 53
WIDE_INT = "wide_int"
JSON = "json"


def load_record(line: bytes) -> dict:
    """A JSON line -> dict, integers of any size exact (``transforms.core.exact_json``)."""
    return exact_json.loads(line)


# ---------------------------------------------------------------- schema inference

def value_type(value):
    """The inferred type of one JSON value: ``"null"``, ``"bool"``, ``"int"``,
    ``"wide_int"`` (an int64 beyond +-2**53, which no float64 holds exactly),
    ``"float"``, ``"string"``, ``("list", t)``, ``("struct", ((name, t), ...))``
    or ``"json"`` (no one Arrow type)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            return JSON
        return "int" if -EXACT_IN_FLOAT <= value <= EXACT_IN_FLOAT else WIDE_INT
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        element = "null"
        for item in value:
            element = merge(element, value_type(item))
        return ("list", element)
    if isinstance(value, dict):
        return ("struct", tuple(sorted((k, value_type(v)) for k, v in value.items())))
    return JSON


def merge(a, b):
    """The narrowest type holding both (commutative and associative; ``"json"`` absorbs)."""
    if a == b:
        return a
    if a == "null":
        return b
    if b == "null":
        return a
    if JSON in (a, b):
        return JSON
    if {a, b} == {"int", "float"}:
        return "float"
    if {a, b} == {"int", WIDE_INT}:
        return WIDE_INT
    if {a, b} == {WIDE_INT, "float"}:
        return JSON
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0]:
        if a[0] == "list":
            return ("list", merge(a[1], b[1]))
        fields = dict(a[1])
        for name, kind in b[1]:
            fields[name] = merge(fields.get(name, "null"), kind)
        return ("struct", tuple(sorted(fields.items())))
    return JSON


def record_schema(record: dict) -> dict:
    """``{field: type}`` of one record."""
    return {name: value_type(value) for name, value in record.items()}


def merge_schemas(a: dict, b: dict) -> dict:
    out = dict(a)
    for name, kind in b.items():
        out[name] = merge(out.get(name, "null"), kind)
    return out


def _has_json(kind) -> bool:
    if kind == JSON:
        return True
    if isinstance(kind, tuple):   # Parquet cannot hold a struct without fields
        return _has_json(kind[1]) if kind[0] == "list" else not kind[1] or any(
            _has_json(k) for _, k in kind[1])
    return False


def _arrow(kind) -> pa.DataType:
    if isinstance(kind, tuple):
        if kind[0] == "list":
            return pa.list_(_arrow(kind[1]))
        return pa.struct([(name, _arrow(k)) for name, k in kind[1]])
    return {"null": pa.null(), "bool": pa.bool_(), "int": pa.int64(), WIDE_INT: pa.int64(), "float": pa.float64(),
            "string": pa.string(), JSON: pa.string()}[kind]


def store_schema(fields: dict, first: tuple = ()) -> dict:
    """The store's schema record (for the manifest): ``columns`` ``[{name, type}]``
    (``first`` fields first, the rest by name), ``json_columns`` (names stored as JSON
    text) and ``arrow`` (the Arrow schema as text)."""
    fields = {**{n: "string" for n in first}, **fields}   # an empty store still has them
    names = list(first) + sorted(n for n in fields if n not in first)
    json_columns = [n for n in names if _has_json(fields[n])]
    schema = arrow_schema({"columns": [{"name": n, "type": fields[n]} for n in names],
                           "json_columns": json_columns})
    return {"columns": [{"name": n, "type": str(schema.field(n).type)} for n in names],
            "json_columns": json_columns,
            "inferred": [{"name": n, "type": fields[n]} for n in names],
            "arrow": schema.to_string(show_schema_metadata=False)}


def arrow_schema(schema: dict) -> pa.Schema:
    """A store schema record -> the Arrow schema its shards are written with."""
    json_columns = set(schema["json_columns"])
    return pa.schema([(c["name"], pa.string() if c["name"] in json_columns
                       else _arrow(_untuple(c["type"]))) for c in schema.get(
                           "inferred", schema["columns"])])


def _untuple(kind):
    """Types come back from the manifest's JSON as lists: make them tuples again."""
    if isinstance(kind, list):
        if kind[0] == "list":
            return ("list", _untuple(kind[1]))
        return ("struct", tuple((name, _untuple(k)) for name, k in kind[1]))
    return kind


# ---------------------------------------------------------------- shards

def shard_bytes(lines: list[bytes], schema: dict, raw_bytes: int) -> bytes:
    """Sorted JSON lines of one shard -> the Parquet file's bytes."""
    arrow = arrow_schema(schema)
    json_columns = set(schema["json_columns"])
    columns = {name: [] for name in arrow.names}
    for line in lines:
        record = load_record(line)
        for name, values in columns.items():
            value = record.get(name)
            if name in json_columns and value is not None:
                value = exact_json.dumps(value).decode()
            values.append(value)
    table = pa.table({name: pa.array(values, arrow.field(name).type)
                      for name, values in columns.items()}, schema=arrow)
    groups = max(1, -(-raw_bytes // ROW_GROUP_BYTES))
    rows_per_group = max(1, -(-len(lines) // groups))
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=rows_per_group, **WRITER_OPTIONS)
    return out.getvalue()


def shard_lines(stored: bytes, json_columns=()) -> bytes:
    """A Parquet shard's bytes -> its records as JSON Lines (newline-terminated)."""
    table = pq.read_table(pa.BufferReader(stored), use_threads=False)
    out = []
    for row in table_rows(table):
        for name in json_columns:   # the JSON text goes back in as it is
            if row.get(name) is not None:
                row[name] = orjson.Fragment(row[name])
        out.append(row_json(row) + b"\n")
    return b"".join(out)


def created_by() -> str:
    return f"parquet-cpp-arrow version {pa.__version__}"


def run_schema(lines) -> dict:
    """``{field: type}`` merged over JSON lines."""
    fields: dict = {}
    for line in lines:
        fields = merge_schemas(fields, record_schema(load_record(line)))
    return fields
