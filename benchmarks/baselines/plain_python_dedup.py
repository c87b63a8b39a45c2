"""Baseline (b): exact dedup as a single-process Python script.

orjson + xxhash + zstandard: read every file, keep the smallest id per
normalised-text hash, hash ids into shards, sort, write zstd shards.
"""
import argparse
import glob
import os
import unicodedata

import orjson
import xxhash
import zstandard


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--num_shards", type=int, default=5)
    args = parser.parse_args(argv)
    best: dict[bytes, tuple[str, bytes]] = {}
    for path in sorted(glob.glob(args.input)):
        with open(path, "rb") as raw:
            data = zstandard.ZstdDecompressor().stream_reader(raw).read()
        for line in data.split(b"\n"):
            try:
                obj = orjson.loads(line)
                text = obj["text"]
            except (orjson.JSONDecodeError, TypeError, KeyError):
                continue
            if not isinstance(text, str):
                continue
            norm = " ".join(unicodedata.normalize("NFC", text).casefold().split())
            key = xxhash.xxh3_128_digest(norm.encode())
            doc = (str(obj.get("id")), line)
            if key not in best or doc < best[key]:
                best[key] = doc
    shards = [[] for _ in range(args.num_shards)]
    for doc in best.values():
        shards[xxhash.xxh3_64_intdigest(doc[0].encode()) % args.num_shards].append(doc)
    os.makedirs(args.output, exist_ok=True)
    cctx = zstandard.ZstdCompressor(level=3)
    for i, docs in enumerate(shards):
        docs.sort()
        payload = b"".join(line + b"\n" for _, line in docs)
        with open(os.path.join(args.output, f"shard-{i:05d}.jsonl.zst"), "wb") as f:
            f.write(cctx.compress(payload))


if __name__ == "__main__":
    main()
