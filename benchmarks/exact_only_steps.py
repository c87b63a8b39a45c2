"""CPU seconds of the exact-only path's per-document steps, one by one, in one process.

    python -m benchmarks.exact_only_steps --data /tmp/scale_data/c100k
    python -m benchmarks.exact_only_steps --data /tmp/scale_data/c100k --checkout /tmp/before

Reads the corpus's documents (ids and texts) and times, with ``time.process_time``
(best of ``--repeats``), what the job does per document outside the runner: the scan's
text keys (``hashing.text_keys`` over blocks of 4,096 texts), exact dedup's bucketing
(``_KeyIntoBuckets``), the hash order of kept refs (``prepare._hash_records``), the
shard plan's three reads of every batch (``sharding._bucket_bytes``,
``_in_cut_buckets``, ``_assign_batch``), pass 2's picks (``refs._PicksByUnit``), and
the shard writer's join of 64 MiB of lines and ``commit.write_atomically`` of 20 MB,
pass 2's runs (``run_sort``, ``write_runs``) and the writer's merge of a shard's runs
(``shard_merge``; see ``runs_steps``), the runs' compression at zstd levels 1, -1, -3
and -5 (``runs_zstd``: CPU s and ratio) and as lz4 frames (``runs_lz4``; both codecs'
decompression: ``runs_decompress``), and the sorts by id with and without
``id_sort_keys`` side by side (``merge_variants``; a checkout that has it).
``--checkout DIR`` imports ``transforms`` from another checkout (e.g. a ``git archive``
of main with its extension built), so a change is compared on the same documents.
Prints one JSON object: step -> CPU seconds.
"""
import argparse
import glob
import json
import os
import sys
import tempfile
import time


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return round(min(times), 3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder of .jsonl.zst files")
    parser.add_argument("--checkout", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.checkout:
        sys.path.insert(0, os.path.abspath(args.checkout))
    import orjson
    import zstandard

    from transforms.core.records import DocRef, chunked, pack
    from transforms.core.hashing import text_keys
    from transforms.prepare import _hash_records
    from transforms.processing.refs import _PicksByUnit
    from transforms.reduction.dedup import _KeyIntoBuckets
    from transforms.storage import sharding
    from transforms.storage.commit import write_atomically

    docs = []
    for index, path in enumerate(sorted(glob.glob(os.path.join(args.data, "*.jsonl.zst")))):
        with open(path, "rb") as f:
            raw = zstandard.ZstdDecompressor().stream_reader(f).read()
        for line_no, line in enumerate(raw.split(b"\n")[:-1], 1):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue   # the corpus's bad lines (dead letters in the job)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                continue
            docs.append((index, line_no, str(record["id"]), record["text"], line))
    blocks = [[d[3] for d in docs[i:i + 4096]] for i in range(0, len(docs), 4096)]
    out = {"documents": len(docs), "text_mb": round(sum(len(d[4]) for d in docs) / 1e6)}
    out["text_keys"] = best(lambda: [text_keys(b) for b in blocks], args.repeats)
    keys = [k for b in blocks for k in text_keys(b)]
    refs = [DocRef(d[2], k, d[0], d[1], len(d[4]) + 1, False, False, b"", b"")
            for d, k in zip(docs, keys)]
    batches = list(chunked(refs, 1 << 20))
    buckets = _KeyIntoBuckets(64)
    out["key_into_buckets"] = best(
        lambda: [list(buckets.process(b)) for b in batches], args.repeats)
    out["hash_records"] = best(lambda: [_hash_records(b) for b in batches], args.repeats)
    packed = [_hash_records(b) for b in batches]
    size_of = sharding.ref_size
    out["bucket_bytes"] = best(
        lambda: [list(sharding._bucket_bytes(b, size_of)) for b in packed], args.repeats)
    plans = {"": {"cuts": set(range(0, 4096, 64))}}
    out["in_cut_buckets"] = best(
        lambda: [sharding._in_cut_buckets(b, plans, size_of) for b in packed], args.repeats)
    orders = sorted(sharding.hash_orders([r.id for r in refs]))
    cuts = {"": [o + ("",) for o in orders[len(orders) // 16::len(orders) // 16]][:15]}
    out["assign_batch"] = best(
        lambda: [sharding._assign_batch(b, cuts) for b in packed], args.repeats)
    assigned = [kv for b in packed for kv in sharding._assign_batch(b, cuts)]
    picks = _PicksByUnit()

    def pick_all():
        picks.start_bundle()
        return [list(picks.process(kv, [])) for kv in assigned]
    out["picks_by_unit"] = best(pick_all, args.repeats)
    lines = [d[4] for d in docs]
    shard_lines, total = [], 0
    for line in lines:
        if total >= 64 << 20:
            break
        shard_lines.append(line)
        total += len(line) + 1
    out["shard_join_plus_newline"] = best(
        lambda: b"\n".join(shard_lines) + b"\n", args.repeats)
    out["shard_join_newline_inside"] = best(
        lambda: b"\n".join(shard_lines + [b""]), args.repeats)
    stored = os.urandom(20 << 20)
    with tempfile.TemporaryDirectory() as tmp:
        out["write_atomically_20mb"] = best(
            lambda: write_atomically(os.path.join(tmp, "shard.bin"), stored), args.repeats)
    runs_steps(docs, out, args.repeats)
    print(json.dumps(out))


def runs_steps(docs, out, repeats):
    """Pass 2's runs and the shard writer's merge: the documents dealt to 8 shards by id
    hash, each shard's documents from each of the corpus's files one run
    (``_write_runs``: sort by id, join, compress (lz4 since session 13, zstd-1 before), write), then each shard's runs merged in
    the store's order (``shard_lines``; before it, ``sorted_shard_docs`` over
    ``run_docs``).  ``run_sort``: the runs' sorts alone (``sorted_docs``)."""
    import xxhash
    import zstandard
    from transforms.storage import spill
    shard_lines = getattr(spill, "shard_lines", None)
    if shard_lines is None:   # a checkout before shard_lines: the writer's former merge
        def shard_lines(runs):
            return [d[-1] for d in spill.sorted_shard_docs(
                [doc for run in runs if run is not None for doc in spill.run_docs(run)])]
    buffers: dict = {}   # (file, shard) -> [(order, id, line)]
    for file, _, doc_id, _, line in docs:
        shard = xxhash.xxh3_64_intdigest(doc_id.encode()) % 8
        buffers.setdefault((file, shard), []).append(((0,), doc_id, line))
    out["run_sort"] = best(lambda: [spill.sorted_docs(b, False) for b in buffers.values()],
                           repeats)
    with tempfile.TemporaryDirectory() as tmp:
        def write_all():
            return [run for (file, shard), b in buffers.items()
                    for _, run in spill._write_runs({("", shard, 8): b}, tmp, f"f{file}", False)]
        out["write_runs"] = best(write_all, repeats)
        runs = write_all()
        by_shard: dict = {}
        for run in runs:
            by_shard.setdefault(run.path.rsplit("shard", 1)[1], []).append(run)
        out["shard_merge"] = best(lambda: [shard_lines(rs) for rs in by_shard.values()], repeats)
    raws = [b"\n".join(d[2] for d in spill.sorted_docs(b, False)) for b in buffers.values()]
    out["runs_zstd"] = {}   # level -> [CPU s compressing every run, ratio]: the spill's codec
    for level in (1, -1, -3, -5):
        compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
        stored = sum(len(compressor.compress(raw)) for raw in raws)
        out["runs_zstd"][level] = [best(lambda: [compressor.compress(raw) for raw in raws],
                                        repeats), round(sum(map(len, raws)) / stored, 2)]
    runs_lz4(raws, out, repeats)
    merge_variants(buffers, out, repeats)


def runs_lz4(raws, out, repeats):
    """The runs' codecs side by side on the same run bodies: ``runs_lz4``: [CPU s
    compressing every run as one lz4 frame with its content size (the spill's codec
    since session 13), ratio]; ``runs_decompress``: CPU s decompressing every run,
    zstd-1 (the former codec) and lz4."""
    import lz4.frame
    import zstandard
    frames = [lz4.frame.compress(raw, store_size=True) for raw in raws]
    out["runs_lz4"] = [best(lambda: [lz4.frame.compress(raw, store_size=True) for raw in raws],
                            repeats), round(sum(map(len, raws)) / sum(map(len, frames)), 2)]
    zstd1 = [zstandard.ZstdCompressor(level=1, write_content_size=True).compress(raw)
             for raw in raws]
    out["runs_decompress"] = {
        "zstd1": best(lambda: [zstandard.ZstdDecompressor().decompress(f) for f in zstd1],
                      repeats),
        "lz4": best(lambda: [lz4.frame.decompress(f) for f in frames], repeats)}


def merge_variants(buffers, out, repeats):
    """Sorts by id in memory, with ``id_order_key`` tuples (before ``id_sort_keys``) and
    with ``id_sort_keys``, side by side in this process: the runs' sort of their
    unsorted documents (``run_sort_*``), the shard writer's merge of a shard's sorted
    runs by ``sorted`` over them concatenated (``merge_sorted_*``) or ``heapq.merge``
    (``merge_heapq_*``); with the corpus's ids (``doc-%08d``: strings) and with them
    made integers (``..._int_ids``: ``doc-00000042`` -> ``42``)."""
    import heapq
    from transforms.core import ids as id_module
    if not hasattr(id_module, "id_sort_keys"):
        return
    order_key, sort_keys = id_module.id_order_key, id_module.id_sort_keys

    def run_sort(runs, keys_of):
        for ids, lines in runs:
            sorted(zip(keys_of(ids), lines, range(len(ids))))

    def merge(shards, keys_of):
        for runs in shards:
            ids = [i for run_ids, _ in runs for i in run_ids]
            sorted(zip(keys_of(ids), [line for _, lines in runs for line in lines]))

    def heap(shards):
        for runs in shards:
            list(heapq.merge(*[list(zip(sort_keys(ids), lines)) for ids, lines in runs]))

    def tuples(ids):
        return list(map(order_key, ids))

    for suffix, id_of in (("", str), ("_int_ids", lambda i: str(int(i[4:])))):
        runs, shards = [], {}
        for (_, shard), docs in buffers.items():
            ids, lines = [id_of(d[1]) for d in docs], [d[2] for d in docs]
            runs.append((ids, lines))
            ranked = sorted(zip(tuples(ids), lines, range(len(ids))))
            shards.setdefault(shard, []).append(([ids[r[2]] for r in ranked],
                                                 [r[1] for r in ranked]))
        shards = list(shards.values())
        out[f"run_sort_tuples{suffix}"] = best(lambda: run_sort(runs, tuples), repeats)
        out[f"run_sort_id_sort_keys{suffix}"] = best(lambda: run_sort(runs, sort_keys), repeats)
        out[f"merge_sorted_tuples{suffix}"] = best(lambda: merge(shards, tuples), repeats)
        out[f"merge_sorted_id_sort_keys{suffix}"] = best(lambda: merge(shards, sort_keys),
                                                        repeats)
        out[f"merge_heapq_id_sort_keys{suffix}"] = best(lambda: heap(shards), repeats)


if __name__ == "__main__":
    main()
