"""Codec benchmark: our codecs vs the raw library calls on the same bytes, lossy quality,
and compress_arrays end to end vs a plain numpy + blosc2 script.

    python -m benchmarks.codecs_bench --rows 100000 --dim 384 --repeats 5 --end_to_end

Data: embedding-like float32 rows (clustered: centres plus noise, unit-normalised;
seeded) cut into 16 MiB blocks, and text shards from ``benchmarks.corpus``.
Codec timings alternate ours and the baseline block by block in the same run
and keep each side's fastest of ``--repeats`` per block (the machine is shared
and noisy); ``overhead`` is our time over the baseline's, minus one: what our
wrapping (container, checksums, parameter and overflow checks) costs.  The
end-to-end part reports medians of whole runs.
"""
import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import time

import blosc2
import lz4.frame
import numpy as np
import orjson
import zstandard

from transforms.core.codecs import array_codec, bytes_codec, combine_metrics, decode_array

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK_BYTES = 16 << 20


def embeddings(rows: int, dim: int, seed: int = 0, clusters: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 65536):
        n = min(65536, rows - start)
        x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim)).astype(
            np.float32)
        out[start:start + n] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


# ---------------------------------------------------------------- raw library baselines

def _z(level):
    return zstandard.ZstdCompressor(level=level, write_content_size=True)


def _unz(data):
    return zstandard.ZstdDecompressor().decompress(data)


def raw_array_baseline(spec: str):
    """(encode(block) -> list of bytes, decode(list, like) -> ndarray): the same work
    written directly against numpy, zstandard and blosc2."""
    codec = array_codec(spec)
    p = codec.params
    if codec.name == "none":
        return (lambda b: [b.tobytes()],
                lambda s, like: np.frombuffer(s[0], like.dtype).reshape(like.shape))
    if codec.name == "zstd":
        return (lambda b: [_z(p["level"]).compress(b.data)],
                lambda s, like: np.frombuffer(_unz(s[0]), like.dtype).reshape(like.shape))
    if codec.name == "blosc2":
        filters = {"none": [blosc2.Filter.NOFILTER], "shuffle": [blosc2.Filter.SHUFFLE],
                   "bitshuffle": [blosc2.Filter.BITSHUFFLE],
                   "bytedelta": [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA]}[p["filter"]]
        cname = {"zstd": blosc2.Codec.ZSTD, "lz4": blosc2.Codec.LZ4,
                 "lz4hc": blosc2.Codec.LZ4HC}[p["cname"]]
        return (lambda b: [blosc2.compress2(b.data, typesize=b.dtype.itemsize,
                                            clevel=p["clevel"], codec=cname, filters=filters,
                                            filters_meta=[0] * len(filters))],
                lambda s, like: np.frombuffer(blosc2.decompress2(s[0]), like.dtype)
                .reshape(like.shape))
    z1 = _z(1)
    if codec.name == "fp16":
        return (lambda b: [z1.compress(b.astype(np.float16).data)],
                lambda s, like: np.frombuffer(_unz(s[0]), np.float16).astype(np.float32)
                .reshape(like.shape))
    if codec.name == "bf16":
        def enc(b):
            bits = b.view(np.uint32)
            top = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
            return [z1.compress(top.data)]
        return (enc, lambda s, like: (np.frombuffer(_unz(s[0]), np.uint16).astype(np.uint32)
                                      << 16).view(np.float32).reshape(like.shape))
    if codec.name == "int8":
        def enc(b):
            scale = np.abs(b).max(axis=1) / 127
            q = np.rint(b / scale[:, None]).astype(np.int8)
            return [z1.compress(q.data), z1.compress(scale.data)]

        def dec(s, like):
            q = np.frombuffer(_unz(s[0]), np.int8).reshape(like.shape)
            return q.astype(np.float32) * np.frombuffer(_unz(s[1]), np.float32)[:, None]
        return enc, dec
    if codec.name == "binary":
        def enc(b):
            return [z1.compress(np.packbits(b > 0, axis=1).data),
                    z1.compress(np.abs(b).mean(axis=1).data)]

        def dec(s, like):
            bits = np.frombuffer(_unz(s[0]), np.uint8).reshape(like.shape[0], -1)
            signs = np.unpackbits(bits, axis=1, count=like.shape[1]).astype(np.float32) * 2 - 1
            return signs * np.frombuffer(_unz(s[1]), np.float32)[:, None]
        return enc, dec
    raise ValueError(spec)


RAW_BYTES = {
    "zstd": lambda level: (lambda d: _z(level).compress(d), _unz),
    "gzip": lambda level: (lambda d: gzip.compress(d, compresslevel=level, mtime=0),
                           gzip.decompress),
    "lz4": lambda level: (lambda d: lz4.frame.compress(d, compression_level=level,
                                                       store_size=True, content_checksum=True),
                          lz4.frame.decompress),
    "none": lambda level: (bytes, bytes),
}


# ---------------------------------------------------------------- timing

def _time(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def duel(ours, raw, repeats: int) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``raw``, alternated (which goes first alternates too)."""
    a, b = [], []
    for i in range(repeats):
        if i % 2:
            b.append(_time(raw))
            a.append(_time(ours))
        else:
            a.append(_time(ours))
            b.append(_time(raw))
    return statistics.median(a), statistics.median(b)


def duel_items(ours, raw, items, repeats: int) -> tuple[float, float]:
    """Per item, ``ours(item)`` and ``raw(item)`` alternated ``repeats`` times; the sums
    over items of each side's fastest time.  The minimum is what the code costs when
    the shared machine leaves it alone; medians of whole passes swing by +-20% here."""
    total_ours = total_raw = 0.0
    for item in items:
        a, b = [], []
        for i in range(repeats):
            first, second = (ours, raw) if i % 2 == 0 else (raw, ours)
            t1 = _time(lambda: first(item))
            t2 = _time(lambda: second(item))
            (a if first is ours else b).append(t1)
            (b if first is ours else a).append(t2)
        total_ours += min(a)
        total_raw += min(b)
    return total_ours, total_raw


def mbps(nbytes, seconds):
    return nbytes / 1e6 / seconds


# ---------------------------------------------------------------- sections

ARRAY_SPECS = ["none", "zstd:level=1", "zstd:level=3", "blosc2:filter=shuffle,cname=zstd",
               "blosc2:filter=shuffle,cname=lz4", "blosc2:filter=bitshuffle,cname=zstd",
               "blosc2:filter=bytedelta,cname=zstd", "blosc2:filter=bytedelta,cname=lz4",
               "fp16", "bf16", "int8", "binary"]
TEXT_SPECS = ["none", "lz4", "zstd:level=1", "zstd:level=3", "zstd:level=9", "gzip:level=6"]


def array_codecs(data: np.ndarray, repeats: int) -> list[dict]:
    rows = max(1, BLOCK_BYTES // (data.shape[1] * data.itemsize))
    blocks = [data[i:i + rows] for i in range(0, len(data), rows)]
    results = []
    for spec in ARRAY_SPECS:
        codec = array_codec(spec)
        raw_enc, raw_dec = raw_array_baseline(spec)
        ours_stored = [codec.encode(b) for b in blocks]
        raw_stored = [raw_enc(b) for b in blocks]
        enc_ours, enc_raw = duel_items(codec.encode, raw_enc, blocks, repeats)
        triples = list(zip(ours_stored, raw_stored, blocks))
        dec_ours, dec_raw = duel_items(lambda t: decode_array(t[0]),
                                       lambda t: raw_dec(t[1], t[2]), triples, repeats)
        for s, r, b in zip(ours_stored, raw_stored, blocks):
            if codec.lossless:
                assert decode_array(s).tobytes() == b.tobytes()
            else:   # same maths as the baseline
                assert np.array_equal(decode_array(s), raw_dec(r, b))
        stored = sum(len(s) for s in ours_stored)
        raw_size = sum(len(x) for r in raw_stored for x in r)
        error = combine_metrics([codec.measure(b) for b in blocks]) if not codec.lossless \
            else {}
        results.append({
            "codec": codec.spec, "ratio": data.nbytes / stored, "ratio_raw": data.nbytes / raw_size,
            "enc_mbps": mbps(data.nbytes, enc_ours), "enc_raw_mbps": mbps(data.nbytes, enc_raw),
            "enc_overhead": enc_ours / enc_raw - 1,
            "dec_mbps": mbps(data.nbytes, dec_ours), "dec_raw_mbps": mbps(data.nbytes, dec_raw),
            "dec_overhead": dec_ours / dec_raw - 1,
            **{k: error[k] for k in ("cosine_mean", "cosine_min", "top10_overlap", "max_abs")
               if k in error}})
    return results


def text_shards(docs: int, shard_bytes: int = 8 << 20) -> list[bytes]:
    from benchmarks.corpus import generate
    lines = [line for line, truth in generate(docs, seed=0) if not (truth or {}).get("bad")]
    shards, current, size = [], [], 0
    for line in lines:
        current.append(line)
        size += len(line) + 1
        if size >= shard_bytes:
            shards.append(b"".join(x + b"\n" for x in current))
            current, size = [], 0
    if current:
        shards.append(b"".join(x + b"\n" for x in current))
    return shards


def text_codecs(shards: list[bytes], repeats: int) -> list[dict]:
    total = sum(len(s) for s in shards)
    results = []
    for spec in TEXT_SPECS:
        codec = bytes_codec(spec)
        raw_enc, raw_dec = RAW_BYTES[codec.name](codec.params.get("level"))
        stored = [codec.encode(s) for s in shards]
        assert stored == [raw_enc(s) for s in shards], f"{spec}: not the library's bytes"
        enc_ours, enc_raw = duel_items(codec.encode, raw_enc, shards, repeats)
        pairs = list(zip(stored, shards))
        dec_ours, dec_raw = duel_items(lambda p: codec.decode(p[0], len(p[1])),
                                       lambda p: raw_dec(p[0]), pairs, repeats)
        results.append({
            "codec": codec.spec, "ratio": total / sum(len(s) for s in stored),
            "enc_mbps": mbps(total, enc_ours), "enc_raw_mbps": mbps(total, enc_raw),
            "enc_overhead": enc_ours / enc_raw - 1,
            "dec_mbps": mbps(total, dec_ours), "dec_raw_mbps": mbps(total, dec_raw),
            "dec_overhead": dec_ours / dec_raw - 1})
    return results


PLAIN_SCRIPT = os.path.join(ROOT, "benchmarks", "plain_blosc2.py")


def end_to_end(data: np.ndarray, work: str, files: int, repeats: int, run_config: str,
               codec: str) -> dict:
    inputs = os.path.join(work, "npy")
    os.makedirs(inputs, exist_ok=True)
    for i, part in enumerate(np.array_split(data, files)):
        np.save(os.path.join(inputs, f"emb-{i:03d}.npy"), part)
    pattern = os.path.join(inputs, "emb-*.npy")
    block_rows = max(1, BLOCK_BYTES // (data.shape[1] * data.itemsize))
    ours_out, plain_out = os.path.join(work, "ours"), os.path.join(work, "plain")
    ours_cmd = [sys.executable, "-m", "pipelines.compress_arrays", "--input", pattern,
                "--output_roots", ours_out, "--replication", "1", "--dataset", "emb",
                "--codec", codec, "--block_rows", str(block_rows), "--run_config", run_config]
    plain_cmd = [sys.executable, PLAIN_SCRIPT, pattern, plain_out, str(block_rows), codec]

    def run(cmd, out):
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    ours, plain = duel(lambda: run(ours_cmd, ours_out), lambda: run(plain_cmd, plain_out),
                       repeats)
    from transforms import load_array
    assert load_array(os.path.join(ours_out, "emb")).tobytes() == data.tobytes()
    return {"bytes": data.nbytes, "ours_s": ours, "plain_s": plain,
            "ours_mbps": mbps(data.nbytes, ours), "plain_mbps": mbps(data.nbytes, plain),
            "speed_vs_plain": plain / ours, "run_config": run_config, "codec": codec}


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(format(r[c[0]], c[2]) if c[0] in r else "" for c in columns)
            + " |" for r in rows]
    return "\n".join([head, rule, *body])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--text_docs", type=int, default=6000)
    parser.add_argument("--end_to_end", action="store_true")
    parser.add_argument("--e2e_rows", type=int, default=None,
                        help="rows for the end-to-end part (default: --rows)")
    parser.add_argument("--e2e_files", type=int, default=4)
    parser.add_argument("--e2e_repeats", type=int, default=3)
    parser.add_argument("--e2e_codec", action="append", default=None,
                        help="codec for the end-to-end part (repeatable; default: blosc2, "
                        "our default, and blosc2:filter=shuffle,cname=lz4)")
    parser.add_argument("--run_config", default="direct_multiprocess")
    parser.add_argument("--work", default=os.path.join(ROOT, "benchmarks", "work", "codecs"))
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--blosc2_threads", type=int, default=1,
                        help="blosc2 threads for the codec tables, ours and raw alike (default "
                        "1: thread scheduling on a loaded 2-core machine swamps the comparison; "
                        "the end-to-end part keeps blosc2's default)")
    args = parser.parse_args()
    blosc2.set_nthreads(args.blosc2_threads)

    data = embeddings(args.rows, args.dim)
    print(f"embeddings: {args.rows} x {args.dim} float32 ({data.nbytes / 1e6:.0f} MB), "
          f"blocks of {BLOCK_BYTES >> 20} MiB, best of {args.repeats} alternated runs per block, "
          f"blosc2 threads {args.blosc2_threads}\n")
    arrays = array_codecs(data, args.repeats)
    print(table(arrays, [("codec", "codec", "s"), ("ratio", "ratio", ".3f"),
                         ("ratio_raw", "raw ratio", ".3f"), ("enc_mbps", "enc MB/s", ".0f"),
                         ("enc_raw_mbps", "raw enc MB/s", ".0f"),
                         ("enc_overhead", "enc overhead", "+.1%"),
                         ("dec_mbps", "dec MB/s", ".0f"), ("dec_raw_mbps", "raw dec MB/s", ".0f"),
                         ("dec_overhead", "dec overhead", "+.1%"),
                         ("cosine_mean", "cos mean", ".5f"), ("cosine_min", "cos min", ".5f"),
                         ("top10_overlap", "top-10", ".3f"), ("max_abs", "max abs", ".2g")]))
    shards = text_shards(args.text_docs)
    print(f"\ntext: {len(shards)} shard(s), {sum(map(len, shards)) / 1e6:.0f} MB of JSONL "
          f"(benchmarks.corpus, {args.text_docs} docs)\n")
    text = text_codecs(shards, args.repeats)
    print(table(text, [("codec", "codec", "s"), ("ratio", "ratio", ".3f"),
                       ("enc_mbps", "enc MB/s", ".0f"), ("enc_raw_mbps", "raw enc MB/s", ".0f"),
                       ("enc_overhead", "enc overhead", "+.1%"), ("dec_mbps", "dec MB/s", ".0f"),
                       ("dec_raw_mbps", "raw dec MB/s", ".0f"),
                       ("dec_overhead", "dec overhead", "+.1%")]))
    results = {"arrays": arrays, "text": text}
    if args.end_to_end:
        rows = args.e2e_rows or args.rows
        e2e_data = data if rows == args.rows else embeddings(rows, args.dim, seed=1)
        results["end_to_end"] = []
        print(f"\ncompress_arrays end to end ({args.run_config}, {e2e_data.nbytes / 1e6:.0f} MB "
              f"in {args.e2e_files} files, median of {args.e2e_repeats}) vs plain numpy+blosc2:\n")
        for codec in args.e2e_codec or ["blosc2", "blosc2:filter=shuffle,cname=lz4"]:
            e2e = end_to_end(e2e_data, args.work, args.e2e_files, args.e2e_repeats,
                             args.run_config, codec)
            results["end_to_end"].append(e2e)
            print(f"- {codec}: ours {e2e['ours_s']:.1f} s = {e2e['ours_mbps']:.0f} MB/s, "
                  f"plain {e2e['plain_s']:.1f} s = {e2e['plain_mbps']:.0f} MB/s, "
                  f"ours/plain speed {e2e['speed_vs_plain']:.2f}x")
        tiny = embeddings(1000, args.dim, seed=2)
        fixed = end_to_end(tiny, args.work + "-tiny", 1, args.e2e_repeats, args.run_config,
                           "blosc2")
        results["fixed_cost"] = fixed
        print(f"- fixed cost (1000 rows): ours {fixed['ours_s']:.1f} s, plain "
              f"{fixed['plain_s']:.1f} s")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
