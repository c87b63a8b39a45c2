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
from transforms.reduction.filters.config import FilterConfigError, check_count, check_fraction

_IDENTIFIER = None


def _identifier():
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
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
    """Keep documents in ``config.languages`` with score >= ``config.threshold``.

    Drops: ``Drop("language", "not_in_languages", "lang=fr score=0.99")`` or
    ``Drop("language", "low_score", "lang=en score=0.41 < 0.5")``.
    """

    def __init__(self, config: LanguageConfig = LanguageConfig(), name: str = "language"):
        self.config = config
        self.name = name
        self._keep = frozenset(config.languages)

    def __call__(self, doc) -> Optional[Drop]:
        c = self.config
        lang, score = as_view(doc).language(c.max_chars)
        if self._keep and lang not in self._keep:
            return Drop(self.name, "not_in_languages", f"lang={lang} score={fmt(score)}")
        if c.threshold is not None and score < c.threshold:
            return Drop(self.name, "low_score", f"lang={lang} score={fmt(score)} < {c.threshold}")
        return None
