"""Synthetic web-like corpus with planted exact and near duplicates and bad lines.

    python -m benchmarks.corpus --docs 100000 --files 8 --out benchmarks/data/c100k

Documents are sentences of Zipf-distributed English words with sizes drawn
log-uniformly from 0.2 to 20 KB.  A fraction are exact copies of earlier
documents (some re-cased or re-spaced, which normalisation must still catch),
a fraction are near copies (a given share of words replaced), and a few lines
are broken in the ways real dumps are.  Everything is seeded: the same
arguments give the same bytes.  ``truth.json`` records what was planted.
"""
import argparse
import os

import numpy as np
import orjson
import zstandard

WORDS = (
    "the of and to in is was for on that with as by at from his her an which "
    "data model training large language system network learning web page city "
    "river school music history team season government company market energy "
    "water research science community century national world public island "
    "film album song species village county district population university "
    "church war battle army king queen party election president minister law "
    "court police health hospital disease patient treatment study results "
    "method analysis value price sale product service customer business "
    "software computer internet user mobile phone video game player club "
    "league match goal final cup record award series episode character book "
    "author novel story edition press journal article report news media "
    "station line road bridge building house street area region north south "
    "east west river lake mountain forest park garden food restaurant coffee "
    "wine beer bread cheese recipe kitchen cook hotel travel trip flight "
    "airport train bus car engine power light heat temperature weather rain "
    "snow summer winter spring autumn morning evening night day week month "
    "year time people family child parent mother father brother sister friend "
    "early later first second third new old small great long high important "
    "different local public private general social political economic human "
    "also however although because while during after before between into "
    "through under over about against among within without including until"
).split()


def zipf_probabilities(n: int, exponent: float = 1.1) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def make_text(rng: np.random.Generator, target_bytes: int, probs: np.ndarray) -> str:
    n_words = max(5, target_bytes // 6)
    words = rng.choice(len(WORDS), size=n_words, p=probs)
    out, i = [], 0
    while i < n_words:
        length = int(rng.integers(6, 20))
        sentence = " ".join(WORDS[w] for w in words[i:i + length])
        out.append(sentence[:1].upper() + sentence[1:] + ".")
        i += length
    return " ".join(out)


def mutate(rng: np.random.Generator, text: str, rate: float) -> str:
    """Replace about ``rate`` of the words with random ones."""
    words = text.split(" ")
    hits = rng.random(len(words)) < rate
    for i in np.flatnonzero(hits):
        words[i] = WORDS[int(rng.integers(len(WORDS)))]
    return " ".join(words)


def generate(docs: int, seed: int = 0, exact_rate: float = 0.1, near_rate: float = 0.1,
             bad_lines: int = 0, min_bytes: int = 200, max_bytes: int = 20000,
             missing_id_rate: float = 0.0):
    """Yield ``(line bytes, truth entry or None)``; truth says what was planted."""
    rng = np.random.default_rng(seed)
    probs = zipf_probabilities(len(WORDS))
    originals: list[tuple[str, str]] = []
    bad_at = set(rng.choice(docs, size=min(bad_lines, docs), replace=False).tolist()) \
        if bad_lines else set()
    broken = [b'{"id": "broken", "text": "unterminated', b'["not", "an", "object"]',
              b'{"id": "no-text", "title": "missing text"}', b'{"id": "num", "text": 42}',
              b'\xff\xfe not utf-8', b'{"id": "nested", "text": {"a": 1}}']
    for i in range(docs):
        doc_id = f"doc-{i:08d}"
        if i in bad_at:
            yield broken[len(bad_at & set(range(i))) % len(broken)], {"bad": True}
            continue
        roll = rng.random()
        truth = None
        if originals and roll < exact_rate:
            src_id, text = originals[int(rng.integers(len(originals)))]
            if rng.random() < 0.3:
                text = "  " + text.upper().replace(". ", ".\n ") + " "
            truth = {"exact_of": src_id}
        elif originals and roll < exact_rate + near_rate:
            src_id, text = originals[int(rng.integers(len(originals)))]
            rate = float(rng.choice([0.01, 0.03, 0.05, 0.1, 0.2]))
            text = mutate(rng, text, rate)
            truth = {"near_of": src_id, "edit_rate": rate}
        else:
            size = int(np.exp(rng.uniform(np.log(min_bytes), np.log(max_bytes))))
            text = make_text(rng, size, probs)
            originals.append((doc_id, text))
        record = {"id": doc_id, "text": text, "source": ["web", "books", "news"][i % 3]}
        if missing_id_rate and rng.random() < missing_id_rate:
            del record["id"]
        yield orjson.dumps(record), truth


def write_corpus(out_dir: str, docs: int, files: int = 1, compress: bool = True, **kwargs) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    suffix = ".jsonl.zst" if compress else ".jsonl"
    handles = []
    for f in range(files):
        raw = open(os.path.join(out_dir, f"part-{f:03d}{suffix}"), "wb")
        handles.append(zstandard.ZstdCompressor(level=3).stream_writer(raw) if compress else raw)
    truth, total = {}, 0
    for i, (line, planted) in enumerate(generate(docs, **kwargs)):
        handles[i % files].write(line + b"\n")
        total += len(line) + 1
        if planted:
            truth[f"line-{i}"] = planted
    for h in handles:
        h.close()
    summary = {"docs": docs, "files": files, "raw_bytes": total, "planted": truth}
    with open(os.path.join(out_dir, "truth.json"), "wb") as f:
        f.write(orjson.dumps(summary))
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact_rate", type=float, default=0.1)
    parser.add_argument("--near_rate", type=float, default=0.1)
    parser.add_argument("--bad_lines", type=int, default=10)
    parser.add_argument("--uncompressed", action="store_true")
    args = parser.parse_args()
    summary = write_corpus(args.out, args.docs, args.files, not args.uncompressed,
                           seed=args.seed, exact_rate=args.exact_rate,
                           near_rate=args.near_rate, bad_lines=args.bad_lines)
    print(f"{summary['docs']} docs, {summary['raw_bytes'] / 1e6:.1f} MB raw, "
          f"{len(summary['planted'])} planted lines -> {args.out}")


if __name__ == "__main__":
    main()
