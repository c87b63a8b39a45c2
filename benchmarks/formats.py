"""Formats: Parquet input scan throughput, Parquet <-> JSONL store agreement, and the
scan of one large JSON Lines file split across workers.

    python -m benchmarks.corpus --docs 100000 --files 8 --out /tmp/c100k
    python -m benchmarks.formats scan --corpus /tmp/c100k --work /tmp/fmt
    python -m benchmarks.formats same --corpus /tmp/c100k --work /tmp/fmt
    python -m benchmarks.corpus --docs 330000 --files 1 --uncompressed --out /tmp/c1g
    python -m benchmarks.formats split --corpus /tmp/c1g --work /tmp/fmt
    python -m benchmarks.formats frames --corpus /tmp/c1g --work /tmp/fmt --out /tmp/c1gz
    python -m benchmarks.formats split --corpus /tmp/c1gz --work /tmp/fmt --before /tmp/old

``scan``: the same documents as JSONL.zst files and as Parquet files (one per
JSONL file, row groups of 8192 rows); the scan's per-document work (read,
parse or convert, text key) timed in this process by CPU seconds, each input
three times, median.  ``same``: prepare_corpus on direct_multiprocess with
Parquet in -> JSONL.zst store, and JSON Lines in -> Parquet store; both
stores read back through the manifest and compared record by record (id,
text, carried fields and their JSON types).  ``split``: prepare_corpus on one
uncompressed JSON Lines file, direct_multiprocess with 1 and with 2 workers in
``--pairs`` interleaved pairs (wall, CPU of the process tree and of each of its
processes, peak RSS, load average before and after each run); the median of the
pairs' wall ratios.  ``pass2``: the CPU of the second pass over that file
in one process, as one task and range by range.  ``frames``: the corpus's one
JSON Lines file as a ``.jsonl.zst`` of many frames (zstd level 3, a frame every
1 to 4 MiB of decompressed bytes, sizes seeded, cut anywhere, so most frames end
inside a line), and the driver's cost of finding the frames (``plan_splits``).
``split --before DIR``: also the 2-worker run of the code checked out in DIR
(e.g. ``git archive <commit> | tar -x -C DIR``), the baseline of a change.
Results go to benchmarks/results/formats_<what>.json.
"""
import argparse
import glob
import os
import shutil
import statistics
import sys
import time

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.harness import measure

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def _jsonl_files(corpus):
    return sorted(glob.glob(os.path.join(corpus, "*.jsonl*")))


def to_parquet(corpus: str, out: str) -> list[str]:
    """Each JSON Lines file of the corpus -> a Parquet file of its good records."""
    from transforms.processing.io import BadRecord, open_text_stream, numbered_lines, parse_line
    os.makedirs(out, exist_ok=True)
    paths = []
    for path in _jsonl_files(corpus):
        target = os.path.join(out, os.path.basename(path).split(".")[0] + ".parquet")
        rows = []
        with open_text_stream(path) as stream:
            for line_no, raw in numbered_lines(stream):
                try:
                    parse_line(raw, "id", "text", f"{path}:{line_no}")
                except BadRecord:
                    continue
                rows.append(orjson.loads(raw))
        pq.write_table(pa.Table.from_pylist(rows), target, row_group_size=8192,
                       compression="zstd")
        paths.append(target)
    return paths


def _scan_jsonl(paths):
    from apache_beam.metrics import Metrics  # noqa: F401 - the DoFn makes counters
    from transforms.processing.io import JsonlFileDoFn
    reader = JsonlFileDoFn("id", "text")
    return sum(_key_texts(reader.documents(path)) for path in paths)


def _key_texts(documents) -> int:
    """Text keys of the documents' texts in blocks of 4096, as the scan does -> count."""
    from transforms.core.hashing import text_keys
    docs, block = 0, []
    for line_no, doc in documents:
        if line_no is None:
            continue
        block.append(doc[1])
        if len(block) == 4096:
            docs += len(text_keys(block))
            block = []
    return docs + len(text_keys(block))


def _scan_parquet(paths):
    from transforms.processing.parquet import ParquetSource, parquet_units, unit_documents
    docs = 0
    tally = dict.fromkeys(("lines", "records", "bytes", "blank_lines"), 0)
    for index, path in enumerate(paths):
        for _, _, first, stop in parquet_units(index, path):
            with ParquetSource(path) as source:
                docs += _key_texts(unit_documents(source, first, stop, "id", "text", False,
                                                  32 << 20, lambda reason: None, tally))
    return docs


def bench_scan(args):
    parquet = to_parquet(args.corpus, os.path.join(args.work, "parquet"))
    jsonl = _jsonl_files(args.corpus)
    out = {"corpus": args.corpus, "jsonl_bytes": sum(os.path.getsize(p) for p in jsonl),
           "parquet_bytes": sum(os.path.getsize(p) for p in parquet)}
    for name, fn, paths in (("jsonl_zst", _scan_jsonl, jsonl),
                            ("parquet", _scan_parquet, parquet)):
        cpu = []
        for _ in range(3):
            start = time.process_time()
            docs = fn(paths)
            cpu.append(time.process_time() - start)
        out[name] = {"docs": docs, "cpu_s": statistics.median(cpu),
                     "docs_per_cpu_s": docs / statistics.median(cpu)}
    out["ratio_parquet_over_jsonl"] = (out["parquet"]["docs_per_cpu_s"]
                                       / out["jsonl_zst"]["docs_per_cpu_s"])
    return out


def _job(inputs, root, *flags, workers=None, timeline_seconds=None, code=None):
    """prepare_corpus on direct_multiprocess, measured; ``code``: run the checkout in
    that folder instead of this one (its ``pipelines`` and ``transforms``)."""
    cmd = [sys.executable, "-m", "pipelines.prepare_corpus", "--input", inputs,
           "--output_roots", root, "--dataset", "ds", "--run_config",
           "run_configs/direct_multiprocess.yaml", *flags]
    if workers:
        cmd += ["--direct_num_workers", str(workers)]
    shutil.rmtree(root, ignore_errors=True)
    if code is not None:
        here = os.getcwd()
        os.chdir(code)
        try:
            result = measure(cmd, timeline_seconds=timeline_seconds,
                             env={**os.environ, "PYTHONPATH": code})
        finally:
            os.chdir(here)
    else:
        result = measure(cmd, timeline_seconds=timeline_seconds)
    result.pop("output")
    return result


def _store_records(store: str) -> dict:
    from transforms.storage.store import load_manifest, read_shard_verified
    manifest = load_manifest(store)
    records = {}
    for shard in manifest["shards"]:
        for line in read_shard_verified(manifest, store, shard).splitlines():
            record = orjson.loads(line)
            records[record["id"]] = record
    return records


def bench_same(args):
    parquet_dir = os.path.join(args.work, "parquet")
    if not glob.glob(os.path.join(parquet_dir, "*.parquet")):
        to_parquet(args.corpus, parquet_dir)
    a = os.path.join(args.work, "store_from_parquet")
    b = os.path.join(args.work, "store_parquet")
    out = {"parquet_in_jsonl_store": _job(os.path.join(parquet_dir, "*.parquet"), a),
           "jsonl_in_parquet_store": _job(os.path.join(args.corpus, "*.jsonl.zst"), b,
                                          "--format", "parquet")}
    left, right = _store_records(os.path.join(a, "ds")), _store_records(os.path.join(b, "ds"))
    kinds = {(k, type(v).__name__) for r in left.values() for k, v in r.items()}
    out.update(records=len(left), same_ids=sorted(left) == sorted(right),
               same_records=left == right, field_types=sorted(kinds),
               differing=[i for i in sorted(left) if left[i] != right.get(i)][:5])
    return out


def bench_split(args):
    """1 and 2 workers in ``args.pairs`` interleaved pairs (the order alternates:
    1,2 then 2,1 ...), so drifting load on a shared machine hits both alike."""
    (path,) = _jsonl_files(args.corpus)
    out = {"file": path, "bytes": os.path.getsize(path), "flags": args.flags, "runs": []}
    for pair in range(args.pairs):
        ratio = {}
        for workers in ((1, 2) if pair % 2 == 0 else (2, 1)):
            load = os.getloadavg()
            result = _job(path, os.path.join(args.work, f"split{workers}"), *args.flags,
                          workers=workers, timeline_seconds=2)
            run = {"pair": pair, "workers": workers, **result, "load_before": load,
                   "load_after": os.getloadavg()}
            out["runs"].append(run)
            ratio[workers] = run["wall_s"]
            print(f"pair {pair} workers {workers}: {run['wall_s']:.1f} s wall, "
                  f"{run['cpu_s']:.1f} CPU s, load {load[0]:.1f}", file=sys.stderr)
        out.setdefault("pair_wall_ratios", []).append(ratio[2] / ratio[1])
    for workers in (1, 2):
        runs = [r for r in out["runs"] if r["workers"] == workers]
        out[f"workers_{workers}"] = {
            "wall_s_median": statistics.median(r["wall_s"] for r in runs),
            "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs)}
    if args.before:   # the baseline: the code before the change, 2 workers, after the pairs
        load = os.getloadavg()
        result = _job(path, os.path.join(args.work, "split_before"), *args.flags, workers=2,
                      timeline_seconds=2, code=os.path.abspath(args.before))
        out["before_2_workers"] = {"code": args.before, **result, "load_before": load,
                                   "load_after": os.getloadavg()}
        print(f"before, workers 2: {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} CPU s, "
              f"load {load[0]:.1f}", file=sys.stderr)
    out["wall_ratio_2_over_1_median_of_pairs"] = statistics.median(out["pair_wall_ratios"])
    out["wall_ratio_2_over_1_of_medians"] = (out["workers_2"]["wall_s_median"]
                                             / out["workers_1"]["wall_s_median"])
    return split_summary(out)


def bench_frames(args):
    """The corpus's one file -> ``args.out``/<name>.zst in frames of 1-4 MiB."""
    import random
    import zstandard
    from transforms.processing.splits import plan_splits
    (path,) = _jsonl_files(args.corpus)
    os.makedirs(args.out, exist_ok=True)
    target = os.path.join(args.out, os.path.basename(path) + ".zst")
    sizes, rng = [], random.Random(14)
    compressor = zstandard.ZstdCompressor(level=3)
    began = time.process_time()
    with open(path, "rb") as src, open(target, "wb") as dst:
        while piece := src.read(rng.randint(1 << 20, 4 << 20)):
            dst.write(compressor.compress(piece))
            sizes.append(len(piece))
    compress_cpu = time.process_time() - began
    began = time.perf_counter()
    plan = plan_splits([target])
    walk_s = time.perf_counter() - began
    return {"file": target, "bytes": os.path.getsize(target), "decompressed_bytes": sum(sizes),
            "frames": len(sizes), "frame_bytes_min": min(sizes), "frame_bytes_max": max(sizes),
            "compress_cpu_s": round(compress_cpu, 1), "plan_splits_wall_s": round(walk_s, 3),
            "ranges": len(plan.get(0, [])) or 1}


def bench_pass2(args):
    """CPU of pass 2 (``_ExtractRuns``) over the one file of the corpus with every
    good line picked (16 shards): as one task (before) and range by range (now)."""
    import shutil as _shutil
    from transforms.core.records import Pick, ScannedRange
    from transforms.processing.refs import _ExtractRuns
    from transforms.processing.splits import RangeReader, count_lines, plan_splits
    (path,) = _jsonl_files(args.corpus)
    size = os.path.getsize(path)
    picks, whole = [], __import__("xxhash").xxh3_64()
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            whole.update(raw)
            try:
                doc_id = str(orjson.loads(raw)["id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            picks.append(Pick(line_no, len(raw.strip()) + 1, False, (0,), doc_id,
                              ("", line_no % 16, 16)))
    ranges, first = [], 1
    for start, end in plan_splits([path])[0]:
        with RangeReader(path, start, end) as reader:
            while reader.read():
                pass
        lines = count_lines(path, start, end, size)
        ranges.append(ScannedRange(0, start, end, first, lines, reader.digest.hexdigest()))
        first += lines
    spill = os.path.join(args.work, "pass2_runs")

    def run(unit, unit_picks, digests, by_start):
        _shutil.rmtree(spill, ignore_errors=True)
        fn = _ExtractRuns([path], "id", "text", spill, 64 << 20, False)
        began = time.process_time()
        for _ in fn.process((unit, [unit_picks]), digests, by_start, []):
            pass
        return time.process_time() - began

    out = {"file": path, "bytes": size, "picked_lines": len(picks), "ranges": len(ranges)}
    out["one_task_cpu_s"] = run((0, 0), picks, {0: whole.hexdigest()}, {})
    by_start = {(0, r.start): r for r in ranges}
    per_range = [run((0, r.start), [p for p in picks
                                    if r.first_line <= p.line < r.first_line + r.lines],
                     {}, by_start) for r in ranges]
    out["range_cpu_s"] = [round(x, 2) for x in per_range]
    out["ranges_cpu_s_sum"] = sum(per_range)
    out["ranges_cpu_s_max"] = max(per_range)
    _shutil.rmtree(spill, ignore_errors=True)
    return out


def critical_cpu_s(timeline: list) -> float:
    """CPU seconds on the critical path of a run, from its ``cpu_timeline``: per
    sampling interval the largest CPU increment of any one process (the job's
    processes are single-threaded Python), summed.  On free cores the run cannot
    be shorter; on a loaded machine it is the wall the run would approach if it
    had every core it can use, as every process is slowed alike."""
    total, before = 0.0, {}
    for _, sample in timeline:
        total += max([value - before.get(key, 0.0) for key, value in sample.items()] or [0.0])
        before = sample
    return total


def split_summary(result: dict) -> dict:
    """Per run: worker processes' CPU (``python`` children of the job process) and
    the critical-path CPU; the median ratio of critical paths, 2 over 1 workers
    (and the baseline's, ``before_2_workers``, when there is one)."""
    for run in result["runs"] + ([result["before_2_workers"]]
                                 if "before_2_workers" in result else []):
        cpu = run.get("process_cpu_s", {})
        python = [v for k, v in cpu.items() if k.endswith(":python")]
        run["driver_cpu_s"] = python[0] if python else None
        run["worker_cpu_s"] = python[1:]
        if run.get("cpu_timeline"):
            run["critical_cpu_s"] = round(critical_cpu_s(run["cpu_timeline"]), 1)
    pairs = {}
    for run in result["runs"]:
        if "critical_cpu_s" in run:
            pairs.setdefault(run["pair"], {})[run["workers"]] = run["critical_cpu_s"]
    ratios = [p[2] / p[1] for p in pairs.values() if 1 in p and 2 in p]
    if ratios:
        result["critical_cpu_ratio_2_over_1_median"] = statistics.median(ratios)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("scan", "same", "split", "split_summary", "pass2",
                                         "frames"))
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--flags", nargs="*", default=[],
                        help="extra prepare_corpus flags for split (e.g. --no_near_dedup)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="split: interleaved pairs of 1- and 2-worker runs (default 3)")
    parser.add_argument("--out", help="frames: folder of the .jsonl.zst written")
    parser.add_argument("--before", default=None,
                        help="split: also run 2 workers on the code checked out in this folder")
    parser.add_argument("--results", default=None,
                        help="results file name in benchmarks/results (default "
                             "formats_<what>.json)")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    if args.what == "split_summary":   # recompute the derived figures of a split result
        name = args.results or "formats_split.json"
        with open(os.path.join(RESULTS, name), "rb") as f:
            result = split_summary(orjson.loads(f.read()))
        with open(os.path.join(RESULTS, name), "wb") as f:
            f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        return
    result = {"scan": bench_scan, "same": bench_same, "split": bench_split,
              "pass2": bench_pass2, "frames": bench_frames}[args.what](args)
    result["command"] = " ".join(["python -m benchmarks.formats"] + sys.argv[1:])
    name = args.results or f"formats_{args.what}.json"
    with open(os.path.join(RESULTS, name), "wb") as f:
        f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
