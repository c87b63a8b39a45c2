"""Language identification with py3langid (model shipped inside the PyPI wheel).

Library: ``py3langid`` 0.4 (BSD-3-Clause; Lui & Baldwin's langid.py naive
Bayes model over byte n-grams, retrained, numpy inference), chosen over
``cld3-py`` (gcld3) and ``pycld2`` on a labelled 16-language sample (see
BENCHMARKS.md, "Language identification"): accuracy 0.975 vs 0.968 and 0.940,
and a pure-Python wheel that runs on any worker; gcld3 is about twice as fast.
Nothing is downloaded at run time: the model file is package data of the
wheel.

* ``detect_language(text) -> (lang, score)``: ISO 639-1/3 code of the most
  probable language and its normalised probability in [0, 1]; only the first
  ``max_chars`` (default 2000) characters are read, so cost is bounded per
  document.  Empty or blank text -> ``("und", 0.0)``.
* ``detect_languages(texts)``: the same answers for a list (the scan's block),
  the byte walk and feature counts of all of them in one set of numpy calls.
* ``LanguageFilter(LanguageConfig(languages=("en", "zh"), threshold=0.5))``:
  drops a document whose language is not listed (rule ``not_in_languages``)
  or whose score is below ``threshold`` (rule ``low_score``).
"""
import threading
from dataclasses import dataclass
from typing import Optional, Tuple

from transforms.reduction.filters.base import Drop, as_view, fmt
import numpy as np

from transforms.reduction.filters.config import FilterConfigError, check_count, check_fraction
from transforms.reduction.filters.native import FAST

_IDENTIFIER = None

# py3langid 0.4's model walks a byte automaton that is an Aho-Corasick automaton of depth
# MODEL_DEPTH (tests/test_filters_speedup.py::test_langid_model_is_an_aho_corasick_automaton
# proves it on the installed model): the state after any byte depends only on the last
# MODEL_DEPTH bytes, so the walk is computed for every position at once.  A model of
# another shape takes py3langid's own walk.
MODEL_DEPTH = 6
MODEL_SHAPE = (104583, 9816576, (100053, 142))  # states, transition entries, feature table


def _walk_features(identifier, data: bytes) -> np.ndarray:
    """The feature ids py3langid's ``visit_counts`` appends for ``data``, in order, computed
    with numpy: the state at byte i is the walk from the root over bytes i-5..i."""
    nm, rowbase, out, pair = identifier._vectors
    x = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    n = len(x)
    head = min(n, MODEL_DEPTH - 1)
    states = np.empty(n, dtype=np.int64)
    state = 0
    for i in range(head):  # the first bytes: the plain walk
        state = int(nm[rowbase[state] + x[i]])
        states[i] = state
    if n > head:
        d = MODEL_DEPTH
        s = pair[(x[:n - d + 1] << 8) + x[1:n - d + 2]]
        for t in range(2, d):
            s = nm[rowbase[s] + x[t:n - d + 1 + t]]
        states[head:] = s
    features = out[states]
    return features[features >= 0]


# What detect_languages computed for the document that classify() is about to score (its
# product, its bytes), handed to FastIdentifier._raw_score/_encode: per thread, as the
# identifier is one per process and a runner may call us from several threads at once.
_PENDING = threading.local()


def _fast_identifier():
    """py3langid's identifier with its DFA walk and scoring vectorised (same numbers)."""
    from py3langid.langid import MODEL_FILE, RAW_FLOOR, LanguageIdentifier

    class FastIdentifier(LanguageIdentifier):
        __slots__ = ("_vectors", "_rows", "_table32", "_native")

        def _encode(self, text):
            encoded = getattr(_PENDING, "encoded", None)  # (text, its bytes): detect_languages
            if encoded is not None and encoded[0] is text:
                return encoded[1]
            return LanguageIdentifier._encode(text)

        def _raw_score(self, text):
            scored = getattr(_PENDING, "scored", None)
            if scored is not None:  # computed for a whole block (``detect_languages``)
                _PENDING.scored = None
                return scored
            if FAST is not None:  # the walk and the counts compiled: the same ids and counts
                ids, counts = FAST.langid_features(text, *self._native)
                if not ids:
                    return np.full(len(self.nb_classes), 0.0 if self._norm_probs else RAW_FLOOR,
                                   dtype=np.float32)
                return self._product(np.frombuffer(ids, dtype=np.int64),
                                     np.frombuffer(counts, dtype=np.float32))
            features = _walk_features(self, text)
            if not len(features):  # py3langid: no features
                return np.full(len(self.nb_classes), 0.0 if self._norm_probs else RAW_FLOOR,
                               dtype=np.float32)
            # py3langid counts with a Counter: ids in order of first occurrence
            order = np.argsort(features, kind="stable")
            ranked = features[order]
            starts = np.flatnonzero(np.concatenate(([True], ranked[1:] != ranked[:-1])))
            counts = np.diff(starts, append=len(ranked))
            firsts = order[starts]
            by_first = np.argsort(firsts)
            idx = ranked[starts][by_first]
            counts = counts[by_first].astype(np.float32)
            return self._product(idx, counts)

        def _product(self, idx, counts):
            """The naive Bayes product of one document's features (ids in order of first
            occurrence, float32 counts)."""
            # float16 rows cast to float32 first, as numpy does for the mixed product
            return np.log1p(counts) @ self._table32[idx] + self.nb_pc

    identifier = FastIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    shape = (len(identifier.tk_row), len(identifier.tk_nextmove), identifier.nb_ptc.shape)
    if shape != MODEL_SHAPE:
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    nm = np.asarray(identifier.tk_nextmove, dtype=np.int64)
    rowbase = np.asarray(identifier.tk_row, dtype=np.int64) << 8
    out = np.asarray(identifier.tk_output, dtype=np.int64)
    first = nm[rowbase[0] + np.arange(256)]
    pair = nm[rowbase[first][:, None] + np.arange(256)[None, :]].reshape(-1)
    identifier._vectors = (nm, rowbase, out, pair)
    # the same automaton as rows (state * 256, int32) for the block walk: the row after a move
    identifier._rows = (rowbase[nm].astype(np.int32), rowbase[pair].astype(np.int32))
    identifier._table32 = identifier.nb_ptc.astype(np.float32)
    # the model's tables as the compiled walk reads them (native.FAST.langid_features)
    identifier._native = (np.ascontiguousarray(identifier.tk_nextmove, dtype=np.uint32),
                          np.ascontiguousarray(rowbase, dtype=np.int64),
                          np.ascontiguousarray(out, dtype=np.int32), MODEL_DEPTH)
    return identifier


def _identifier():
    global _IDENTIFIER
    if _IDENTIFIER is None:
        _IDENTIFIER = _fast_identifier()
    return _IDENTIFIER


def supported_languages() -> Tuple[str, ...]:
    """Codes the model can return, sorted."""
    return tuple(sorted(_identifier().nb_classes))


def detect_language(text: str, max_chars: int = 2000) -> Tuple[str, float]:
    """``(lang, score)`` of ``text[:max_chars]``; ``("und", 0.0)`` for blank text.

    ``score`` is py3langid's normalised probability, rounded to 4 decimals so
    that it prints the same everywhere.
    """
    head = text[:max_chars]
    if not head.strip():
        return "und", 0.0
    lang, prob = _identifier().classify(head)
    return lang, round(float(prob), 4)


# Bytes walked together by ``detect_languages`` (its temporary arrays: about 60 bytes a byte);
# a longer document takes ``detect_language`` alone.  Feature ids are below 2**FEATURE_BITS.
BLOCK_BYTES = 1 << 20
FEATURE_BITS = 17


def _block_features(identifier, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
    """``(doc, feature)`` arrays of every feature ``_walk_features`` finds in each document
    of a block, in document order and, within a document, in byte order.

    ``data``: the documents' bytes one after the other (uint8); ``starts``/``lengths``:
    where each document's bytes are.  The state at byte i of a document is the walk from
    the root over its bytes max(0, i-5)..i: one numpy pass over the whole block for
    i >= 5 (windows inside the document), five small steps for every document's head.
    """
    nm, out = identifier._vectors[0], identifier._vectors[2]
    row_of_next, row_of_pair = identifier._rows
    x = data.astype(np.int32)
    n = len(x)
    d = MODEL_DEPTH
    states = np.zeros(n, dtype=np.int64)
    if n >= d:  # rows (state * 256) walked, the last step to the state itself
        r = row_of_pair[(x[:n - d + 1] << 8) + x[1:n - d + 2]]
        for t in range(2, d - 1):
            r = row_of_next[r + x[t:n - d + 1 + t]]
        states[d - 1:] = nm[r + x[d - 1:]]
    head_start, head_len = starts, lengths
    row = np.full(len(starts), identifier._vectors[1][0], dtype=np.int32)  # the root's row
    for k in range(d - 1):  # each document's first bytes: the plain walk from the root
        live = head_len > k
        if not live.all():
            head_start, head_len, row = head_start[live], head_len[live], row[live]
        if not len(head_start):
            break
        at = head_start + k
        states[at] = nm[row + x[at]]
        row = row_of_next[row + x[at]]
    features = out[states]
    keep = features >= 0
    doc = np.repeat(np.arange(len(starts), dtype=np.int64), lengths)
    return doc[keep], features[keep]


def detect_languages(texts, max_chars: int = 2000):
    """``[detect_language(text, max_chars) for text in texts]``, computed for the whole
    list at once: the byte walk of every document (``BLOCK_BYTES`` at a time) and the
    counting of its features in one set of numpy calls; per document only py3langid's
    product and normalisation remain (the same calls on the same arrays, so the same
    bits).  A model of another shape takes py3langid's own walk per document.
    """
    ident = _identifier()
    results = [None] * len(texts)
    todo = []
    for i, text in enumerate(texts):
        head = text[:max_chars]
        if not head.strip():
            results[i] = ("und", 0.0)
        else:
            todo.append((i, head))
    if not hasattr(ident, "_product"):
        for i, head in todo:
            lang, prob = ident.classify(head)
            results[i] = (lang, round(float(prob), 4))
        return results
    if FAST is not None:  # the walk and counts compiled, one document at a time
        for i, head in todo:
            data = ident._encode(head)
            ids, counts = FAST.langid_features(data, *ident._native)
            if ids:  # else no feature: py3langid's own answer for that case
                _PENDING.scored = ident._product(np.frombuffer(ids, dtype=np.int64),
                                                 np.frombuffer(counts, dtype=np.float32))
            _PENDING.encoded = (head, data)  # classify encodes head again: the same bytes
            try:
                lang, prob = ident.classify(head)
            finally:
                _PENDING.scored = _PENDING.encoded = None
            results[i] = (lang, round(float(prob), 4))
        return results
    encoded = [ident._encode(head) for _, head in todo]
    n_features = ident._table32.shape[0]
    if n_features > 1 << FEATURE_BITS:
        raise AssertionError("the model's feature table outgrew FEATURE_BITS")  # MODEL_SHAPE holds
    alone = [j for j, data in enumerate(encoded) if len(data) > BLOCK_BYTES]
    for j in reversed(alone):
        i, head = todo.pop(j)
        del encoded[j]
        results[i] = detect_language(head, max_chars)
    begin = 0
    while begin < len(todo):
        end, size = begin, 0
        while end < len(todo) and (end == begin or size + len(encoded[end]) <= BLOCK_BYTES):
            size += len(encoded[end])
            end += 1
        lengths = np.fromiter(map(len, encoded[begin:end]), dtype=np.int64, count=end - begin)
        starts = np.zeros(end - begin, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        data = np.frombuffer(b"".join(encoded[begin:end]), dtype=np.uint8)
        doc, features = _block_features(ident, data, starts, lengths)
        # per document: its feature ids in order of first occurrence, and their counts.
        # Sorted as packed integers: (document, feature, position in the stream), then the
        # distinct ones as (first position, feature, count).
        if not len(features):  # no document of these has a feature
            for i, head in todo[begin:end]:
                lang, prob = ident.classify(head)
                results[i] = (lang, round(float(prob), 4))
            begin = end
            continue
        bits = max(1, len(features).bit_length())
        key = (doc * n_features + features) << bits
        key |= np.arange(len(features), dtype=np.int64)
        key.sort()
        group = key >> bits
        firsts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
        counts = np.diff(firsts, append=len(key))
        packed = (key[firsts] & ((1 << bits) - 1)) << (FEATURE_BITS + bits)
        packed |= (group[firsts] % n_features) << bits
        packed |= counts
        packed.sort()
        owner = doc[packed >> (FEATURE_BITS + bits)]
        ids = (packed >> bits) & ((1 << FEATURE_BITS) - 1)
        counts = (packed & ((1 << bits) - 1)).astype(np.float32)
        bounds = np.searchsorted(owner, np.arange(end - begin + 1)).tolist()
        for j in range(end - begin):
            i, head = todo[begin + j]
            a, b = bounds[j], bounds[j + 1]
            if a < b:  # else no feature: py3langid's own answer for that case
                _PENDING.scored = ident._product(ids[a:b], counts[a:b])
            try:
                lang, prob = ident.classify(head)
            finally:
                _PENDING.scored = None
            results[i] = (lang, round(float(prob), 4))
        begin = end
    return results


@dataclass(frozen=True)
class LanguageConfig:
    """``languages``: codes to keep (empty: keep every language, only the score
    threshold applies); ``threshold``: minimum score in [0, 1] (default 0.5;
    ``None`` switches it off); ``max_chars``: characters read per document.

    Raises ``FilterConfigError`` naming the parameter (an unknown language code
    included).
    """
    languages: Tuple[str, ...] = ("en",)
    threshold: Optional[float] = 0.5
    max_chars: int = 2000

    def __post_init__(self):
        owner = type(self).__name__
        if isinstance(self.languages, str) or not all(isinstance(x, str) for x in self.languages):
            raise FilterConfigError(f"{owner}.languages must be a list of language codes, "
                                    f"got {self.languages!r}")
        object.__setattr__(self, "languages", tuple(self.languages))
        known = set(supported_languages())
        unknown = [x for x in self.languages if x not in known]
        if unknown:
            raise FilterConfigError(f"{owner}.languages: unknown code(s) {', '.join(unknown)} "
                                    f"(py3langid knows {len(known)} codes, e.g. en, zh, de)")
        check_fraction(owner, "threshold", self.threshold)
        check_count(owner, "max_chars", self.max_chars, 1)


class LanguageFilter:
    """Keep documents in ``config.languages`` with score >= ``config.threshold``
    (``config`` default: ``LanguageConfig()``, English at 0.5).

    Drops: ``Drop("language", "not_in_languages", "lang=fr score=0.99")`` or
    ``Drop("language", "low_score", "lang=en score=0.41 < 0.5")``.
    """

    def __init__(self, config: Optional[LanguageConfig] = None, name: str = "language"):
        # The default is made here, not in the signature: a LanguageConfig checks its codes
        # against the model, and loading the model (~2 s, ~100 MB) must not be what
        # importing this module costs every process of every job, filtering or not.
        self.config = config if config is not None else LanguageConfig()
        self.name = name
        self._keep = frozenset(self.config.languages)

    def judge_block(self, views) -> list:
        """``[self(view) for view in views]`` (``DocView``s), the languages of the block
        detected at once (``detect_languages``) and cached in the views."""
        n = self.config.max_chars
        todo = [v for v in views if n not in v.__dict__.setdefault("_language", {})]
        for view, found in zip(todo, detect_languages([v.text for v in todo], n)):
            view.__dict__["_language"][n] = found
        return [self(v) for v in views]

    def __call__(self, doc) -> Optional[Drop]:
        c = self.config
        lang, score = as_view(doc).language(c.max_chars)
        if self._keep and lang not in self._keep:
            return Drop(self.name, "not_in_languages", f"lang={lang} score={fmt(score)}")
        if c.threshold is not None and score < c.threshold:
            return Drop(self.name, "low_score", f"lang={lang} score={fmt(score)} < {c.threshold}")
        return None
