"""Arrow values <-> the JSON a text record is stored as (pure: pyarrow and orjson, no Beam).

One mapping, used by Parquet input (a row becomes the JSON line the store
keeps) and by Parquet output (a store written as Parquet reads back as JSON
lines).  It is deterministic: the same row gives the same bytes on every
machine and runner (no time zone database, no locale, no pandas).

Arrow type -> JSON value (``row_json`` / ``table_lines``):

==========================================  =============================================
null                                         ``null``
bool                                         ``true`` / ``false``
int8..int64, uint8..uint64                   integer, exact
float16/32/64                                number: the shortest text that reads back as
                                             the same double (float32 is widened first:
                                             ``0.1f`` -> ``0.10000000149011612``);
                                             NaN and +-Infinity -> ``null`` (JSON has none)
string, large_string, string_view            string
binary, large_binary, fixed_size_binary      string: base64 (RFC 4648, standard alphabet,
                                             padded)
decimal128/256                               string of the exact decimal (``"1.20"``)
date32/64                                    ``"YYYY-MM-DD"``
time32/64                                    ``"HH:MM:SS[.fraction]"``, digits of its unit
timestamp                                    ``"YYYY-MM-DDTHH:MM:SS[.fraction]"`` (ISO 8601,
                                             digits of its unit: none, 3, 6 or 9); a
                                             zoned timestamp is given in UTC with ``Z``
duration                                     integer count of its unit
list, large_list, fixed_size_list            array
struct                                       object, fields in schema order
map                                          array of ``[key, value]`` pairs (keys of a
                                             map need not be strings)
dictionary                                   its value type's mapping
==========================================  =============================================

Object keys follow the schema's column order.  Parquet has no "absent":
a column a record lacks is ``null`` in it, and comes back as ``null``.
"""
import base64

import orjson
import pyarrow as pa
import pyarrow.compute as pc


def _default(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"no JSON mapping for {type(value).__name__}")


def _timestamp_text(array: pa.Array) -> pa.Array:
    """A timestamp array -> ISO 8601 strings (UTC with ``Z`` when zoned)."""
    unit, zoned = array.type.unit, array.type.tz is not None
    naive = array.cast(pa.timestamp(unit)) if zoned else array   # values are UTC already
    text = pc.strftime(naive, format="%Y-%m-%dT%H:%M:%S")
    if zoned:
        text = pc.binary_join_element_wise(text, pa.scalar("Z"), "")
    return text


def _needs_work(kind: pa.DataType) -> bool:
    if (pa.types.is_timestamp(kind) or pa.types.is_time(kind) or pa.types.is_decimal(kind)
            or pa.types.is_duration(kind) or pa.types.is_dictionary(kind)
            or pa.types.is_date64(kind) or pa.types.is_float16(kind)):
        return True
    if pa.types.is_struct(kind):
        return any(_needs_work(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or \
            pa.types.is_fixed_size_list(kind):
        return _needs_work(kind.value_type)
    if pa.types.is_map(kind):
        return _needs_work(kind.key_type) or _needs_work(kind.item_type)
    return False


def jsonable(array: pa.Array) -> pa.Array:
    """An Arrow array whose ``to_pylist`` holds only what orjson writes as the
    table above says (timestamps, times, decimals as strings; durations as ints)."""
    kind = array.type
    if not _needs_work(kind):
        return array
    if pa.types.is_dictionary(kind):
        return jsonable(array.dictionary_decode())
    if pa.types.is_timestamp(kind):
        return _timestamp_text(array)
    if pa.types.is_time(kind) or pa.types.is_decimal(kind):
        return array.cast(pa.string())
    if pa.types.is_duration(kind):
        return array.cast(pa.int64())
    if pa.types.is_date64(kind):
        return array.cast(pa.date32())
    if pa.types.is_float16(kind):
        return array.cast(pa.float64())
    if pa.types.is_struct(kind):
        children = [jsonable(array.field(i)) for i in range(kind.num_fields)]
        return pa.StructArray.from_arrays(
            children, names=[kind.field(i).name for i in range(kind.num_fields)],
            mask=array.is_null() if array.null_count else None)
    if pa.types.is_map(kind):   # to_pylist gives (key, value) tuples: JSON arrays
        return pa.MapArray.from_arrays(array.offsets, jsonable(array.keys),
                                       jsonable(array.items),
                                       mask=array.is_null() if array.null_count else None)
    # lists: rebuild over converted values
    if pa.types.is_fixed_size_list(kind):
        array = array.cast(pa.list_(kind.value_type))
    flat = jsonable(array.values)
    builder = pa.LargeListArray if pa.types.is_large_list(array.type) else pa.ListArray
    return builder.from_arrays(array.offsets, flat,
                               mask=array.is_null() if array.null_count else None)


def table_rows(table: pa.Table) -> list[dict]:
    """A table (or record batch) -> its rows as Python dicts ready for ``orjson``."""
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        values = []
        for chunk in chunks:
            values.extend(jsonable(chunk).to_pylist())
        columns[name] = values
    names = table.column_names
    return [dict(zip(names, row)) for row in zip(*(columns[n] for n in names))]


def row_json(row: dict) -> bytes:
    """One row (from ``table_rows``) -> its JSON line (no newline)."""
    return orjson.dumps(row, default=_default)
