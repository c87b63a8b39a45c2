"""``.npy`` inputs as row blocks: inspect headers, plan blocks, read them memory-mapped.

The inputs are taken in sorted path order and seen as one array: their rows
concatenated.  ``plan_blocks`` cuts that array into blocks of ``block_rows``
rows (the last may be shorter); a block may span files.  Files are opened with
``allow_pickle=False`` and memory-mapped (local paths) or read by byte range
through Beam's FileSystems (``gs://``, ``s3://``...), so a worker touches only
its block's rows.  Object arrays and pickles are refused with a clear error,
and so is a file whose size is not what its header declares (truncated, or
a shape that would plan billions of blocks from a few bytes): checked in
``inspect_npy``, before any block is planned.
"""
import importlib
import math

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.core.codecs import CodecError, check_plain_dtype
from transforms.processing.io import InputError, NoInputFiles, expand_patterns, input_files
from transforms.processing import live

NAMESPACE = "dataprep.arrays"


class NpyError(ValueError):
    """An input file is not a usable .npy array, or the inputs do not fit together."""


def match_inputs(pattern: str) -> list[str]:
    """Paths of a path, directory (its ``.npy`` files, recursively), glob, or a
    comma-separated list of them; sorted, no repeats (``transforms.processing.io.expand_patterns``).
    Raises ``NoInputFiles`` when an item names no ``.npy`` file."""
    if not any(p.strip() for p in pattern.split(",")):
        raise NoInputFiles("--input names no file")
    try:
        return expand_patterns(pattern, recognised=lambda p: p.lower().endswith(".npy"),
                               extensions=".npy")
    except InputError as err:
        raise NpyError(str(err)) from None


def inspect_npy(path: str) -> dict:
    """``{"path", "rows", "dtype", "trailing", "offset", "fortran"}`` from the header."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            version = np.lib.format.read_magic(f)
            reader = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if reader is None:
                raise NpyError(f"{path}: unsupported .npy version {version}")
            shape, fortran, dtype = reader(f)
            offset = f.tell()
        size = input_files([path])[0]["bytes"]
    except NpyError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the reason, it is not a .npy file
        raise NpyError(f"{path} is not a readable .npy file ({err}); pickles and other "
                       "formats are not accepted") from None
    if dtype.hasobject:
        raise NpyError(f"{path} holds Python objects (dtype {dtype}); object arrays would need "
                       "pickle, which is refused (allow_pickle=False)")
    try:
        check_plain_dtype(dtype, path)
    except CodecError as err:
        raise NpyError(str(err)) from None
    if len(shape) == 0:
        raise NpyError(f"{path} holds a 0-d scalar; inputs must have rows (ndim >= 1)")
    declared = offset + math.prod(shape) * dtype.itemsize
    if size is not None and size < declared:
        raise NpyError(f"{path} is truncated: its header declares shape {tuple(shape)} of "
                       f"{dtype.str} ({declared} bytes with the header), the file holds "
                       f"{size} bytes")
    return {"path": path, "rows": int(shape[0]), "dtype": dtype.str,
            "trailing": [int(s) for s in shape[1:]], "offset": offset, "fortran": bool(fortran)}


def check_compatible(sources: list[dict]) -> tuple[np.dtype, tuple]:
    """All inputs share dtype and trailing shape, or a NpyError names the odd ones."""
    first = sources[0]
    odd = [s for s in sources if (s["dtype"], s["trailing"]) != (first["dtype"], first["trailing"])]
    if odd:
        listed = "; ".join(f"{s['path']}: {s['dtype']} rows x {tuple(s['trailing'])}"
                           for s in [first] + odd[:5])
        raise NpyError(f"input files disagree on dtype or trailing shape ({listed}); "
                       "all files must hold rows of one kind")
    return np.dtype(first["dtype"]), tuple(first["trailing"])


def plan_blocks(sources: list[dict], block_rows: int) -> list[dict]:
    """Blocks of ``block_rows`` rows over the inputs' concatenated rows.

    Each block: ``{"index", "row_start", "rows", "pieces": [[file_index, first row, rows]]}``.
    No rows at all still gives one empty block, so the store records dtype and shape.
    """
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    total = sum(s["rows"] for s in sources)
    blocks = []
    for index in range(max(1, math.ceil(total / block_rows))):
        start, stop = index * block_rows, min(total, (index + 1) * block_rows)
        pieces, offset = [], 0
        for file_index, source in enumerate(sources):
            lo, hi = max(start, offset), min(stop, offset + source["rows"])
            if lo < hi:
                pieces.append([file_index, lo - offset, hi - lo])
            offset += source["rows"]
        blocks.append({"index": index, "row_start": start, "rows": stop - start,
                       "pieces": pieces})
    return blocks


def default_block_rows(trailing: tuple, dtype: np.dtype, target_bytes: int = 16 << 20) -> int:
    row_bytes = max(1, math.prod(trailing) * dtype.itemsize)
    return max(1, target_bytes // row_bytes)


def _read_rows(source: dict, first: int, count: int, cache: dict) -> np.ndarray:
    dtype, trailing = np.dtype(source["dtype"]), tuple(source["trailing"])
    path = source["path"]
    if "://" not in path or path.startswith("file://"):
        if path not in cache:
            try:
                cache[path] = np.load(path.removeprefix("file://"), mmap_mode="r",
                                      allow_pickle=False)
            except (OSError, ValueError) as err:  # changed since the plan: name it
                raise NpyError(f"{path}: cannot read rows {first}..{first + count}: "
                               f"{' '.join(str(err).split())}") from None
        return np.array(cache[path][first:first + count])   # copy out of the map
    if source["fortran"]:
        raise NpyError(f"{path}: Fortran-order .npy files are read only from local paths")
    row_bytes = math.prod(trailing) * dtype.itemsize
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.seek(source["offset"] + first * row_bytes)
        data = f.read(count * row_bytes)
    if len(data) != count * row_bytes:
        raise NpyError(f"{path} is shorter than its header declares")
    return np.frombuffer(data, dtype=dtype).reshape((count,) + trailing).copy()


def read_block(block: dict, sources: list[dict], cache: dict | None = None) -> np.ndarray:
    cache = {} if cache is None else cache
    first = sources[0]
    if not block["pieces"]:
        return np.empty((0,) + tuple(first["trailing"]), dtype=np.dtype(first["dtype"]))
    pieces = [_read_rows(sources[i], lo, n, cache) for i, lo, n in block["pieces"]]
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def load_function(spec: str):
    """``module:function`` -> the function (imported; a clear error if it is not there)."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"--map must be module:function, got {spec!r}")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"--map {spec}: cannot import ({err})") from None
    if not callable(function):
        raise ValueError(f"--map {spec} is not callable")
    return function


class _ReadBlock(beam.DoFn):
    def __init__(self, sources, live_counters=None):
        self.sources = sources
        self.live_counters = live_counters
        self.blocks = Metrics.counter(NAMESPACE, "blocks_read")
        self.rows = Metrics.counter(NAMESPACE, "rows_read")

    def setup(self):
        self.cache = {}
        live.send_to(self.live_counters)

    def process(self, block):
        array = read_block(block, self.sources, self.cache)
        self.blocks.inc()
        self.rows.inc(array.shape[0])
        yield block["index"], block["row_start"], array


class _MapBlock(beam.DoFn):
    """Applies the user's ``--map`` function to a block; rows must stay rows."""

    def __init__(self, spec):
        self.spec = spec
        self.mapped = Metrics.counter(NAMESPACE, "blocks_mapped")

    def setup(self):
        self.function = load_function(self.spec)

    def process(self, element):
        index, row_start, array = element
        out = self.function(array)
        if not isinstance(out, np.ndarray) or out.ndim < 1 or out.shape[0] != array.shape[0]:
            got = f"{type(out).__name__} {getattr(out, 'shape', '')}"
            raise ValueError(f"--map {self.spec} turned block {index} of {array.shape[0]} rows "
                             f"into {got}; it must return an ndarray with the same rows")
        self.mapped.inc()
        yield index, row_start, out


class ReadNpyBlocks(beam.PTransform):
    """Planned blocks -> ``(block index, first row, ndarray)``, spread over workers,
    then ``map_spec`` (``module:function``) applied to each block if given.
    ``live_counters``: a ``transforms.processing.live.Receiver`` address the reading
    workers send their live counter totals to (display only; None: nowhere)."""

    def __init__(self, sources: list[dict], blocks: list[dict], map_spec: str | None = None,
                 live_counters: str | None = None):
        super().__init__()
        self.sources = sources
        self.blocks = blocks
        self.map_spec = map_spec
        self.live_counters = live_counters

    def expand(self, pbegin):
        arrays = (
            pbegin
            | "PlanBlocks" >> beam.Create(self.blocks)
            | "Spread" >> beam.Reshuffle()
            | "ReadBlocks" >> beam.ParDo(_ReadBlock(self.sources, self.live_counters)))
        if self.map_spec:
            arrays = arrays | "MapBlocks" >> beam.ParDo(_MapBlock(self.map_spec))
        return arrays
