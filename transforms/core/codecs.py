"""Named codecs for bytes (text shards) and numeric arrays: the pure core of compression.

A codec is named by a spec string ``NAME[:key=value,...]``, e.g. ``zstd:level=9``,
``blosc2:filter=bytedelta,cname=zstd,clevel=5`` or ``int8``.  Parameters not
given take their defaults; ``codec.describe()`` gives the complete, canonical
``{"name": ..., **params}`` that manifests record.

Bytes codecs (``bytes_codec(spec)``): ``zstd`` (level, optional trained
dictionary), ``gzip``, ``lz4``, ``none``.  ``encode(raw) -> stored`` and
``decode(stored, expected_size) -> raw``; decoding never produces (or
allocates) more than ``expected_size`` bytes and rejects trailing data.

Array codecs (``array_codec(spec)``): lossless ``blosc2`` (shuffle, bitshuffle
or bytedelta filter before zstd/lz4/lz4hc, via the blosc2 package), ``zstd`` (of
the raw bytes), ``none``; lossy ``fp16``, ``bf16`` (stored as uint16), ``int8``
(per-row symmetric scale) and ``binary`` (sign bits, packed, with a per-row
scale).  ``encode(array) -> container bytes``; ``decode_array(container)``
reads any of them back (same dtype and shape; bit-exact for lossless codecs).
``codec.measure(array)`` reports the error of a lossy codec on a sample of rows.

Container of one encoded array block (all integers little-endian)::

    offset 0   6 bytes   magic b"BDPARR"
    offset 6   u16       container version (1)
    offset 8   u32       H = length of the header
    offset 12  H bytes   header: UTF-8 JSON object (below)
    offset 12+H          payload: the parts' stored bytes, back to back

    header = {
      "dtype": "<f4", "shape": [rows, ...],      # the decoded array (C order)
      "raw_bytes": rows * ... * itemsize,          # its size in bytes
      "codec": "int8", "params": {...},           # as codec.describe()
      "payload_bytes": sum of the parts' stored_bytes,
      "parts": [{"name": "q", "dtype": "|i1", "shape": [rows, cols],
                 "raw_bytes": ..., "stored_bytes": ..., "xxh3_64": "16 hex digits",
                 "stage": {"name": "zstd", "level": 1}}, ...]}

A part's ``stage`` says how its stored bytes are compressed: ``none`` (the raw
bytes), ``zstd`` (one zstd frame) or ``blosc2`` (one blosc2 chunk,
``blosc2.decompress2``).  The decompressed part is a C-order array of the
part's dtype and shape.  The array is rebuilt from its parts by codec:

- ``none``, ``zstd``, ``blosc2``: part ``data`` *is* the array;
- ``fp16``: ``data`` (float16) cast to ``dtype``;
- ``bf16``: ``data`` (uint16, the top half of float32 bits):
  ``(data.astype(uint32) << 16).view(float32)`` cast to ``dtype``;
- ``int8``: ``q`` (int8, rows x cols) times ``scale`` (float, one per row,
  ``scale[:, None]``), reshaped to ``shape``;
- ``binary``: ``bits`` (uint8, rows x ceil(cols/8), ``np.packbits`` along a
  row, big bit order) gives the sign (1 -> +, 0 -> -) of each value, times
  ``scale`` (mean absolute value of the row), reshaped to ``shape``.

"Rows" are the first axis (arrays of 0 or 1 dimensions are one row).
"""
import gzip
import math
import struct
import zlib
from dataclasses import dataclass

import lz4.frame
import numpy as np
import orjson
import xxhash
import zstandard

MAGIC = b"BDPARR"
CONTAINER_VERSION = 1
MAX_HEADER_BYTES = 1 << 20
BLOSC2_MAX_BYTES = 2**31 - 1024   # one blosc2 chunk holds < 2 GiB
DEFAULT_MAX_BYTES = 1 << 36       # refuse to decode anything declaring more (64 GiB)
PART_SLACK_BYTES = 1 << 16
SAMPLE_ROWS = 1024
NEIGHBOURS = 10
PLAIN_KINDS = "biufc"             # bool, int, uint, float, complex: no objects or records


class CodecError(ValueError):
    """A codec spec is invalid, an array does not suit a codec, or a payload is bad."""


# ---------------------------------------------------------------- specs and parameters

def parse_spec(spec) -> tuple[str, dict]:
    """``"NAME:k=v,k2=v2"`` (or a dict with ``name``) -> (name, {k: raw value})."""
    if isinstance(spec, dict):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise CodecError(f"codec description {spec!r} has no name")
        return name, params
    if not isinstance(spec, str) or not spec.strip():
        raise CodecError(f"codec spec must be NAME[:key=value,...], got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    params = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CodecError(f"codec spec {spec!r}: parameter {item!r} is not key=value")
        params[key.strip()] = value.strip()
    return name.strip(), params


@dataclass(frozen=True)
class Param:
    kind: type
    default: object
    choices: tuple = ()
    low: int | None = None
    high: int | None = None

    def convert(self, codec: str, key: str, value):
        try:
            value = self.kind(value)
        except (TypeError, ValueError):
            raise CodecError(f"{codec}: {key}={value!r} is not a {self.kind.__name__}") from None
        if self.choices and value not in self.choices:
            raise CodecError(f"{codec}: {key}={value!r}; choose one of {list(self.choices)}")
        if self.low is not None and not self.low <= value <= self.high:
            raise CodecError(f"{codec}: {key}={value} is outside {self.low}..{self.high}")
        return value


class Codec:
    """Base of all codecs: parameters checked and completed from ``PARAMS``."""

    name = ""
    PARAMS: dict[str, Param] = {}

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            raise CodecError(f"{self.name}: unknown parameter(s) {unknown}; "
                             f"known: {sorted(self.PARAMS) or 'none'}")
        self.params = {k: p.convert(self.name, k, params.get(k, p.default))
                       for k, p in sorted(self.PARAMS.items())}

    def describe(self) -> dict:
        return {"name": self.name, **self.params}

    @property
    def spec(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}:{args}" if args else self.name

    def __repr__(self):
        return f"<codec {self.spec}>"


# ---------------------------------------------------------------- bytes codecs

def _check_size(codec: str, produced: int, expected: int):
    if produced != expected:
        raise CodecError(f"{codec}: decoded {produced} bytes, expected {expected}")


class BytesCodec(Codec):
    suffix = ""   # file-name suffix that standard tools recognise

    def encode(self, raw: bytes) -> bytes:
        raise NotImplementedError

    def decode(self, stored: bytes, expected_size: int) -> bytes:
        raise NotImplementedError


class ZstdBytes(BytesCodec):
    """zstd, content size in the frame header; optionally with a trained dictionary."""

    name = "zstd"
    suffix = ".zst"
    PARAMS = {"level": Param(int, 3, low=-7, high=22)}

    def __init__(self, dictionary: bytes | None = None, **params):
        super().__init__(**params)
        self.dictionary = zstandard.ZstdCompressionDict(dictionary) if dictionary else None

    def describe(self) -> dict:
        described = super().describe()
        if self.dictionary is not None:
            described["dictionary_id"] = self.dictionary.dict_id()
        return described

    def encode(self, raw: bytes) -> bytes:
        # One thread, content size written: deterministic bytes, bounded reads.
        return zstandard.ZstdCompressor(
            level=self.params["level"], dict_data=self.dictionary,
            write_content_size=True).compress(raw)

    def decode(self, stored: bytes, expected_size: int) -> bytes:
        try:
            declared = zstandard.get_frame_parameters(stored).content_size
        except zstandard.ZstdError as err:
            raise CodecError(f"zstd: not a zstd frame ({err})") from None
        if declared != expected_size:
            raise CodecError(f"zstd: frame declares {declared} bytes, expected {expected_size}")
        try:
            raw = zstandard.ZstdDecompressor(dict_data=self.dictionary).decompress(
                stored, max_output_size=max(expected_size, 1), allow_extra_data=False)
        except zstandard.ZstdError as err:
            raise CodecError(f"zstd: corrupt frame ({err})") from None
        _check_size("zstd", len(raw), expected_size)
        return raw


def train_zstd_dictionary(samples: list[bytes], size: int = 64 << 10, level: int = 3) -> bytes:
    """A zstd dictionary trained on sample records (for many small records)."""
    try:
        return zstandard.train_dictionary(size, samples, level=level).as_bytes()
    except zstandard.ZstdError as err:
        raise CodecError(f"zstd: cannot train a dictionary on {len(samples)} samples: {err}") \
            from None


class GzipBytes(BytesCodec):
    name = "gzip"
    suffix = ".gz"
    PARAMS = {"level": Param(int, 6, low=1, high=9)}

    def encode(self, raw: bytes) -> bytes:
        return gzip.compress(raw, compresslevel=self.params["level"], mtime=0)

    def decode(self, stored: bytes, expected_size: int) -> bytes:
        if len(stored) < 18:
            raise CodecError("gzip: truncated stream")
        declared = struct.unpack("<I", stored[-4:])[0]   # ISIZE: size mod 2**32
        if declared != expected_size % (1 << 32):
            raise CodecError(f"gzip: stream declares {declared} bytes, expected {expected_size}")
        decoder = zlib.decompressobj(wbits=31)
        try:
            raw = decoder.decompress(stored, expected_size + 1)
        except zlib.error as err:
            raise CodecError(f"gzip: corrupt stream ({err})") from None
        if not decoder.eof or decoder.unused_data or decoder.unconsumed_tail:
            raise CodecError("gzip: stream is truncated, longer than declared, or has "
                             "trailing data")
        _check_size("gzip", len(raw), expected_size)
        return raw


class Lz4Bytes(BytesCodec):
    name = "lz4"
    suffix = ".lz4"
    PARAMS = {"level": Param(int, 0, low=0, high=16)}

    def encode(self, raw: bytes) -> bytes:
        return lz4.frame.compress(raw, compression_level=self.params["level"],
                                  store_size=True, content_checksum=True)

    def decode(self, stored: bytes, expected_size: int) -> bytes:
        try:
            declared = lz4.frame.get_frame_info(stored)["content_size"]
        except RuntimeError as err:
            raise CodecError(f"lz4: not an lz4 frame ({err})") from None
        if declared != expected_size:
            raise CodecError(f"lz4: frame declares {declared} bytes, expected {expected_size}")
        decoder = lz4.frame.LZ4FrameDecompressor()
        try:
            raw = decoder.decompress(stored, max_length=expected_size + 1)
        except RuntimeError as err:
            raise CodecError(f"lz4: corrupt frame ({err})") from None
        if not decoder.eof or decoder.unused_data:
            raise CodecError("lz4: frame is truncated or has trailing data")
        _check_size("lz4", len(raw), expected_size)
        return raw


class NoneBytes(BytesCodec):
    name = "none"

    def encode(self, raw: bytes) -> bytes:
        return bytes(raw)

    def decode(self, stored: bytes, expected_size: int) -> bytes:
        _check_size("none", len(stored), expected_size)
        return bytes(stored)


BYTES_CODECS = {c.name: c for c in (ZstdBytes, GzipBytes, Lz4Bytes, NoneBytes)}


def bytes_codec(spec, dictionary: bytes | None = None) -> BytesCodec:
    """A bytes codec from ``"NAME[:k=v,...]"`` or a manifest's description."""
    if isinstance(spec, BytesCodec):
        return spec
    name, params = parse_spec(spec)
    params.pop("dictionary_id", None)
    if name not in BYTES_CODECS:
        raise CodecError(f"unknown bytes codec {name!r}; known: {sorted(BYTES_CODECS)}")
    if dictionary is not None:
        if name != "zstd":
            raise CodecError(f"{name}: only zstd takes a dictionary")
        return ZstdBytes(dictionary=dictionary, **params)
    return BYTES_CODECS[name](**params)


# ---------------------------------------------------------------- part stages

# blosc2's names of each filter chain and codec; blosc2 itself is imported by the first
# array stage that uses it (0.1 s a process that only writes text shards never pays).
_BLOSC_FILTERS = {
    "none": ("NOFILTER",),
    "shuffle": ("SHUFFLE",),
    "bitshuffle": ("BITSHUFFLE",),
    "bytedelta": ("SHUFFLE", "BYTEDELTA"),
}
_BLOSC_CODECS = {"zstd": "ZSTD", "lz4": "LZ4", "lz4hc": "LZ4HC"}


def _blosc2():
    import blosc2   # noqa: PLC0415 -- lazy, see _BLOSC_FILTERS
    return blosc2


def _encode_stage(data: np.ndarray, stage: dict):
    """A C-contiguous array -> its stored bytes (any bytes-like) under ``stage``."""
    name = stage["name"]
    if name == "none" or data.nbytes == 0:
        return memoryview(data.reshape(-1)).cast("B")   # no copy: the container join copies
    if name == "zstd":
        return zstandard.ZstdCompressor(level=stage["level"], write_content_size=True) \
            .compress(data.data)
    if data.nbytes > BLOSC2_MAX_BYTES:
        raise CodecError(f"blosc2: a block of {data.nbytes} bytes is over blosc2's 2 GiB "
                         "chunk limit; use fewer rows per block")
    blosc2 = _blosc2()
    filters = [getattr(blosc2.Filter, f) for f in _BLOSC_FILTERS[stage["filter"]]]
    return blosc2.compress2(
        data.data, typesize=min(data.dtype.itemsize, 255), clevel=stage["clevel"],
        codec=getattr(blosc2.Codec, _BLOSC_CODECS[stage["cname"]]), filters=filters,
        filters_meta=[0] * len(filters))


def _decode_stage(stored: bytes, stage: dict, raw_bytes: int) -> bytes | bytearray:
    name = stage.get("name")
    if name == "none" or raw_bytes == 0:
        _check_size("part", len(stored), raw_bytes)
        return stored
    if name == "zstd":
        return ZstdBytes(level=1).decode(stored, raw_bytes)
    if name == "blosc2":
        blosc2 = _blosc2()
        try:
            nbytes, cbytes, _ = blosc2.get_cbuffer_sizes(stored)
        except (ValueError, RuntimeError) as err:
            raise CodecError(f"blosc2: not a blosc2 chunk ({err})") from None
        if nbytes != raw_bytes or cbytes != len(stored):
            raise CodecError(f"blosc2: chunk declares {nbytes} bytes in {cbytes}, "
                             f"expected {raw_bytes} in {len(stored)}")
        try:   # the declared size was checked above, so this allocation is bounded
            out = blosc2.decompress2(stored)
        except (ValueError, RuntimeError) as err:
            raise CodecError(f"blosc2: corrupt chunk ({err})") from None
        _check_size("blosc2", len(out), raw_bytes)
        return out
    raise CodecError(f"unknown part stage {stage!r}")


# ---------------------------------------------------------------- error metrics

def sample_rows(n: int, limit: int = SAMPLE_ROWS) -> np.ndarray:
    """Evenly spaced row indices: a deterministic sample."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def as_rows(array: np.ndarray) -> np.ndarray:
    """The array as (rows, cols): the first axis is rows; 0-d and 1-d arrays are one row."""
    if array.ndim <= 1:
        return array.reshape(1, array.size)
    return array.reshape(array.shape[0], math.prod(array.shape[1:]))


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def _top_k(unit: np.ndarray, k: int) -> np.ndarray:
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    # Stable sort on (-similarity, index): ties go to the smallest index.
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def error_metrics(original: np.ndarray, decoded: np.ndarray) -> dict:
    """Max abs error, RMSE, cosine similarity (mean, min) and top-10 neighbour overlap.

    ``original`` and ``decoded`` are sample rows (rows, cols); rows with a NaN
    or inf are left out (lossy codecs keep them as they are, or refuse them).
    """
    a = original.astype(np.float64)
    b = decoded.astype(np.float64)
    finite = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    a, b = a[finite], b[finite]
    if a.size == 0:
        return {"max_abs": 0.0, "rmse": 0.0, "cosine_mean": 1.0, "cosine_min": 1.0,
                "top10_overlap": 1.0, "rows_measured": int(a.shape[0])}
    diff = np.abs(a - b)
    ua, ub = _unit(a), _unit(b)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    cosine = np.where(both_zero, 1.0, np.einsum("ij,ij->i", ua, ub))
    k = min(NEIGHBOURS, a.shape[0] - 1)
    if k > 0:
        na, nb = _top_k(ua, k), _top_k(ub, k)
        hits = [len(np.intersect1d(x, y, assume_unique=True)) for x, y in zip(na, nb)]
        overlap = float(np.mean(hits) / k)
    else:
        overlap = 1.0
    return {"max_abs": float(diff.max()), "rmse": float(np.sqrt(np.mean(diff ** 2))),
            "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()),
            "top10_overlap": overlap, "rows_measured": int(a.shape[0])}


EXACT = {"max_abs": 0.0, "rmse": 0.0, "cosine_mean": 1.0, "cosine_min": 1.0,
         "top10_overlap": 1.0}


def combine_metrics(items: list[dict]) -> dict:
    """Error over several blocks: worst max/min, row-weighted means, pooled RMSE.
    No measured blocks (a lossless codec) means exact."""
    items = [m for m in items if m and "rows_measured" in m]
    if not items:
        return dict(EXACT)
    weights = np.array([m.get("rows_measured", 0) for m in items], dtype=np.float64)
    total = weights.sum() or 1.0

    def mean(key):
        return float(sum(w * m[key] for w, m in zip(weights, items)) / total)

    return {"max_abs": max(m["max_abs"] for m in items),
            "rmse": float(math.sqrt(sum(w * m["rmse"] ** 2 for w, m in zip(weights, items))
                                    / total)),
            "cosine_mean": mean("cosine_mean"),
            "cosine_min": min(m["cosine_min"] for m in items),
            "top10_overlap": mean("top10_overlap"),
            "rows_measured": int(weights.sum())}


# ---------------------------------------------------------------- array codecs

def check_plain_dtype(dtype: np.dtype, what: str = "array") -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in PLAIN_KINDS or dtype.fields is not None or dtype.subdtype:
        raise CodecError(f"{what} has dtype {dtype.str!r}; only plain numeric or bool "
                         "dtypes are supported (no objects, strings or records)")
    return dtype


def c_order(array: np.ndarray) -> np.ndarray:
    """C-contiguous, keeping 0-d arrays 0-d (np.ascontiguousarray makes them 1-d)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


def _little(array: np.ndarray) -> np.ndarray:
    array = c_order(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array


class ArrayCodec(Codec):
    lossless = True

    def stage(self) -> dict:
        """How this codec's parts are compressed."""
        return {"name": "none"}

    def to_parts(self, array: np.ndarray) -> list[tuple[str, np.ndarray]]:
        return [("data", array)]

    def from_parts(self, parts: dict, dtype: np.dtype, shape: tuple) -> np.ndarray:
        return parts["data"].view(dtype).reshape(shape) if parts["data"].dtype != dtype \
            else parts["data"].reshape(shape)

    def encode(self, array) -> bytes:
        array = np.asarray(array)
        check_plain_dtype(array.dtype)
        array = c_order(array)
        stage = self.stage()
        parts, payload = [], []
        for name, part in self.to_parts(array):
            if self.lossless:
                part = c_order(part)   # keep the exact dtype, byte order included
            else:
                part = _little(part)
            stored = _encode_stage(part, stage)
            parts.append({"name": name, "dtype": part.dtype.str, "shape": list(part.shape),
                          "raw_bytes": part.nbytes, "stored_bytes": len(stored),
                          "xxh3_64": xxhash.xxh3_64_hexdigest(stored),
                          "stage": stage if part.nbytes else {"name": "none"}})
            payload.append(stored)
        header = {"dtype": array.dtype.str, "shape": list(array.shape),
                  "raw_bytes": array.nbytes, "codec": self.name, "params": self.params,
                  "payload_bytes": sum(p["stored_bytes"] for p in parts), "parts": parts}
        head = orjson.dumps(header, option=orjson.OPT_SORT_KEYS)
        return b"".join([MAGIC, struct.pack("<HI", CONTAINER_VERSION, len(head)), head,
                         *payload])

    def measure(self, array, limit: int = SAMPLE_ROWS) -> dict:
        """Error metrics on a deterministic sample of rows ({} metrics are exact)."""
        array = np.asarray(array)
        if self.lossless:
            return dict(EXACT)
        rows = as_rows(c_order(array))
        sample = rows[sample_rows(rows.shape[0], limit)]
        parts = dict(self.to_parts(sample))
        decoded = self.from_parts(parts, array.dtype, sample.shape)
        return error_metrics(sample, as_rows(decoded))


class RawArray(ArrayCodec):
    name = "none"


class ZstdArray(ArrayCodec):
    name = "zstd"
    PARAMS = {"level": Param(int, 3, low=-7, high=22)}

    def stage(self):
        return {"name": "zstd", "level": self.params["level"]}


class Blosc2Array(ArrayCodec):
    name = "blosc2"
    PARAMS = {"filter": Param(str, "shuffle", choices=tuple(_BLOSC_FILTERS)),
              "cname": Param(str, "zstd", choices=tuple(_BLOSC_CODECS)),
              "clevel": Param(int, 5, low=0, high=9)}

    def stage(self):
        return {"name": "blosc2", **self.params}


_INNER = {"none": {"name": "none"},
          "zstd": {"name": "zstd", "level": 1},
          "blosc2": {"name": "blosc2", "filter": "shuffle", "cname": "zstd", "clevel": 1}}


class LossyArray(ArrayCodec):
    """A float-only codec whose parts are then compressed by an ``inner`` stage."""

    lossless = False
    PARAMS = {"inner": Param(str, "zstd", choices=tuple(_INNER))}

    def stage(self):
        return _INNER[self.params["inner"]]

    def to_parts(self, array):
        if array.dtype.kind != "f":
            raise CodecError(f"{self.name} is a lossy float codec; the array has dtype "
                             f"{array.dtype.str!r}: use a lossless codec (blosc2, zstd)")
        return self.quantise(array)

    def _refuse_nonfinite(self, per_row):
        """``per_row``: a max or mean over each row, NaN or inf iff the row has one."""
        if not np.isfinite(per_row).all():
            raise CodecError(f"{self.name} cannot represent NaN or inf (found in the block); "
                             "use fp16, bf16 or a lossless codec")

    def _refuse_overflow(self, original, stored_is_inf, limit_name):
        # Cheap test first: the stored form has no inf at all (the usual case).
        if stored_is_inf.any() and (stored_is_inf & np.isfinite(original)).any():
            top = float(np.abs(original[np.isfinite(original)]).max())
            raise CodecError(f"{self.name}: values up to {top:g} overflow {limit_name}; "
                             "use bf16 or a lossless codec")


class Fp16Array(LossyArray):
    name = "fp16"

    def quantise(self, array):
        with np.errstate(over="ignore"):
            half = array.astype(np.float16)
        # inf test on the bits: float16 ufuncs are slow in numpy, integer ones are not
        half_inf = (half.view(np.uint16) & np.uint16(0x7FFF)) == np.uint16(0x7C00)
        self._refuse_overflow(array, half_inf, "float16 (max 65504)")
        return [("data", half)]

    def from_parts(self, parts, dtype, shape):
        return parts["data"].astype(dtype).reshape(shape)


class Bf16Array(LossyArray):
    name = "bf16"

    def quantise(self, array):
        with np.errstate(over="ignore"):
            single = array.astype(np.float32, copy=False).reshape(-1)   # 0-d math: scalars
        bits = single.view(np.uint32)
        # Round to nearest even on the dropped 16 bits; NaN stays a quiet NaN.
        rounded = bits >> np.uint32(16)
        rounded &= np.uint32(1)
        rounded += bits
        rounded += np.uint32(0x7FFF)
        rounded >>= np.uint32(16)
        rounded = rounded.astype(np.uint16)
        exponent_all_ones = (bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
        if exponent_all_ones.any():   # NaN or inf in the input: keep them as they are
            nan = np.isnan(single)
            rounded[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
        rounded = rounded.reshape(array.shape)
        self._refuse_overflow(array, (rounded & np.uint16(0x7FFF)) == np.uint16(0x7F80),
                              "bfloat16")
        return [("data", rounded)]

    @staticmethod
    def _widen(half_bits):
        wide = half_bits.astype(np.uint32).reshape(-1) << np.uint32(16)
        return wide.view(np.float32).reshape(half_bits.shape)

    def from_parts(self, parts, dtype, shape):
        return self._widen(c_order(parts["data"])).astype(dtype, copy=False).reshape(shape)


def _scale_dtype(dtype):
    return np.dtype("<f8") if dtype.itemsize > 4 else np.dtype("<f4")


class Int8Array(LossyArray):
    name = "int8"

    def quantise(self, array):
        rows = as_rows(array).astype(_scale_dtype(array.dtype), copy=False)
        peak = np.abs(rows).max(axis=1, initial=0)
        self._refuse_nonfinite(peak)
        scale = (peak / 127).astype(rows.dtype)
        safe = np.where(scale > 0, scale, 1)
        scaled = rows / safe[:, None]         # |scaled| <= 127 by construction
        np.rint(scaled, out=scaled)
        return [("q", scaled.astype(np.int8)), ("scale", scale)]

    def from_parts(self, parts, dtype, shape):
        scale = parts["scale"]
        rows = parts["q"].astype(scale.dtype)
        rows *= scale[:, None]
        return rows.astype(dtype, copy=False).reshape(shape)


class BinaryArray(LossyArray):
    name = "binary"

    def quantise(self, array):
        rows = as_rows(array).astype(_scale_dtype(array.dtype), copy=False)
        scale = np.abs(rows).mean(axis=1) if rows.shape[1] else np.zeros(rows.shape[0])
        self._refuse_nonfinite(scale)
        return [("bits", np.packbits(rows > 0, axis=1)), ("scale", scale.astype(rows.dtype))]

    def from_parts(self, parts, dtype, shape):
        scale = parts["scale"]
        rows = scale.shape[0]
        cols = int(np.prod(shape, dtype=np.int64)) // rows if rows else 0
        signs = np.unpackbits(parts["bits"], axis=1, count=cols).astype(scale.dtype)
        signs *= 2
        signs -= 1
        signs *= scale[:, None]
        return signs.astype(dtype, copy=False).reshape(shape)


ARRAY_CODECS = {c.name: c for c in (RawArray, ZstdArray, Blosc2Array, Fp16Array, Bf16Array,
                                    Int8Array, BinaryArray)}
LOSSY = tuple(name for name, c in ARRAY_CODECS.items() if not c.lossless)


def array_codec(spec) -> ArrayCodec:
    """An array codec from ``"NAME[:k=v,...]"`` or a manifest's description."""
    if isinstance(spec, ArrayCodec):
        return spec
    name, params = parse_spec(spec)
    if name not in ARRAY_CODECS:
        raise CodecError(f"unknown array codec {name!r}; known: {sorted(ARRAY_CODECS)}")
    return ARRAY_CODECS[name](**params)


# ---------------------------------------------------------------- container reading

def read_header(data: bytes) -> tuple[dict, int]:
    """(header, payload offset) of a container, with every declared size checked."""
    if len(data) < 12 or data[:6] != MAGIC:
        raise CodecError("not an encoded array block (bad magic or too short)")
    version, head_len = struct.unpack("<HI", data[6:12])
    if version != CONTAINER_VERSION:
        raise CodecError(f"array block container version {version}; this reader knows "
                         f"{CONTAINER_VERSION}")
    if head_len > MAX_HEADER_BYTES or 12 + head_len > len(data):
        raise CodecError(f"array block header of {head_len} bytes is truncated or too large")
    try:
        header = orjson.loads(data[12:12 + head_len])
        dtype = check_plain_dtype(np.dtype(header["dtype"]), "array block")
        shape = tuple(int(s) for s in header["shape"])
        payload = int(header["payload_bytes"])
        raw_bytes = int(header["raw_bytes"])
        if not isinstance(header["codec"], str) or not isinstance(header["params"], dict):
            raise TypeError("codec must be a name and params a mapping")
        parts = []
        for part in header["parts"]:
            part_dtype = check_plain_dtype(np.dtype(part["dtype"]), "array block part")
            parts.append({
                "name": str(part["name"]), "dtype": part_dtype,
                "shape": tuple(int(s) for s in part["shape"]),
                "raw_bytes": int(part["raw_bytes"]), "stored_bytes": int(part["stored_bytes"]),
                "xxh3_64": str(part["xxh3_64"]), "stage": dict(part["stage"])})
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise CodecError(f"array block header is malformed ({err!r})") from None
    if any(s < 0 for s in shape) or raw_bytes != math.prod(shape) * dtype.itemsize:
        raise CodecError(f"array block header: shape {shape} and raw_bytes {raw_bytes} disagree")
    if 12 + head_len + payload != len(data):
        raise CodecError(f"array block is {len(data)} bytes; its header declares "
                         f"{12 + head_len + payload} (truncated or trailing data)")
    for part in parts:
        if (min(part["shape"], default=0) < 0 or part["stored_bytes"] < 0
                or part["raw_bytes"] != math.prod(part["shape"]) * part["dtype"].itemsize):
            raise CodecError(f"array block part {part['name']!r}: shape and sizes disagree")
    if sum(p["stored_bytes"] for p in parts) != payload:
        raise CodecError("array block header: part sizes do not add up to the payload")
    checked = {"dtype": dtype, "shape": shape, "raw_bytes": raw_bytes, "codec": header["codec"],
               "params": header["params"], "payload_bytes": payload, "parts": parts}
    return checked, 12 + head_len


def decode_array(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES,
                 verify_parts: bool = True) -> np.ndarray:
    """An encoded array block -> the array (its dtype and shape), refusing an array of
    more than ``max_bytes`` (or parts out of proportion to it) before allocating anything.  The result may be a
    read-only view of the decoded bytes.  ``verify_parts=False`` skips the parts'
    checksums, for callers that verified the whole block already (the store does)."""
    header, offset = read_header(data)
    data = memoryview(data).cast("B")   # slices without copies
    dtype, shape = header["dtype"], header["shape"]
    if header["raw_bytes"] > max_bytes:
        raise CodecError(f"array block declares {header['raw_bytes']} bytes of output, over "
                         f"the limit of {max_bytes}")
    # Parts are never much bigger than the array (int8/binary add one scale per row).
    parts_bytes = sum(p["raw_bytes"] for p in header["parts"])
    if parts_bytes > 3 * header["raw_bytes"] + PART_SLACK_BYTES:
        raise CodecError(f"array block parts declare {parts_bytes} bytes for a "
                         f"{header['raw_bytes']}-byte array")
    codec = array_codec({"name": header["codec"], **header["params"]})
    parts = {}
    for part in header["parts"]:
        stored = data[offset:offset + part["stored_bytes"]]
        offset += part["stored_bytes"]
        if verify_parts and xxhash.xxh3_64_hexdigest(stored) != part["xxh3_64"]:
            raise CodecError(f"array block part {part['name']!r} fails its checksum (corrupt)")
        raw = _decode_stage(stored, part["stage"], part["raw_bytes"])
        parts[part["name"]] = np.frombuffer(raw, dtype=part["dtype"]).reshape(part["shape"])
    try:
        array = codec.from_parts(parts, dtype, shape)
    except (KeyError, ValueError, IndexError, TypeError) as err:
        raise CodecError(f"array block parts do not rebuild a {shape} array ({err!r})") from None
    if array.shape != shape or array.dtype != dtype:
        raise CodecError(f"array block rebuilt as {array.dtype}{array.shape}, header says "
                         f"{dtype}{shape}")
    return array


def applicable_array_codecs(dtype: np.dtype) -> list[str]:
    """Candidate specs for the codec report: every lossless variant, lossy for floats."""
    specs = ["none", "zstd:level=1", "zstd:level=3", "zstd:level=9"]
    for filt in ("shuffle", "bitshuffle", "bytedelta"):
        for cname in ("zstd", "lz4"):
            specs.append(f"blosc2:filter={filt},cname={cname}")
    if np.dtype(dtype).kind == "f":
        specs += ["fp16", "bf16", "int8", "binary"]
    return specs


TEXT_CANDIDATES = ["none", "lz4", "lz4:level=9", "gzip:level=6", "zstd:level=1",
                   "zstd:level=3", "zstd:level=9", "zstd:level=19"]
