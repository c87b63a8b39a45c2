"""Seeded near-duplicate corpora in scripts written without spaces (Chinese,
Japanese) and mixed with spaced text, with their exact character-shingle Jaccard.

Used by ``tests/test_cjk_near_dedup.py`` and ``benchmarks/cjk_near_dedup.py``.
Texts are made of pseudo-words: 1-3 characters drawn Zipf-wise from a fixed,
seeded set of common code points (CJK Unified Ideographs; for Japanese also
hiragana particles and katakana words with the prolonged sound mark), run
together without spaces into sentences ending in ``，`` or ``。``.  Mixed-script
texts carry English words (``benchmarks.corpus.WORDS``) between spaces, at a
share that leaves them ``char`` documents under ``shingle_unit="auto"``.
Near copies replace, insert or delete characters at a given rate, add a
boilerplate footer or drop the first sentence.  Everything is seeded: the same
arguments give the same texts.
"""
from collections import defaultdict

import numpy as np

from benchmarks.corpus import WORDS, zipf_probabilities
from transforms.reduction.minhash import shingle_set

# Character edit rates of planted copies: one substituted character changes up
# to 5 character 5-grams, so 0.02 lands near Jaccard 0.8 and 0.1 far below.
EDIT_RATES = (0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.05, 0.1)
HAN = [chr(0x4E00 + i) for i in np.random.default_rng(7).permutation(0x5200)[:2500]]
HIRAGANA_PARTICLES = ["の", "に", "は", "を", "が", "で", "と", "も", "から", "まで", "です",
                      "ます", "した", "って", "ような", "という"]
KATAKANA = [chr(c) for c in range(0x30A1, 0x30F7)]
FOOTERS = {"zh": "版权所有，转载请注明出处。欢迎关注我们的公众号获取更多资讯。",
           "ja": "無断転載を禁じます。最新情報はニュースレターでお届けします。",
           "mixed": "本文由 AI 助手 translate 自 English 原文，仅供参考。"}


def _han_words(rng, count: int, probs: np.ndarray) -> list[str]:
    sizes = rng.integers(1, 4, count)
    chars = rng.choice(len(HAN), size=int(sizes.sum()), p=probs)
    out, i = [], 0
    for size in sizes:
        out.append("".join(HAN[c] for c in chars[i:i + size]))
        i += size
    return out


def _sentences(rng, words: list[str], joiner: str = "") -> str:
    out, i = [], 0
    while i < len(words):
        length = int(rng.integers(4, 14))
        out.append(joiner.join(words[i:i + length]) + ("。" if rng.random() < 0.6 else "，"))
        i += length
    return "".join(out)


def chinese_text(rng, chars: int, probs: np.ndarray) -> str:
    return _sentences(rng, _han_words(rng, max(2, chars // 2), probs))


def japanese_text(rng, chars: int, probs: np.ndarray) -> str:
    words = []
    for word in _han_words(rng, max(2, chars // 3), probs):
        roll = rng.random()
        if roll < 0.15:  # a katakana loan word, often with the prolonged sound mark
            kana = "".join(KATAKANA[k] for k in rng.integers(0, len(KATAKANA), rng.integers(2, 5)))
            word = kana + ("ー" if rng.random() < 0.5 else "")
        words.append(word + HIRAGANA_PARTICLES[int(rng.integers(len(HIRAGANA_PARTICLES)))])
    return _sentences(rng, words)


def mixed_text(rng, chars: int, probs: np.ndarray) -> str:
    """Chinese with English words between spaces (about a third of the letters)."""
    words = _han_words(rng, max(2, chars // 3), probs)
    for i in np.flatnonzero(rng.random(len(words)) < 0.12):
        words[i] = f" {WORDS[int(rng.integers(len(WORDS)))]} "
    return _sentences(rng, words)


MAKERS = {"zh": chinese_text, "ja": japanese_text, "mixed": mixed_text}


def mutate_chars(rng, text: str, rate: float, alphabet: list[str]) -> str:
    """Each character replaced, deleted or followed by an insertion with total
    probability ``rate`` (the three equally likely)."""
    out = []
    for ch, roll, kind in zip(text, rng.random(len(text)), rng.integers(0, 3, len(text))):
        if roll >= rate:
            out.append(ch)
        elif kind == 0:
            out.append(alphabet[int(rng.integers(len(alphabet)))])
        elif kind == 2:
            out.append(ch + alphabet[int(rng.integers(len(alphabet)))])
    return "".join(out)


def cjk_near_dup_corpus(kind: str, originals: int = 60, copies: int = 90, seed: int = 0,
                        min_chars: int = 150, max_chars: int = 2500) -> dict[str, str]:
    """id -> text of one ``kind`` (``zh``, ``ja``, ``mixed``): originals of
    log-uniform length, planted copies (``EDIT_RATES``), natural copies (a
    footer added, the first sentence dropped).  Ids are shuffled."""
    rng = np.random.default_rng([seed, list(MAKERS).index(kind)])
    probs = zipf_probabilities(len(HAN))
    make = MAKERS[kind]
    texts = [make(rng, int(np.exp(rng.uniform(np.log(min_chars), np.log(max_chars)))), probs)
             for _ in range(originals)]
    for _ in range(copies):
        source = texts[int(rng.integers(originals))]
        texts.append(mutate_chars(rng, source, float(rng.choice(EDIT_RATES)), HAN))
    for i in range(0, min(originals, 12), 2):
        texts.append(texts[i] + FOOTERS[kind])
        texts.append(texts[i + 1].split("。", 1)[-1])
    order = rng.permutation(len(texts))
    return {f"{kind}-{order[i]:05d}": text for i, text in enumerate(texts)}


def exact_similarities(docs: dict[str, str], shingle_size: int = 5,
                       shingle_unit: str = "auto") -> dict[tuple, float]:
    """(a, b) with a < b -> exact Jaccard of their shingle sets
    (``transforms.reduction.minhash.shingle_set``), for every pair sharing a shingle."""
    sets = {doc_id: shingle_set(text, shingle_size, shingle_unit) for doc_id, text in docs.items()}
    index = defaultdict(list)
    for doc_id in sorted(sets):
        for shingle in sets[doc_id]:
            index[shingle].append(doc_id)
    shared = defaultdict(int)
    for ids in index.values():
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                shared[a, b] += 1
    return {(a, b): n / (len(sets[a]) + len(sets[b]) - n) for (a, b), n in sorted(shared.items())}
