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
* ``LanguageFilter(LanguageConfig(languages=("en", "zh"), threshold=0.5))``:
  drops a document whose language is not listed (rule ``not_in_languages``)
  or whose score is below ``threshold`` (rule ``low_score``).
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from transforms.reduction.filters.base import Drop, as_view, fmt
import numpy as np

from transforms.reduction.filters.config import FilterConfigError, check_count, check_fraction

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


def _fast_identifier():
    """py3langid's identifier with its DFA walk and scoring vectorised (same numbers)."""
    from py3langid.langid import MODEL_FILE, RAW_FLOOR, LanguageIdentifier

    class FastIdentifier(LanguageIdentifier):
        __slots__ = ("_vectors", "_table32")

        def _raw_score(self, text):
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
    identifier._table32 = identifier.nb_ptc.astype(np.float32)
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

    def __call__(self, doc) -> Optional[Drop]:
        c = self.config
        lang, score = as_view(doc).language(c.max_chars)
        if self._keep and lang not in self._keep:
            return Drop(self.name, "not_in_languages", f"lang={lang} score={fmt(score)}")
        if c.threshold is not None and score < c.threshold:
            return Drop(self.name, "low_score", f"lang={lang} score={fmt(score)} < {c.threshold}")
        return None
