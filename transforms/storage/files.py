"""Paths and whole-file reads for local folders and URIs alike (``gs://``, ``s3://``, ...),
through Beam's ``FileSystems``; the file layer every other layer builds on."""
import posixpath

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


def join(base: str, *parts: str) -> str:
    """Join path parts for local paths and URIs alike."""
    if "://" in base:
        return posixpath.join(base, *parts)
    return FileSystems.join(base, *parts)


def read_bytes(path: str) -> bytes:
    """The whole file at ``path``, as stored (no decompression)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()
