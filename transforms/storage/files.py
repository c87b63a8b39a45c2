"""Paths and whole-file reads for local folders and URIs alike (``gs://``, ``s3://``, ...),
through Beam's ``FileSystems``; the file layer every other layer builds on."""
import os
import posixpath
import threading

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


def join(base: str, *parts: str) -> str:
    """Join path parts for local paths and URIs alike."""
    if "://" in base:
        if base.startswith("s3://"):
            share_s3_clients()
        return posixpath.join(base, *parts)
    return FileSystems.join(base, *parts)


def file_size(path: str) -> int | None:
    """Bytes of the file at ``path``, taken literally: a name with glob characters
    (``data[1].jsonl``, ``a*b?.jsonl``) is that file, never a pattern (Beam's
    ``FileSystems.match`` would read it as one and find another file, or none).
    None when there is no such file (a folder, or nothing).  Local paths and
    ``file://`` through ``os``; URIs through their filesystem's ``metadata``."""
    if "://" not in path or path.startswith("file://"):
        local = path.removeprefix("file://")
        return os.path.getsize(local) if os.path.isfile(local) else None
    if path.startswith("s3://"):
        share_s3_clients()
    try:
        return FileSystems.get_filesystem(path).metadata(path).size_in_bytes
    except Exception:  # noqa: BLE001 - every backend has its own "not found"
        return None


def read_bytes(path: str) -> bytes:
    """The whole file at ``path``, as stored (no decompression)."""
    if path.startswith("s3://"):
        share_s3_clients()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


_shared = {"installed": False}
_shared_lock = threading.Lock()


def s3_options_key(options) -> tuple:
    """The S3Options (``s3_*``) of PipelineOptions or of a dict, as a hashable key."""
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options
    if isinstance(options, PipelineOptions):
        options = options.view_as(S3Options).get_all_options(drop_default=True)
    return tuple(sorted((k, str(v)) for k, v in dict(options or {}).items()
                        if k.startswith("s3_") and v is not None))


def share_s3_clients() -> None:
    """One boto3 client per distinct S3Options in this process, for Beam's S3 filesystem.

    Beam 2.77's S3FileSystem builds a new ``boto3_client.Client`` (a new boto3
    Session that parses the S3 service model, ~0.3-1 CPU s) for every call
    (exists, open, match, rename, delete): ~70 per small store job.  boto3's
    low-level clients are thread-safe, so each new Beam Client here reuses the
    boto3 client of the first one built with the same options; its other
    attributes (download state) start fresh, as a new Client's do.  Installed
    once per process, the first time an ``s3://`` path passes through this
    module (driver and workers alike); without boto3 it does nothing.
    """
    if _shared["installed"]:
        return
    with _shared_lock:
        if _shared["installed"]:
            return
        try:
            from apache_beam.io.aws.clients.s3 import boto3_client
        except ImportError:
            _shared["installed"] = True
            return
        original = boto3_client.Client.__init__
        templates = {}

        def __init__(self, options):
            key = s3_options_key(options)
            template = templates.get(key)
            if template is None:
                original(self, options)
                templates.setdefault(key, dict(self.__dict__))
            else:
                self.__dict__.update(template)

        boto3_client.Client.__init__ = __init__
        _shared["installed"] = True
