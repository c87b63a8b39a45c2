"""What the scan pass calls per document: sampling, filters, PII redaction, language, in one call.

``ScanFilters`` bundles a recipe's filters, an optional sample fraction, an
optional PII redaction and optional language detection behind one pure call::

    scan = ScanFilters(recipe=load_recipe("web"), pii=PiiConfig(), sample_fraction=0.1,
                       sample_seed=7, record_language=True, counter_inc_fn=inc)
    decision = scan("doc-1", text, {"url": "..."})
    decision.drop          # None (keep) or Drop(filter, rule, detail)
    decision.text          # the text to hash for dedup and to store (redacted when pii is set)
    decision.pii           # {"EMAIL": 2, ...} replacements made
    decision.lang, decision.lang_score   # when record_language (else None)

Order: (1) sampling by id (cheapest; a document outside the sample is dropped
with ``Drop("sample", "not_sampled", ...)``); (2) the recipe's filters on the
original text, first drop wins; (3) PII redaction of kept documents only.
Counters through ``counter_inc_fn``: ``sample/kept``,
``sample/dropped.not_sampled``, every filter's ``<filter>/kept`` and
``<filter>/dropped.<rule>``, and ``pii/<KIND>``.  Pure Python, no Beam.
"""
from typing import Dict, List, NamedTuple, Optional, Tuple

from transforms.reduction.filters.base import CounterFn, Document, DocView, Drop, FilterChain
from transforms.reduction.filters.pii import PiiConfig, redact_pii
from transforms.reduction.filters.sampling import DEFAULT_SEED, Sampler


class Decision(NamedTuple):
    """The scan pass's per-document result (see module docstring)."""
    drop: Optional[Drop]
    text: str
    pii: Dict[str, int]
    lang: Optional[str] = None
    lang_score: Optional[float] = None

    @property
    def kept(self) -> bool:
        return self.drop is None


class ScanFilters:
    """Sampling, recipe filters, PII redaction and language detection for one document.

    Args (keyword-only):
      recipe: a ``Recipe`` (``load_recipe``) or ``None`` (no filters).
      pii: a ``PiiConfig`` to redact kept documents, or ``None``.
      sample_fraction: keep a document when ``keep_sample(id, fraction, sample_seed)``;
        ``None`` keeps all.
      sample_seed: the sampling seed (default ``sampling.DEFAULT_SEED``).
      record_language: also return ``(lang, score)`` of every kept document.
      counter_inc_fn: ``fn(name, amount=1)`` or ``None``.

    Raises ``FilterConfigError`` for a fraction outside [0, 1].
    """

    def __init__(self, *, recipe=None, pii: Optional[PiiConfig] = None,
                 sample_fraction: Optional[float] = None, sample_seed: int = DEFAULT_SEED,
                 record_language: bool = False, counter_inc_fn: Optional[CounterFn] = None):
        self.chain = FilterChain(recipe.build() if recipe is not None else [], counter_inc_fn)
        self.pii = pii
        self.sampler = Sampler(sample_fraction, sample_seed) if sample_fraction is not None else None
        self.record_language = record_language
        self.inc = counter_inc_fn

    def block(self, docs: List[Tuple[str, str]]) -> List[Decision]:
        """``[self(doc_id, text) for doc_id, text in docs]``: the same decisions and
        counts, the recipe's filters judging the whole block at once
        (``FilterChain.judge_block``: language ID and Gopher repetition's n-grams in one
        set of numpy calls for all documents)."""
        out: List[Optional[Decision]] = [None] * len(docs)
        views, where = [], []
        for k, (doc_id, text) in enumerate(docs):
            if self.sampler is not None:
                if not self.sampler(doc_id):
                    if self.inc is not None:
                        self.inc("sample/dropped.not_sampled")
                    out[k] = Decision(Drop("sample", "not_sampled",
                                           f"fraction={self.sampler.fraction}"), text, {})
                    continue
                if self.inc is not None:
                    self.inc("sample/kept")
            views.append(DocView(Document(doc_id, text)))
            where.append(k)
        drops = self.chain.judge_block(views)
        if self.record_language:  # the kept documents' languages, detected at once
            from transforms.reduction.filters.langid import detect_languages
            todo = [v for v, d in zip(views, drops)
                    if d is None and 2000 not in v.__dict__.get("_language", {})]
            for view, found in zip(todo, detect_languages([v.text for v in todo], 2000)):
                view.__dict__.setdefault("_language", {})[2000] = found
        for k, view, drop in zip(where, views, drops):
            out[k] = self._finish(view, drop)
        return out

    def __call__(self, doc_id: str, text: str, fields: Optional[Dict[str, str]] = None) -> Decision:
        if self.sampler is not None:
            if not self.sampler(doc_id):
                if self.inc is not None:
                    self.inc("sample/dropped.not_sampled")
                return Decision(Drop("sample", "not_sampled", f"fraction={self.sampler.fraction}"),
                                text, {})
            if self.inc is not None:
                self.inc("sample/kept")
        view = DocView(Document(doc_id, text, fields))
        return self._finish(view, self.chain(view))

    def _finish(self, view: DocView, drop: Optional[Drop]) -> Decision:
        """The decision for a judged document: language and redaction of a kept one."""
        text = view.text
        if drop is not None:
            return Decision(drop, text, {})
        lang = score = None
        if self.record_language:
            lang, score = view.language()
        if self.pii is not None:
            redacted = redact_pii(text, self.pii, self.inc)
            return Decision(None, redacted.text, redacted.counts, lang, score)
        return Decision(None, text, {}, lang, score)
