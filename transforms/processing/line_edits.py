"""Byte-exact edits of one JSON Lines record: replace a top-level field's value,
set keys of its ``metadata`` object.  Every other byte of the line is kept, so
key order, spacing and numbers of any size survive (the stored record is the
input record plus exactly the edit).

Used by the scan (to size the stored line) and by the re-read of pass 2 (to
write it); both call the same functions on the same bytes, so the two agree.
Pure Python (orjson), no Beam.

    >>> replace_field(b'{"id":1, "text":"mail a@b.org"}', "text", "mail <EMAIL>")
    b'{"id":1, "text":"mail <EMAIL>"}'
    >>> set_metadata(b'{"id":1}', {"lang": "en", "lang_score": 0.99})
    b'{"id":1,"metadata":{"lang":"en","lang_score":0.99}}'
"""
import re

import orjson

from transforms.core import exact_json

METADATA = "metadata"
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],:]')


class EditError(ValueError):
    """The line cannot take the edit (e.g. ``metadata`` is not an object); one line."""


def value_span(line: bytes, field: str):
    """``(start, end)`` byte offsets of the top-level ``field``'s value, or None.

    ``line`` is one JSON object without repeated top-level keys (as
    ``transforms.processing.io.parse_line`` accepts it).
    """
    depth, expect_key, key, start, value_depth = 0, False, None, None, None
    for token in _TOKENS.finditer(line):
        text = token.group()
        if start is not None and value_depth is None:
            # a scalar or string value: ends at the next ',' or '}' of the top level
            if text.startswith(b'"'):
                return start, token.end()
            if text in (b"{", b"["):
                value_depth = depth + 1
            else:
                return start, start + len(line[start:token.start()].rstrip())
        if text in (b"{", b"["):
            depth += 1
            expect_key = depth == 1 and text == b"{"
        elif text in (b"}", b"]"):
            depth -= 1
            if value_depth is not None and depth == value_depth - 1:
                return start, token.end()
        elif text == b",":
            expect_key = depth == 1
        elif text == b":":
            if depth == 1 and key == field and start is None:
                rest = line[token.end():]
                start = token.end() + len(rest) - len(rest.lstrip())
        elif expect_key and depth == 1:
            key, expect_key = orjson.loads(text), False
    return None


def replace_field(line: bytes, field: str, value) -> bytes:
    """``line`` with the top-level ``field``'s value replaced by ``value`` (JSON of it).

    Raises ``EditError`` when the field is absent.
    """
    span = value_span(line, field)
    if span is None:
        raise EditError(f"no top-level field {field!r}")
    return line[:span[0]] + orjson.dumps(value) + line[span[1]:]


def set_metadata(line: bytes, values: dict) -> bytes:
    """``line`` with ``values`` set in its top-level ``metadata`` object.

    No ``metadata`` (or ``null``): ``"metadata": {values}`` is added (before the
    closing brace, or in place of the null).  An object: the keys are appended
    before its closing brace, or, when it already has one of them, the object
    is rewritten with them replaced (orjson, keys in their order).  Any other
    value raises ``EditError``.
    """
    span = value_span(line, METADATA)
    new = orjson.dumps(values)
    if span is None:
        body = line[:-1].rstrip()
        sep = b"" if body.endswith(b"{") else b","
        return body + sep + orjson.dumps(METADATA) + b":" + new + b"}"
    start, end = span
    old = line[start:end]
    if old == b"null":
        return line[:start] + new + line[end:]
    if not old.startswith(b"{"):
        raise EditError(f"field {METADATA!r} is not an object")
    try:
        current = exact_json.loads(old)
    except ValueError:
        current = None
    if current is not None and any(k in current for k in values):
        merged = {k: v for k, v in current.items() if k not in values}
        merged.update(values)
        return line[:start] + exact_json.dumps(merged) + line[end:]
    if current is None and any(orjson.dumps(k) in old for k in values):
        raise EditError(f"field {METADATA!r} is not valid JSON (e.g. a lone surrogate or "
                        f"NaN) and may hold the keys {sorted(values)} to be set: it cannot "
                        "be merged")
    inner = old[:-1].rstrip()
    sep = b"" if inner.endswith(b"{") else b","
    return line[:start] + inner + sep + new[1:-1] + b"}" + line[end:]
