"""Baseline for compress_arrays: a plain numpy + blosc2 script, one process, no Beam.

    python benchmarks/plain_blosc2.py 'data/*.npy' out_dir block_rows blosc2:filter=shuffle,cname=lz4

Memory-maps every file (sorted), compresses each block of rows with
``blosc2.compress2`` (same filter, codec and level as ours) and writes one file
per block.  No container, checksums, replicas, manifest or error handling:
what a user would write by hand.
"""
import glob
import os
import sys

import blosc2
import numpy as np

FILTERS = {"none": [blosc2.Filter.NOFILTER], "shuffle": [blosc2.Filter.SHUFFLE],
           "bitshuffle": [blosc2.Filter.BITSHUFFLE],
           "bytedelta": [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA]}
CODECS = {"zstd": blosc2.Codec.ZSTD, "lz4": blosc2.Codec.LZ4, "lz4hc": blosc2.Codec.LZ4HC}


def main(pattern, out_dir, block_rows, spec):
    params = dict(p.split("=") for p in spec.partition(":")[2].split(",") if p)
    filters = FILTERS[params.get("filter", "shuffle")]
    codec = CODECS[params.get("cname", "zstd")]
    clevel = int(params.get("clevel", 5))
    os.makedirs(out_dir, exist_ok=True)
    block_rows = int(block_rows)
    n = 0
    for path in sorted(glob.glob(pattern)):
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        for start in range(0, len(array), block_rows):
            block = np.ascontiguousarray(array[start:start + block_rows])
            data = blosc2.compress2(block, typesize=block.dtype.itemsize, clevel=clevel,
                                    codec=codec, filters=filters, filters_meta=[0] * len(filters))
            with open(os.path.join(out_dir, f"block-{n:05d}.b2"), "wb") as f:
                f.write(data)
            n += 1


if __name__ == "__main__":
    main(*sys.argv[1:])
