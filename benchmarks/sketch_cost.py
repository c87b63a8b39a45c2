"""What verification sketches cost the signature stage and verification, one core.

    python -m benchmarks.sketch_cost --corpus /tmp/c100k --docs 2000

Texts: the first ``--docs`` valid English documents of the benchmark corpus,
and as many MB of Chinese and Japanese ``benchmarks.cjk_corpus`` originals.
Signature stage: ``MinHasher.sign`` (raw text to signature, 128 permutations,
5-grams, batches of 256, as the scan does) with its verification sketches
(what the job runs now) and with the sketch step left out (what it ran
before), interleaved rounds, median CPU seconds (``time.process_time``).
Verification: one comparison per pair of consecutive documents, by
``sketch_jaccard`` (now) and by ``estimated_jaccard`` of the signatures
(before).  Bytes: the mean spilled sketch record against the 512-byte signature.
"""
import argparse
import json
import os
import statistics
import time

from benchmarks.char_shingles import cjk_texts
from benchmarks.cjk_corpus import chinese_text, japanese_text
from benchmarks.minhash_signatures import load_texts
from transforms.reduction import minhash
from transforms.reduction.minhash import MinHasher, estimated_jaccard, sketch_jaccard


def sign_all(texts, with_sketches: bool, batch: int = 256):
    hasher = MinHasher(128, 5)
    keep = minhash.sketches_of
    if not with_sketches:
        minhash.sketches_of = lambda hashes, counts: [b""] * len(counts)
    try:
        out = [hasher.sign(texts[lo:lo + batch]) for lo in range(0, len(texts), batch)]
    finally:
        minhash.sketches_of = keep
    return out


def cpu(fn, *args):
    t0 = time.process_time()
    fn(*args)
    return time.process_time() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/sketch_cost.json")
    args = parser.parse_args(argv)
    english = load_texts(args.corpus, args.docs)
    mb = sum(len(t.encode()) for t in english) / 1e6
    cases = {"English (word)": english, "Chinese (char)": cjk_texts(chinese_text, mb, 1),
             "Japanese (char)": cjk_texts(japanese_text, mb, 2)}
    rows = []
    for name, texts in cases.items():
        times = {True: [], False: []}
        for _ in range(args.rounds):
            for flag in (False, True):
                times[flag].append(cpu(sign_all, texts, flag))
        signed = sign_all(texts, True)
        sketches = [s for part in signed for s in part.sketches if s]
        sigs = [row.tobytes() for part in signed for row, c in zip(part.signatures, part.counts) if c]
        pairs = list(zip(sketches, sketches[1:]))
        t_sketch = min(cpu(lambda: [sketch_jaccard(a, b) for a, b in pairs]) for _ in range(args.rounds))
        t_sig = min(cpu(lambda: [estimated_jaccard(a, b) for a, b in zip(sigs, sigs[1:])])
                    for _ in range(args.rounds))
        before, after = statistics.median(times[False]), statistics.median(times[True])
        rows.append({"case": name, "docs": len(texts), "before_docs_per_cpu_s": len(texts) / before,
                     "after_docs_per_cpu_s": len(texts) / after, "ratio": before / after,
                     "verify_before_per_cpu_s": len(pairs) / t_sig,
                     "verify_after_per_cpu_s": len(pairs) / t_sketch,
                     "sketch_bytes_mean": sum(len(s) for s in sketches) / len(sketches),
                     "sketch_bytes_max": max(len(s) for s in sketches)})
    print("| texts | docs | sign: docs/CPU s before | after | CPU s after / before | "
          "verify: comparisons/CPU s before (signatures) | after (sketches) | "
          "sketch bytes mean / max (signature: 512) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['docs']:,} | {r['before_docs_per_cpu_s']:,.0f} | "
              f"{r['after_docs_per_cpu_s']:,.0f} | {1 / r['ratio']:.2f} | "
              f"{r['verify_before_per_cpu_s']:,.0f} | {r['verify_after_per_cpu_s']:,.0f} | "
              f"{r['sketch_bytes_mean']:,.0f} / {r['sketch_bytes_max']:,} |")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
