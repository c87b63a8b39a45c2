"""Partition values -> folder names that are safe on every file system, and back.

A field value read from untrusted data must never become a raw path component
(``../../x``, ``/etc``, NUL, a 10 KB string, ``CON`` on Windows, two names that
a case-insensitive or normalising file system would merge).  The encoding:

* a string keeps ``a-z``, ``0-9``, ``-`` (not leading) and ``.`` (after a
  letter or digit, not trailing: no ``..``, no hidden files); every other UTF-8 byte, upper-case letters included,
  becomes ``_xx`` (two lower-case hex digits).  So names are pure lower-case
  ASCII: ``Zh`` -> ``_5ah``, ``é`` (NFC) -> ``_c3_a9``, ``e`` + U+0301 (NFD)
  -> ``e_cc_81``; ``../../x`` -> ``_2e_2e_2f_2e_2e_2fx``;
* a non-string value is ``_j`` + the encoding of its canonical JSON
  (``1`` -> ``_j1``, ``true`` -> ``_jtrue``), so ``"1"`` and ``1`` differ;
* fixed names: ``_missing`` (field absent or null), ``_other`` (overflow past
  ``max_partitions``), ``_empty`` (the empty string);
* a name longer than ``MAX_NAME_CHARS`` keeps a prefix of its encoding and
  ends in ``_h`` + 40 hex digits of the SHA-256 of the value.

The encoding never emits ``_`` followed by anything but two hex digits, and
every fixed or suffix marker is ``_`` followed by a non-hex letter, so the
map is injective (collision-free): unhashed names decode back to the value,
hashed ones through the manifest, which records every partition's value.
"""
import hashlib
import re

import orjson

from transforms.core import exact_json

MAX_NAME_CHARS = 120
MISSING = "_missing"
OTHER = "_other"
EMPTY = "_empty"
JSON_MARK = "_j"
HASH_MARK = "_h"
HASH_HEX_DIGITS = 40
RESERVED = {MISSING, OTHER, EMPTY}
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789")
_HEX = "0123456789abcdef"
# Device names Windows reserves whatever the extension (con.txt is CON).
_WINDOWS_DEVICES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\.|$)")
_SAFE_NAME = re.compile(r"^[a-z0-9_][a-z0-9._-]*$")


def _encode_text(text: str) -> str:
    data = text.encode("utf-8", "surrogatepass")
    last = len(data) - 1
    out = []
    for i, byte in enumerate(data):
        if byte in _PLAIN or (byte == 0x2D and i > 0) or (
                byte == 0x2E and 0 < i < last and data[i - 1] in _PLAIN):
            out.append(chr(byte))
        else:
            out.append(f"_{byte:02x}")
    name = "".join(out)
    if _WINDOWS_DEVICES.match(name):
        name = f"_{data[0]:02x}{name[1:]}"
    return name


def canonical_json(value) -> bytes:
    return exact_json.dumps(value, option=orjson.OPT_SORT_KEYS)


def value_text(value) -> str | None:
    """How a value is written in a ``FIELD=VALUE`` selector: the string, or its JSON."""
    if value is None:
        return None
    return value if isinstance(value, str) else canonical_json(value).decode()


def _value_bytes(value) -> bytes:
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    return b"j" + canonical_json(value)


def encode_value(value) -> str:
    """The folder name of a field value (None = missing).  Injective, path-safe, bounded."""
    if value is None:
        return MISSING
    if isinstance(value, str):
        name = _encode_text(value) if value else EMPTY
    else:
        name = JSON_MARK + _encode_text(canonical_json(value).decode())
    if len(name) <= MAX_NAME_CHARS:
        return name
    keep = MAX_NAME_CHARS - len(HASH_MARK) - HASH_HEX_DIGITS
    end = len(JSON_MARK) if name.startswith(JSON_MARK) else 0
    while True:  # the longest prefix of whole tokens (a char or a _xx escape)
        step = 3 if name[end] == "_" else 1
        if end + step > keep:
            break
        end += step
    prefix = name[:end]
    digest = hashlib.sha256(_value_bytes(value)).hexdigest()[:HASH_HEX_DIGITS]
    return f"{prefix}{HASH_MARK}{digest}"


class NotReversible(ValueError):
    """A hashed (over-long) name: its value is recorded in the manifest only."""


def decode_name(name: str):
    """The value a name encodes (None for ``_missing``); the inverse of encode_value."""
    if name == MISSING:
        return None
    if name == OTHER:
        raise NotReversible(f"{OTHER} holds the values past max_partitions")
    if name == EMPTY:
        return ""
    is_json = name.startswith(JSON_MARK)
    body = name[len(JSON_MARK):] if is_json else name
    data = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "_":
            data.append(ord(char))
            i += 1
            continue
        pair = body[i + 1:i + 3]
        if len(pair) == 2 and all(c in _HEX for c in pair):
            data.append(int(pair, 16))
            i += 3
            continue
        if body[i:i + len(HASH_MARK)] == HASH_MARK:
            raise NotReversible(f"{name!r} is a hashed name; read its value from the manifest")
        raise ValueError(f"{name!r} is not an encoded partition name")
    text = data.decode("utf-8", "surrogatepass")
    return exact_json.loads(text) if is_json else text


def is_safe_name(name: str) -> bool:
    """True for a single path component the encoding could have produced."""
    return (0 < len(name) <= MAX_NAME_CHARS and bool(_SAFE_NAME.match(name))
            and not _WINDOWS_DEVICES.match(name))


def range_name(index: int) -> str:
    """Name of the ``index``-th ``--range_by`` partition: ``range-00003``."""
    return f"range-{index:05d}"
