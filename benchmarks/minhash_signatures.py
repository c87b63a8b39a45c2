"""MinHash signature stage, one core: transforms.reduction.minhash vs datasketch.MinHash.

    python -m benchmarks.minhash_signatures --corpus benchmarks/data/c100k --docs 2000

Same documents, same shingles (word 5-grams of the normalised text), same
num_perm, from raw text to signature on both sides.  datasketch is run the two
ways people use it: ``update_batch`` (its numpy path) and ``update`` per shingle.
Rounds are interleaved; medians of CPU time (``time.process_time``: the machine
is shared, and CPU time does not count waiting for a core) are reported.  Needs ``pip install datasketch``
(the ``bench`` extra).
"""
import argparse
import glob
import json
import os
import statistics
import time

import orjson
import zstandard

from transforms.core.hashing import normalise_for_hash
from transforms.reduction.minhash import MinHasher


def load_texts(corpus: str, docs: int) -> list[str]:
    texts = []
    for path in sorted(glob.glob(os.path.join(corpus, "*.jsonl.zst"))):
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().stream_reader(f).read()
        for line in data.splitlines():
            try:
                text = orjson.loads(line).get("text")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if isinstance(text, str):
                texts.append(text)
            if len(texts) == docs:
                return texts
    return texts


def shingles(text: str, size: int) -> list[bytes]:
    words = normalise_for_hash(text).split()
    if len(words) < size:
        return [" ".join(words).encode()] if words else []
    return [" ".join(words[i:i + size]).encode() for i in range(len(words) - size + 1)]


def ours(texts, num_perm, size, batch=256):
    hasher = MinHasher(num_perm, size)
    for lo in range(0, len(texts), batch):
        hasher.signatures(texts[lo:lo + batch])


def datasketch_batch(texts, num_perm, size):
    from datasketch import MinHash
    for text in texts:
        m = MinHash(num_perm=num_perm)
        m.update_batch(shingles(text, size))


def datasketch_loop(texts, num_perm, size):
    from datasketch import MinHash
    for text in texts:
        m = MinHash(num_perm=num_perm)
        for s in shingles(text, size):
            m.update(s)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/data/c100k")
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--num_perm", type=int, default=128)
    parser.add_argument("--shingle_size", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/minhash_signatures.json")
    args = parser.parse_args()
    texts = load_texts(args.corpus, args.docs)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    systems = {"beam-dataprep MinHasher (numpy, batches of 256)": ours,
               "datasketch MinHash.update_batch": datasketch_batch,
               "datasketch MinHash.update per shingle": datasketch_loop}
    times = {name: [] for name in systems}
    for _ in range(args.rounds):
        for name, fn in systems.items():
            start = time.process_time()
            fn(texts, args.num_perm, args.shingle_size)
            times[name].append(time.process_time() - start)
    results = []
    ours_rate = len(texts) / statistics.median(times[next(iter(systems))])
    for name, walls in times.items():
        rate = len(texts) / statistics.median(walls)
        results.append({"system": name, "docs": len(texts), "mb": round(mb, 2),
                        "num_perm": args.num_perm, "walls": [round(w, 3) for w in walls],
                        "docs_per_s": round(rate, 1), "ours_speedup": round(ours_rate / rate, 2)})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"{len(texts)} docs, {mb:.1f} MB of text, num_perm={args.num_perm}, "
          f"{args.shingle_size}-word shingles, one core, median of {args.rounds}\n")
    print("| system | docs per CPU s | MB per CPU s | our speed-up |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['system']} | {r['docs_per_s']:,.0f} | {r['docs_per_s'] * mb / len(texts):.2f} "
              f"| {r['ours_speedup']:.1f}x |")


if __name__ == "__main__":
    main()
