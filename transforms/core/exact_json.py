"""JSON with integers of any size kept exact.

orjson, the project's fast JSON library, reads an integer beyond 64 bits as a
float (``100000000000000000001`` -> ``1e+20``) and refuses to write one
(``TypeError``).  JSON itself has no size limit, and Python's ``json`` keeps
such integers exact, so a record holding one must come out of a job with the
same value.  Every place where a parsed value reaches an output (partition
values and names, range keys, merged metadata, records read back from a store,
records written by ``WriteRecords``) goes through ``loads`` / ``dumps`` here.

Cost: ``loads`` parses with orjson, then walks the parsed value for a float of
magnitude 2**63 or more (what orjson makes of an integer it cannot hold; every
such float is integral, so the text is parsed again by the standard library,
which keeps an integer exact and a float a float).  On a 2.5 KB record that is
about 3 us against orjson's 2.6 (a scan of the bytes for 19 digits cost 87).
An integer too long for any double (orjson raises) goes straight to the
standard library.  ``dumps`` falls back only on orjson's ``TypeError``.
"""
from __future__ import annotations

import json
import re

import orjson

_LONG_DIGITS = re.compile(rb"\d{19}")


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # orjson refuses NaN and Infinity too


def loads(data: bytes | str):
    """JSON text -> value, like ``orjson.loads`` but integers of any size exact.

    Raises ``orjson.JSONDecodeError`` (a ``json.JSONDecodeError`` and a
    ``ValueError``), as ``orjson.loads`` does, for anything that is not JSON,
    including ``NaN`` and ``Infinity``, numbers beyond a double's range written
    as floats (``1e400``), bytes that are not UTF-8 and nesting too deep: a
    drop-in for ``orjson.loads`` whichever parser read the text.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        if _LONG_DIGITS.search(raw) is None:
            raise
        return _standard_loads(data)   # an integer too long for a double
    if _may_hold_big_int(value):
        return _standard_loads(data)
    return value


_TWO_63 = float(1 << 63)


def _may_hold_big_int(value) -> bool:
    """A float orjson made of an integer beyond int64/uint64: |v| >= 2**63.  A loop
    over an explicit stack: orjson accepts nesting deeper than Python's recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if not -_TWO_63 < item < _TWO_63:
                return True
        elif kind is dict:
            stack.extend(v for v in item.values() if type(v) in _CONTAINERS_OR_FLOAT)
        elif kind is list:
            stack.extend(v for v in item if type(v) in _CONTAINERS_OR_FLOAT)
    return False


_CONTAINERS_OR_FLOAT = (float, dict, list)


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} is beyond a double's range")
    return value


def _standard_loads(data):
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as err:   # JSONDecodeError, UnicodeDecodeError...
        doc = data if isinstance(data, str) else data.decode("utf-8", "replace")
        raise orjson.JSONDecodeError(f"{type(err).__name__}: {err}", doc,
                                     getattr(err, "pos", 0) or 0) from err


def dumps(value, option: int | None = None) -> bytes:
    """Value -> compact JSON bytes, like ``orjson.dumps(value, option=option)``.

    An integer beyond 64 bits is written exactly (the standard library writes
    the value, with the same compact separators, and sorted keys when
    ``option`` has ``orjson.OPT_SORT_KEYS``; other options apply only to
    values orjson can write).  Anything else orjson refuses still raises its
    ``TypeError``.
    """
    try:
        return orjson.dumps(value, option=option)
    except TypeError:
        if not _has_big_int(value):
            raise
    sort = bool(option) and bool(option & orjson.OPT_SORT_KEYS)
    indent = 2 if option and option & orjson.OPT_INDENT_2 else None
    separators = (",", ": ") if indent else (",", ":")
    return json.dumps(value, ensure_ascii=False, sort_keys=sort, indent=indent,
                      separators=separators, allow_nan=False).encode("utf-8")


def _has_big_int(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(1 << 63) <= value < (1 << 64)
    if isinstance(value, dict):
        return any(_has_big_int(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_big_int(v) for v in value)
    return False
