"""Near-dedup quality on Chinese, Japanese and mixed-script near-duplicates.

    python -m benchmarks.cjk_near_dedup --originals 200 --copies 300 --seeds 0 1 2

For each corpus kind (``benchmarks.cjk_corpus``) and seed: the exact
character-5-gram Jaccard of every pair sharing a shingle, then near-dedup's
algorithm at threshold 0.8 with the job's defaults (128 permutations, bands x
rows chosen from the threshold, verification on, ``shingle_unit=auto``), run
in memory by ``tests.near_dup_corpus.reference_near_dedup`` (the tests assert
that the Beam ``NearDedup`` gives exactly its kept and removed sets).  Two
baselines in the same run: the algorithm before (``signature_verified``:
edges verified by the signatures' estimated Jaccard, every component member
removed), and ``shingle_unit=word`` with it.  Measures, against the exact
Jaccard ``J``:

* recall (the target's): of the pairs with ``J >= 0.8``, the share of which
  near-dedup removed at least one document (not both left in the output); also
  for ``J >= 0.85``; and ``recall_component`` (the earlier measure): the share
  whose two documents end in one group (one removed for the other, or both for
  one kept document);
* precision (the target's): of the removed documents, the share whose ``J``
  with the document kept for them (the ``kept`` of their removed record) is
  ``>= 0.8``; also ``>= 0.75`` and ``>= 0.7`` (the word test's margin), and
  the share that have ``J >= 0.8`` with some other member of their group.
``--sketch_sizes`` runs the job's algorithm with other verification sketch
sizes too (``sketch_<k>``: bottom-k sketches of k hashes; the job's is
``SKETCH_SIZE``).  Writes the figures as JSON to ``--out``.
"""
import argparse
import contextlib
import functools
import json
import time
from collections import defaultdict

from benchmarks.cjk_corpus import MAKERS, cjk_near_dup_corpus, exact_similarities
from tests.near_dup_corpus import reference_near_dedup, union_find_roots
from transforms.reduction import minhash
from transforms.reduction.minhash import (
    SKETCH_SIZE, LshParams, MinHasher, band_keys, estimated_jaccard)

THRESHOLD = 0.8
MEASURES = ["recall_J>=0.8", "recall_J>=0.85", "recall_component_J>=0.8",
            "precision_J(kept)>=0.8", "precision_J(kept)>=0.75", "precision_J(kept)>=0.7",
            "precision_J(member)>=0.8"]


def VARIANTS(num_perms, sketch_sizes=()):  # noqa: N802 - a constant's shape, made from the flags
    """(algorithm, shingle unit, num_perm): the job's at each num_perm (and at 128
    with each other sketch size), the one before (signature-verified) at each
    num_perm, the word baseline at 128."""
    return ([("sketch", "auto", n) for n in num_perms]
            + [(f"sketch_{k}", "auto", 128) for k in sketch_sizes if k != SKETCH_SIZE]
            + [("signature_verified", "auto", n) for n in num_perms]
            + [("signature_verified", "word", 128)])


def signature_verified(docs: dict[str, str], lsh: LshParams) -> dict:
    """The algorithm before sketches (for the baseline): edges verified by the
    estimated Jaccard of 128-position signatures, every member of a component
    removed for its smallest id -> {removed: (kept, estimated J)}."""
    ids = sorted(docs)
    sigs, counts = MinHasher.from_params(lsh).signatures([docs[i] for i in ids])
    signature = {i: s.tobytes() for i, s, c in zip(ids, sigs, counts) if c}
    buckets = defaultdict(set)
    for doc_id, sig in signature.items():
        for key in band_keys(sig, lsh.bands, lsh.rows):
            buckets[key].add(doc_id)
    edges = {(m, min(b)) for b in buckets.values() for m in b if m != min(b)}
    edges = {(u, v) for u, v in edges
             if estimated_jaccard(signature[u], signature[v]) >= lsh.threshold}
    return {node: (root, round(estimated_jaccard(signature[node], signature[root]), 4))
            for node, root in union_find_roots(edges).items()}


@contextlib.contextmanager
def sketch_size(k: int):
    """``MinHasher.sign`` makes bottom-k sketches of ``k`` hashes inside the block."""
    keep = minhash.sketches_of
    minhash.sketches_of = functools.partial(keep, size=k)
    try:
        yield
    finally:
        minhash.sketches_of = keep


def quality(docs: dict[str, str], sims: dict[tuple, float], lsh: LshParams,
            algorithm: str = "sketch") -> dict:
    """-> counts: ``docs``, ``removed``, and ``[hits, total]`` per measure
    (``MEASURES``; see the module docstring)."""
    if algorithm.startswith("sketch_"):
        with sketch_size(int(algorithm.split("_")[1])):
            return quality(docs, sims, lsh, "sketch")
    removed = (reference_near_dedup if algorithm == "sketch" else signature_verified)(docs, lsh)
    root = {doc: kept for doc, (kept, _) in removed.items()}

    def same(a, b):
        return root.get(a, a) == root.get(b, b)

    def j(a, b):
        return sims.get((min(a, b), max(a, b)), 0.0)

    out = {"docs": len(docs), "removed": len(removed)}
    for level in (0.8, 0.85):
        pairs = [p for p, s in sims.items() if s >= level]
        out[f"recall_J>={level}"] = [sum(a in root or b in root for a, b in pairs), len(pairs)]
        if level == THRESHOLD:
            out[f"recall_component_J>={level}"] = [sum(same(a, b) for a, b in pairs), len(pairs)]
    members = {}
    for doc, r in root.items():
        members.setdefault(r, [r]).append(doc)
    for level in (0.8, 0.75, 0.7):
        out[f"precision_J(kept)>={level}"] = [sum(j(d, r) >= level for d, r in root.items()),
                                              len(root)]
    out["precision_J(member)>=0.8"] = [sum(
        any(j(d, m) >= THRESHOLD for m in members[r] if m != d) for d, r in root.items()),
        len(root)]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=200)
    parser.add_argument("--copies", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num_perms", type=int, nargs="+", default=[128],
                        help="permutations to compare (128 is the job's default)")
    parser.add_argument("--sketch_sizes", type=int, nargs="*", default=[],
                        help="other verification sketch sizes to compare "
                             f"(the job's: {SKETCH_SIZE})")
    parser.add_argument("--out", default="benchmarks/results/cjk_near_dedup.json")
    args = parser.parse_args()
    rows = []
    for kind in MAKERS:
        for seed in args.seeds:
            t0 = time.process_time()
            docs = cjk_near_dup_corpus(kind, args.originals, args.copies, seed)
            sims = exact_similarities(docs)
            for algorithm, unit, num_perm in VARIANTS(args.num_perms, args.sketch_sizes):
                lsh = LshParams.resolve(THRESHOLD, num_perm, shingle_unit=unit)
                rows.append({"kind": kind, "seed": seed, "algorithm": algorithm,
                             "shingle_unit": unit, "num_perm": num_perm, "bands": lsh.bands,
                             "rows": lsh.rows, **quality(docs, sims, lsh, algorithm)})
            print(f"{kind} seed {seed}: {len(docs)} docs, "
                  f"{time.process_time() - t0:.1f} CPU s", flush=True)
    print("\nPooled over seeds; a cell is hits/total = ratio.\n")
    print("| corpus | verification | unit | num_perm | bands x rows | docs | removed | "
          + " | ".join(MEASURES) + " |")
    print("|---|---|---|---:|---:|---:|---:|" + "---:|" * len(MEASURES))
    for kind in MAKERS:
        for algorithm, unit, num_perm in VARIANTS(args.num_perms, args.sketch_sizes):
            sel = [r for r in rows if r["kind"] == kind and r["shingle_unit"] == unit
                   and r["num_perm"] == num_perm and r["algorithm"] == algorithm]
            cells = []
            for k in MEASURES:
                hits, total = (sum(r[k][i] for r in sel) for i in (0, 1))
                cells.append(f"{hits}/{total} = {hits / max(1, total):.3f}")
            print(f"| {kind} | {algorithm} | {unit} | {num_perm} | "
                  f"{sel[0]['bands']} x {sel[0]['rows']} | "
                  f"{sum(r['docs'] for r in sel)} | {sum(r['removed'] for r in sel)} | "
                  + " | ".join(cells) + " |")
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
