"""Signature speed by shingle unit, one core: word vs character shingles, the
cost of ``auto``'s per-document script detection, and datasketch as baseline.

    python -m benchmarks.char_shingles --corpus benchmarks/data/c100k --docs 2000

English: the first ``--docs`` valid documents of the benchmark corpus.
Chinese and Japanese: as many MB of ``benchmarks.cjk_corpus`` originals.
Rows (each from raw text to signature, ``num_perm`` 128, 5-gram shingles,
batches of 256 as the job does): English with ``word`` (what ran before) and
``auto`` (the default now: ASCII documents skip detection); Chinese and
Japanese with ``auto`` (script detection, then character shingles);
``auto`` on a batch mixing the three; datasketch ``MinHash.update_batch`` on
the same character 5-grams of the Chinese texts (the baseline a user without
this package would write).  Medians of CPU time (``time.process_time``) over
interleaved rounds; peak RSS of the process at the end (one process).
Needs ``pip install datasketch`` (the ``bench`` extra).
"""
import argparse
import json
import os
import resource
import statistics
import time

import numpy as np

from benchmarks.cjk_corpus import HAN, chinese_text, japanese_text
from benchmarks.corpus import zipf_probabilities
from benchmarks.minhash_signatures import load_texts
from transforms.core.hashing import normalise_for_hash
from transforms.reduction.minhash import MinHasher, script_classes


def cjk_texts(make, mb: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    probs = zipf_probabilities(len(HAN))
    texts, size = [], 0
    while size < mb * 1e6:
        text = make(rng, int(np.exp(rng.uniform(np.log(150), np.log(6000)))), probs)
        texts.append(text)
        size += len(text.encode())
    return texts


def ours(unit):
    def run(texts, num_perm, size, batch=256):
        hasher = MinHasher(num_perm, size, shingle_unit=unit)
        for lo in range(0, len(texts), batch):
            hasher.sign(texts[lo:lo + batch])
    return run


def datasketch_chars(texts, num_perm, size):
    from datasketch import MinHash
    for text in texts:
        chars = normalise_for_hash(text)
        grams = ([chars[i:i + size].encode() for i in range(len(chars) - size + 1)]
                 if len(chars) >= size else [chars.encode()])
        m = MinHash(num_perm=num_perm)
        m.update_batch(grams)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/data/c100k")
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--num_perm", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/char_shingles.json")
    args = parser.parse_args()
    english = load_texts(args.corpus, args.docs)
    mb = sum(len(t.encode()) for t in english) / 1e6
    chinese = cjk_texts(chinese_text, mb, 1)
    japanese = cjk_texts(japanese_text, mb, 2)
    mixed = [t for triple in zip(english, chinese, japanese) for t in triple]
    script_classes()  # built once per process (~0.2-0.5 s); not counted in the rows
    cases = [("English, word (before)", english, ours("word")),
             ("English, auto", english, ours("auto")),
             ("Chinese, auto (char)", chinese, ours("auto")),
             ("Japanese, auto (char)", japanese, ours("auto")),
             ("mixed batch EN/ZH/JA, auto", mixed, ours("auto")),
             ("Chinese, datasketch update_batch of char 5-grams", chinese, datasketch_chars)]
    times = {name: [] for name, _, _ in cases}
    for _ in range(args.rounds):
        for name, texts, fn in cases:
            start = time.process_time()
            fn(texts, args.num_perm, 5)
            times[name].append(time.process_time() - start)
    rows = []
    for name, texts, _ in cases:
        cpu = statistics.median(times[name])
        size = sum(len(t.encode()) for t in texts) / 1e6
        rows.append({"case": name, "docs": len(texts), "mb": round(size, 2),
                     "cpu_s": [round(t, 3) for t in times[name]],
                     "docs_per_cpu_s": round(len(texts) / cpu, 1),
                     "mb_per_cpu_s": round(size / cpu, 3)})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "rows": rows, "peak_rss_mb": round(peak_mb)}, f, indent=1)
    print(f"num_perm={args.num_perm}, 5-gram shingles, one core, median of {args.rounds} "
          f"rounds; peak RSS {peak_mb:.0f} MB\n")
    print("| case | docs | MB | docs per CPU s | MB per CPU s |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['docs']:,} | {r['mb']:.1f} | {r['docs_per_cpu_s']:,.0f} "
              f"| {r['mb_per_cpu_s']:.2f} |")


if __name__ == "__main__":
    main()
