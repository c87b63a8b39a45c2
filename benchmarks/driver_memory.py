"""Where the DirectRunner's memory goes: prepare_corpus with a probe after every bundle.

    python -m benchmarks.driver_memory --log /tmp/driver.tsv -- \\
        --input '/tmp/scale_data/c100k/part-*.jsonl.zst' --output_roots /tmp/w/a,/tmp/w/b \\
        --replication 2 --run_config direct_multiprocess

Runs ``pipelines.prepare_corpus.main`` in this process with
``FnApiRunner._execute_bundle`` wrapped: after every bundle one TSV row goes to
``--log``: seconds since start, stage name, RSS MB of this (driver) process,
RSS MB of each worker process (children), and the runner's live buffers
between stages (ListBuffers: encoded MB; GroupingBuffers: keys and values
held *decoded*).  A diagnostic tool, not a benchmark: the probe itself costs
a few percent of CPU.
"""
import argparse
import os
import sys
import threading
import time

import psutil
from apache_beam.runners.portability.fn_api_runner import execution, fn_runner


def _all_buffers(context):
    """(name, buffer) of every buffer the runner holds: between stages and queued."""
    seen = set()
    yield from ((bid, buf) for bid, buf in context.pcoll_buffers.items()
                if not (id(buf) in seen or seen.add(id(buf))))
    for queue in (context.queues.ready_inputs, context.queues.watermark_pending_inputs):
        for key, data_input in list(queue._q):
            for name, buf in data_input.data.items():
                if id(buf) not in seen:
                    seen.add(id(buf))
                    yield f"{key[0][-25:]}<{name}", buf


def _buffers(context) -> str:
    parts = []
    for bid, buf in _all_buffers(context):
        name = bid.decode(errors="replace") if isinstance(bid, bytes) else str(bid)
        name = name.split("/")[-1][-50:]
        if isinstance(buf, execution.GroupingBuffer):
            table = buf._table
            values = sum(len(v) for v in table.values())
            out = sum(len(b) for part in (buf._grouped_output or []) for b in part)
            parts.append(f"G:{name}:{len(table)}k/{values}v/{out / 2**20:.0f}MBout")
        elif isinstance(buf, execution.ListBuffer):
            size = sum(len(b) for b in buf._inputs) if not buf.cleared else 0
            if size > 1 << 20:
                parts.append(f"L:{name}:{size / 2**20:.0f}MB")
    return " ".join(parts)


def _rss(process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def install(log_path: str):
    start = time.monotonic()
    me = psutil.Process()
    log = open(log_path, "w", buffering=1)
    log.write("t_s\tstage\tdriver_mb\tworkers_mb\tpeak_driver_mb\tpeak_tree_mb\tbuffers\n")
    original = fn_runner.FnApiRunner._execute_bundle
    peaks = [0, 0]  # driver, whole tree, since the last row (sampled every 0.2 s)

    def sample():
        while True:
            try:
                driver = me.memory_info().rss
                tree = driver + sum(_rss(c) for c in me.children(recursive=True))
                peaks[0], peaks[1] = max(peaks[0], driver), max(peaks[1], tree)
            except psutil.Error:
                pass
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()

    def probe(self, context, bundle_context_manager, bundle_input):
        result = original(self, context, bundle_context_manager, bundle_input)
        workers = []
        for child in me.children(recursive=True):
            try:
                workers.append(child.memory_info().rss >> 20)
            except psutil.Error:
                pass
        log.write(f"{time.monotonic() - start:.1f}\t{bundle_context_manager.stage.name[:60]}\t"
                  f"{me.memory_info().rss >> 20}\t{workers}\t{peaks[0] >> 20}\t{peaks[1] >> 20}\t"
                  f"{_buffers(context)}\n")
        peaks[0] = peaks[1] = 0
        return result

    fn_runner.FnApiRunner._execute_bundle = probe


def main():
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv[:split])
    install(args.log)
    from pipelines import prepare_corpus
    prepare_corpus.main(argv[split + 1:])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
