"""The old language ID: py3langid's own ``classify`` (its DFA walk in Python), and the
old ``LanguageFilter`` over the reference ``DocView``."""
from typing import Optional

from transforms.reduction.filters.base import Drop, fmt
from transforms.reduction.filters.langid import LanguageConfig
from tests.filters_reference.base import as_view

_IDENTIFIER = None


def _identifier():
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _IDENTIFIER


def detect_language(text: str, max_chars: int = 2000):
    head = text[:max_chars]
    if not head.strip():
        return "und", 0.0
    lang, prob = _identifier().classify(head)
    return lang, round(float(prob), 4)


class LanguageFilter:
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
