"""Cost of reading inputs exactly (issue 12): the checked reader vs the reader before it.

    python -m benchmarks.read_inputs --docs 50000 --bomb_mib 256

``ours`` is ``transforms.processing.io.parsed_lines`` (zstd frames followed, lines bounded,
repeated keys looked for, ids exact).  ``before`` is the loop it replaced, kept
here as the baseline: python-zstandard's stream reader, lines split on b"\\n",
``orjson.loads`` and the field checks.  Each variant runs in its own process
(CPU seconds and peak RSS of that process, ``benchmarks.harness.measure``) on

* a corpus of ``--docs`` documents (``benchmarks.corpus``, one ``.jsonl.zst``);
* a "bomb": a small ``.jsonl.zst`` whose first line expands to ``--bomb_mib``
  MiB (then one ordinary record).
"""
import argparse
import json
import os
import sys

import orjson
import zstandard

from benchmarks.corpus import write_corpus
from benchmarks.harness import measure


def read_before(path: str) -> int:
    """The reader as it was: no end-of-stream check, no line bound."""
    records = 0
    with open(path, "rb") as raw:
        stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        pending = b""
        while True:
            chunk = stream.read(4 << 20)
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                records += _parse_before(line)
        records += _parse_before(pending) if pending else 0
    return records


def _parse_before(line: bytes) -> int:
    if not line.strip():
        return 0
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return 0
    return 1


def read_ours(path: str) -> int:
    from transforms.processing.io import parsed_lines
    tally = dict.fromkeys(("lines", "blank_lines", "records", "bytes"), 0)
    return sum(1 for _, _, doc in parsed_lines(path, "id", "text", tally, keep_empty=True)
               if isinstance(doc, tuple))


def write_bomb(path: str, mib: int) -> None:
    with open(path, "wb") as f, zstandard.ZstdCompressor(level=3).stream_writer(f) as w:
        w.write(b'{"id": "bomb", "text": "')
        block = b"a" * (1 << 20)
        for _ in range(mib):
            w.write(block)
        w.write(b'"}\n{"id": "after", "text": "ordinary"}\n')


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=50000)
    parser.add_argument("--bomb_mib", type=int, default=256)
    parser.add_argument("--work", default="benchmarks/data/read_inputs")
    parser.add_argument("--variant", choices=("before", "ours"))
    parser.add_argument("--file")
    args = parser.parse_args()
    if args.variant:  # one measured process; both load Beam and our reader module
        import transforms.processing.io  # noqa: F401
        print((read_before if args.variant == "before" else read_ours)(args.file))
        return
    os.makedirs(args.work, exist_ok=True)
    corpus_dir = os.path.join(args.work, f"c{args.docs}")
    if not os.path.isdir(corpus_dir):
        write_corpus(corpus_dir, args.docs, files=1, compress=True)
    corpus = sorted(os.path.join(corpus_dir, f) for f in os.listdir(corpus_dir)
                    if f.endswith(".jsonl.zst"))[0]
    bomb = os.path.join(args.work, f"bomb{args.bomb_mib}.jsonl.zst")
    if not os.path.exists(bomb):
        write_bomb(bomb, args.bomb_mib)
    rows = []
    for name, path in (("corpus", corpus), ("bomb", bomb)):
        for variant in ("before", "ours"):
            got = measure([sys.executable, "-m", "benchmarks.read_inputs", "--variant", variant,
                           "--file", path])
            rows.append({"input": name, "compressed_bytes": os.path.getsize(path),
                         "variant": variant, "records": int(got["output"].split()[-1]),
                         "cpu_s": round(got["cpu_s"], 2),
                         "peak_rss_mb": round(got["peak_rss_mb"], 1)})
            print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
