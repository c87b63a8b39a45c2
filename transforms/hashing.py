"""Stable hashing and text normalisation: the pure core every key is built on.

Python's built-in ``hash()`` is salted per process (so per worker) and must never
decide a key, a partition or a shard.  Everything here is xxh3, which is stable
across processes, machines and runs.
"""
import unicodedata

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
