"""JSON with integers of any size kept exact.

orjson, the project's fast JSON library, reads an integer beyond 64 bits as a
float (``100000000000000000001`` -> ``1e+20``) and refuses to write one
(``TypeError``).  JSON itself has no size limit, and Python's ``json`` keeps
such integers exact, so a record holding one must come out of a job with the
same value.  Every place where a parsed value reaches an output (partition
values and names, range keys, merged metadata, records read back from a store,
records written by ``WriteRecords``) goes through ``loads`` / ``dumps`` here.

Cost: ``loads`` scans the bytes for a run of 19 digits (the shortest integer
that can leave int64 has 19) and only then takes the standard library's slower
parser; ``dumps`` falls back only on orjson's ``TypeError``.
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

    Raises ``ValueError`` (``orjson.JSONDecodeError`` is one) for text that is
    not JSON, including ``NaN`` and ``Infinity``.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _LONG_DIGITS.search(raw) is None:
        return orjson.loads(data)
    return json.loads(data, parse_constant=_no_constant)


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
