"""Stable hashing and text normalisation: the pure core every key is built on.

Python's built-in ``hash()`` is salted per process (so per worker) and must never
decide a key, a partition or a shard.  Everything here is xxh3, which is stable
across processes, machines and runs.
"""
import re
import unicodedata

import numpy as np
import xxhash


def normalise_for_hash(text: str) -> str:
    """The form two texts must share to count as exact duplicates.

    Unicode NFC, case-folded, runs of whitespace collapsed to one space and the
    ends stripped.  Only used to compute keys: stored text stays the original.
    """
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def text_key(text: str) -> bytes:
    """16-byte xxh3-128 digest of the normalised text (the exact-dedup key)."""
    return xxhash.xxh3_128_digest(normalise_for_hash(text).encode("utf-8", "surrogatepass"))


# Whitespace as str.split() sees it (Py_UNICODE_ISSPACE): the non-ASCII spaces
# become " " before encoding, the ASCII ones by a byte translation after.
# ``\s`` of a str pattern is Py_UNICODE_ISSPACE, str.isspace's test; the class is
# written so, not listed by scanning every code point (0.3 s at each process's import).
_WIDE_SPACE = re.compile(r"[^\S\x00-\x7f]")
_TO_SPACE = bytes(ord(" ") if chr(c).isspace() else c for c in range(128)) + bytes(range(128, 256))
_SPACE = ord(" ")


def _folded(text: str) -> bytes:
    text = unicodedata.normalize("NFC", text).casefold()
    if not text.isascii():
        text = _WIDE_SPACE.sub(" ", text)
    return text.encode("utf-8", "surrogatepass")


# ASCII whitespace -> " " (as _TO_SPACE) and A-Z -> a-z: an ASCII text's NFC form is
# itself and its case fold its lower case; a case-folded text holds no A-Z to change.
_FOLD = bytes(ord(" ") if chr(c).isspace() else ord(chr(c).lower()) for c in range(128)) \
    + bytes(range(128, 256))

try:  # the compiled byte pass (transforms/core/_fastcore.c, built by pip install)
    from transforms.core import _fastcore as _FAST
except ImportError:  # pragma: no cover - a checkout never built: the numpy path below
    _FAST = None


def text_keys(texts: list[str]) -> list[bytes]:
    """``[text_key(t) for t in texts]`` (16-byte xxh3-128 digests, one per text), for a
    batch at once.  With the compiled ``_fastcore`` (built by ``pip install``): ASCII
    texts skip NFC and case folding (identities there but for A-Z), and one C pass per
    text maps, lower-cases and collapses the whitespace; without it, the whitespace
    runs of the whole batch are collapsed by numpy (``_text_keys_numpy``).  Same keys
    either way (``tests/test_hashing.py``)."""
    if _FAST is None:
        return _text_keys_numpy(texts)
    digest = xxhash.xxh3_128_digest
    return [digest(p) for p in _FAST.fold_spaces(
        [t if t.isascii() else _folded(t) for t in texts], _FOLD)]


def _text_keys_numpy(texts: list[str]) -> list[bytes]:
    """``text_keys`` without the compiled pass: the whitespace runs of the whole batch
    collapsed by numpy instead of splitting every text into words."""
    parts = [_folded(t) for t in texts]
    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    buf = np.frombuffer(b"".join(parts).translate(_TO_SPACE), dtype=np.uint8)
    space = buf == _SPACE
    # Drop a space that follows a space or starts a text; a run at the end of
    # a text leaves one space, cut below.
    dropped = np.empty_like(space)
    dropped[1:] = space[:-1]
    dropped[starts[starts < buf.size]] = True
    dropped &= space
    gone = np.flatnonzero(dropped)
    out = buf[~dropped] if gone.size else buf
    new_starts = starts - np.searchsorted(gone, starts)
    new_ends = ends - np.searchsorted(gone, ends)
    nonempty = new_ends > new_starts
    new_ends[nonempty] -= out[new_ends[nonempty] - 1] == _SPACE
    view = memoryview(out)
    return [xxhash.xxh3_128_digest(view[a:b])
            for a, b in zip(new_starts.tolist(), new_ends.tolist())]


def stable_hash64(value: str | bytes, seed: int = 0) -> int:
    """Unsigned 64-bit xxh3 of a string (UTF-8) or bytes."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    return xxhash.xxh3_64_intdigest(value, seed=seed)


def checksum(data: bytes) -> str:
    """Checksum recorded for stored bytes: xxh3-128, 32 hex digits."""
    return xxhash.xxh3_128_hexdigest(data)


def shard_of(record_id: str, num_shards: int) -> int:
    """The shard a record id belongs to, in [0, num_shards)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return stable_hash64(record_id, seed=0x5EED) % num_shards
