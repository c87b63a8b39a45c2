"""Try every applicable codec on a sample of text or arrays; print ratio, speed and error.

Input is JSON Lines (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``), ``.npy`` arrays,
or a store folder (``ROOT/DATASET`` with a manifest, text or array).  With
``--codec auto`` (the default) the ``ChooseCodec`` policy names the codec that
``prepare_corpus``/``compress_arrays --codec auto`` would take: the highest
ratio within ``--max_error`` and ``--min_encode_mbps``.
"""
import argparse
import os

import numpy as np
import orjson

from pipelines import cli
from transforms.reduction.codec_choice import (
    ChooseCodec, choice_record, compare_arrays, compare_text, format_table, sample_text)
from transforms.core.codecs import TEXT_CANDIDATES, applicable_array_codecs
from transforms.processing.npy import (
    check_compatible, default_block_rows, inspect_npy, match_inputs, plan_blocks, read_block)
from transforms.storage.commit import write_atomically
from transforms.storage.store import (
    StoreError, datasets_in, load_manifest, read_shard_verified)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser("codec_report", __doc__)
    parser.add_argument("--input", required=True,
                        help="JSONL files, .npy files (path, glob or comma-separated) or a "
                        "store folder holding manifest.json")
    parser.add_argument("--kind", choices=("auto", "text", "arrays"), default="auto",
                        help="what the input holds (default: from the file names / manifest)")
    parser.add_argument("--sample_bytes", type=cli.byte_size, default=None,
                        help="raw bytes to sample (default: 8MiB of text, 32MiB of arrays)")
    parser.add_argument("--block_rows", type=cli.positive_int, default=None,
                        help="rows per block for arrays (default: about 16 MiB)")
    parser.add_argument("--candidates", action="append", default=None, metavar="SPEC",
                        help="a codec spec to try (repeat the flag); default: every "
                        "applicable codec")
    parser.add_argument("--codec", choices=("auto", "none"), default="auto",
                        help="auto: also name the codec the policy chooses; none: table only")
    parser.add_argument("--max_error", default=None,
                        help="error limits for lossy codecs, e.g. 'cosine>=0.999' or "
                        "'abs<=1e-3'; without it only lossless codecs are chosen")
    parser.add_argument("--min_encode_mbps", type=float, default=0.0,
                        help="slowest acceptable encoder, MB/s (default: 0)")
    parser.add_argument("--repeats", type=cli.positive_int, default=2,
                        help="timing runs per codec; the best is reported (default: 2)")
    parser.add_argument("--report", default=None,
                        help="also write the table and choice as JSON to this path")
    return parser


def _is_store(path: str) -> bool:
    try:
        load_manifest(path)
    except StoreError:
        return False
    return True


def _evenly(items: list, count: int) -> list:
    count = max(1, min(len(items), count))
    picks = sorted({round(i * (len(items) - 1) / max(count - 1, 1)) for i in range(count)})
    return [items[i] for i in picks]


def sample_store(path: str, limit: int) -> tuple[str, list]:
    manifest = load_manifest(path)
    shards = [s for s in manifest["shards"] if s["records"]] or manifest["shards"]
    per_shard = max(1, max(s["raw_bytes"] for s in shards))
    picked = _evenly(shards, max(1, limit // per_shard))
    content = [read_shard_verified(manifest, path, s) for s in picked]
    return ("arrays" if manifest.get("kind") == "array" else "text"), content


def sample_npy(pattern: str, limit: int, block_rows: int | None) -> list[np.ndarray]:
    sources = [inspect_npy(p) for p in match_inputs(pattern)]
    dtype, trailing = check_compatible(sources)
    rows = block_rows or default_block_rows(trailing, dtype)
    blocks = plan_blocks(sources, rows)
    block_bytes = max(1, rows * max(1, int(np.prod(trailing, dtype=np.int64))) * dtype.itemsize)
    return [read_block(b, sources) for b in _evenly(blocks, max(1, limit // block_bytes))]


def gather(args) -> tuple[str, list]:
    kind = args.kind
    if _is_store(args.input.rstrip("/")):
        found, content = sample_store(args.input.rstrip("/"),
                                      args.sample_bytes or (32 << 20))
        if kind not in ("auto", found):
            raise ValueError(f"{args.input} is a {found} store, not {kind}")
        return found, content
    folder = args.input.rstrip("/")
    if os.path.isdir(folder) and datasets_in(folder):   # a root given for its dataset
        raise cli.BadPath(f"no store at {args.input} (no manifest.json in it)",
                          cli.store_hint(folder, lambda store: f"--input {store}"))
    if kind == "auto":
        parts = [p.strip() for p in args.input.split(",") if p.strip()]
        kind = "arrays" if all(p.endswith(".npy") for p in parts) else "text"
    if kind == "arrays":
        return kind, sample_npy(args.input, args.sample_bytes or (32 << 20), args.block_rows)
    return kind, sample_text(args.input, args.sample_bytes or (8 << 20))


def run(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        policy = ChooseCodec(args.max_error, args.min_encode_mbps)
    except ValueError as err:
        parser.error(str(err))
    if args.report:
        cli.check_output_folder(args.report, "--report")
    kind, sample = gather(args)
    if kind == "arrays":
        candidates = args.candidates or applicable_array_codecs(sample[0].dtype)
        rows = compare_arrays(sample, candidates, repeats=args.repeats)
    else:
        rows = compare_text(sample, args.candidates or TEXT_CANDIDATES, repeats=args.repeats)
    raw = sum(r["raw_bytes"] for r in rows[:1])
    chosen = policy.choose(rows) if args.codec == "auto" else None
    print(f"{kind} sample: {raw:,} bytes from {args.input}\n")
    print(format_table(rows, chosen, policy))
    result = {"kind": kind, "input": args.input, "sample_bytes": raw}
    if chosen is not None:
        print(f"\npolicy {policy.describe()} chooses: {chosen['codec']}")
        result.update(choice_record(rows, chosen, policy))
    else:
        result["candidates"] = rows
    if args.report:
        try:
            # whole or not at all: a failed write leaves an earlier report as it was
            write_atomically(args.report, orjson.dumps(
                result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        except OSError as err:   # read-only, full, a folder in the way...
            raise ValueError(f"cannot write {args.report}: {cli.os_reason(err)}") from None
    return result


def main(argv=None):
    cli.run_job("codec_report", run, argv)


if __name__ == "__main__":
    main()
