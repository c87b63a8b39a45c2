"""A seeded corpus with planted and natural near-duplicates, its exact pairwise
Jaccard similarities, and an in-memory reference of the near-dedup algorithm."""
from collections import defaultdict

import numpy as np

from benchmarks.cjk_corpus import exact_similarities
from benchmarks.corpus import WORDS, make_text, mutate, zipf_probabilities
from transforms.reduction.minhash import LshParams, MinHasher, band_keys, sketch_jaccard

LICENCE = (
    "Copyright (c) {year} {name}. Permission is hereby granted, free of charge, to any "
    "person obtaining a copy of this software and associated documentation files (the "
    "Software), to deal in the Software without restriction, including without limitation "
    "the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell "
    "copies of the Software, and to permit persons to whom the Software is furnished to do "
    "so, subject to the following conditions: The above copyright notice and this "
    "permission notice shall be included in all copies or substantial portions of the "
    "Software. THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY OF ANY KIND, EXPRESS OR "
    "IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A "
    "PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT "
    "HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF "
    "CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE "
    "OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.")
FOOTER = "Share this page. Subscribe to our newsletter for weekly updates. All rights reserved."
EDIT_RATES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)


def union_find_roots(edges) -> dict:
    """node -> smallest node of its component, for nodes in components of 2+."""
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {n: find(n) for n in parent if find(n) != n}


def near_dup_corpus(originals: int = 160, copies: int = 200, seed: int = 0) -> dict[str, str]:
    """id -> text.  Ids are shuffled so a copy often sorts before its source."""
    rng = np.random.default_rng(seed)
    probs = zipf_probabilities(len(WORDS))
    texts = [make_text(rng, int(np.exp(rng.uniform(np.log(300), np.log(5000)))), probs)
             for _ in range(originals)]
    for _ in range(copies):  # planted: words replaced at a given rate
        source = texts[int(rng.integers(originals))]
        texts.append(mutate(rng, source, float(rng.choice(EDIT_RATES))))
    for i in range(0, 40, 4):  # natural: boilerplate added, a sentence dropped
        texts.append(texts[i] + " " + FOOTER)
        texts.append(texts[i + 1].split(". ", 1)[-1])
    names = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"]
    for year in (2019, 2021):  # natural: one licence, several holders and years
        for name in names:
            texts.append(LICENCE.format(year=year, name=name))
    texts += ["", "   ", "short one", "short one two"]  # no or few shingles
    order = rng.permutation(len(texts))
    return {f"doc-{order[i]:05d}": text for i, text in enumerate(texts)}


def true_similarities(docs: dict[str, str], shingle_size: int = 5) -> dict[tuple, float]:
    """(a, b) with a < b -> exact Jaccard of their shingle sets, for pairs sharing any shingle."""
    return exact_similarities(docs, shingle_size)


def reference_near_dedup(docs: dict[str, str], lsh: LshParams, verify: bool = True):
    """The pipeline's algorithm in memory: -> {removed id: (kept id, Jaccard of
    their verification sketches, rounded to 4 places)}.  With ``verify``, LSH
    edges below the threshold are dropped, and so are members whose Jaccard
    with their component's root is below it (they are kept)."""
    ids = sorted(docs)
    signed = MinHasher.from_params(lsh).sign([docs[i] for i in ids])
    signature = {i: s.tobytes() for i, s, c in zip(ids, signed.signatures, signed.counts) if c}
    sketch = dict(zip(ids, signed.sketches))
    buckets = defaultdict(set)
    for doc_id, sig in signature.items():
        for key in band_keys(sig, lsh.bands, lsh.rows):
            buckets[key].add(doc_id)
    edges = {(m, min(b)) for b in buckets.values() for m in b if m != min(b)}
    if verify:
        edges = {(u, v) for u, v in edges
                 if sketch_jaccard(sketch[u], sketch[v]) >= lsh.threshold}
    removed = {node: (root, sketch_jaccard(sketch[node], sketch[root]))
               for node, root in union_find_roots(edges).items()}
    return {node: (root, round(j, 4)) for node, (root, j) in removed.items()
            if not verify or j >= lsh.threshold}
