"""One shape for every filter: document -> ``None`` (keep) or a typed ``Drop``.

Pure Python, no Beam import (the PTransform is in ``transforms.reduction.filters.beam``).

A *filter* is any object with a ``name`` (str, the counter namespace) and
``__call__(doc) -> Optional[Drop]``, where ``doc`` is a ``Document`` or a
``DocView`` (a document with its lines and words computed once, lazily, and
shared by every filter of a chain).  ``FilterChain`` applies filters in order;
the first ``Drop`` wins and the later filters are not run; ``judge_block(docs)``
gives the same drops and counts for many documents, one filter at a time, so a
filter with its own ``judge_block(views)`` (language ID) works on all of them at
once.  Counts go through an injected ``counter_inc_fn(name, amount=1)`` in the
style of TFDS ``c4_utils.clean_page(..., counter_inc_fn=...)``:

* ``<filter>/kept`` -- the filter saw the document and kept it;
* ``<filter>/dropped.<rule>`` -- the filter dropped it by ``rule``.

Worked example::

    >>> from transforms.reduction.filters.base import Document, Drop, FilterChain
    >>> class Short:
    ...     name = "short"
    ...     def __call__(self, doc):
    ...         return Drop("short", "min_chars", f"{len(doc.text)}<5") if len(doc.text) < 5 else None
    >>> counts = {}
    >>> chain = FilterChain([Short()], counter_inc_fn=lambda k, n=1: counts.__setitem__(k, counts.get(k, 0) + n))
    >>> chain(Document("a", "hi")), chain(Document("b", "hello"))
    (Drop(filter='short', rule='min_chars', detail='2<5'), None)
    >>> counts
    {'short/dropped.min_chars': 1, 'short/kept': 1}

Datatrove's equivalent: ``datatrove/pipeline/filters/base_filter.py``
(``filter()`` returns ``True`` or ``(False, reason)``; stats ``dropped_<reason>``).
"""
from functools import cached_property
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional

from transforms.reduction.filters.text import Words, analyse_words


class Document(NamedTuple):
    """A document as filters see it.

    ``id``: the record's id; ``text``: its text; ``fields``: other record
    fields a filter may read, as strings (e.g. ``{"url": ..., "lang": ...}``).
    """
    id: str
    text: str
    fields: Optional[Dict[str, str]] = None


class Drop(NamedTuple):
    """Why a filter dropped a document.

    ``filter``: the filter's name; ``rule``: the rule that fired (a short
    identifier, stable across versions); ``detail``: the measured value against
    the threshold, e.g. ``"words=12 < 50"``.
    """
    filter: str
    rule: str
    detail: str = ""

    @property
    def reason(self) -> str:
        """``"<filter>.<rule>"``, the reason written to the removed-record audit output."""
        return f"{self.filter}.{self.rule}"


class RuleFilter:
    """Base of the heuristic filters: a frozen config and a name; ``doc -> Drop | None``.

    Subclasses implement ``__call__``; ``_drop(rule, detail)`` builds the
    ``Drop`` under the filter's name (datatrove's ``BaseFilter`` shape).
    """

    def __init__(self, config, name: str):
        self.config = config
        self.name = name

    def _drop(self, rule: str, detail: str) -> Drop:
        return Drop(self.name, rule, detail)


class Removed(NamedTuple):
    """One removed document in the audit output: ``{"removed": id, "reason": ..., "detail": ...}``."""
    removed: str
    reason: str
    detail: str

    def to_json(self) -> dict:
        return {"removed": self.removed, "reason": self.reason, "detail": self.detail}


class DocView:
    """A document with the derived values filters share, each computed once on first use.

    Attributes: ``id``, ``text``, ``fields`` (dict, possibly empty), and the
    cached ``word_info`` (``analyse_words(text)``: the tokens and their symbol
    and letter counts), ``words`` (``split_words(text)``), ``lines``
    (``text.splitlines()``), ``ngrams`` (the word n-gram index of Gopher
    repetition, ``transforms.reduction.filters.ngrams.NgramIndex``).
    """
    __slots__ = ("id", "text", "fields", "__dict__")

    def __init__(self, doc: Document):
        self.id = doc.id
        self.text = doc.text
        self.fields = doc.fields or {}

    @cached_property
    def word_info(self) -> Words:
        return analyse_words(self.text)

    @cached_property
    def words(self) -> list:
        return self.word_info.words

    @cached_property
    def ngrams(self):
        from transforms.reduction.filters.ngrams import NgramIndex
        return NgramIndex(self.words)

    @cached_property
    def lines(self) -> list:
        return self.text.splitlines()

    def language(self, max_chars: int = 2000):
        """``detect_language(text, max_chars)``, computed once per ``max_chars``."""
        cache = self.__dict__.setdefault("_language", {})
        if max_chars not in cache:
            from transforms.reduction.filters.langid import detect_language
            cache[max_chars] = detect_language(self.text, max_chars)
        return cache[max_chars]


def as_view(doc) -> DocView:
    """``doc`` as a ``DocView`` (a ``DocView`` is returned unchanged)."""
    return doc if isinstance(doc, DocView) else DocView(doc)


def fmt(value) -> str:
    """A measured value in a ``Drop.detail``: floats to 4 decimals, deterministic on every platform."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


CounterFn = Callable[..., None]


class FilterChain:
    """Filters applied in order; first drop wins; counts through ``counter_inc_fn``.

    Args:
      filters: filters (objects with ``name`` and ``__call__(doc) -> Optional[Drop]``).
        Names must be unique (they are counter namespaces).
      counter_inc_fn: ``fn(counter_name, amount=1)``; ``None`` counts nothing.

    Raises:
      ValueError: two filters share a name.
    """

    def __init__(self, filters: Iterable, counter_inc_fn: Optional[CounterFn] = None):
        self.filters: List = list(filters)
        names = [f.name for f in self.filters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"FilterChain: filter names must be unique, repeated: {', '.join(dupes)}")
        self.counter_inc_fn = counter_inc_fn

    @property
    def names(self) -> List[str]:
        return [f.name for f in self.filters]

    def __call__(self, doc) -> Optional[Drop]:
        """``None`` if every filter keeps ``doc`` (a ``Document`` or ``DocView``), else the first ``Drop``."""
        view = as_view(doc)
        inc = self.counter_inc_fn
        for f in self.filters:
            drop = f(view)
            if drop is not None:
                if inc is not None:
                    inc(f"{f.name}/dropped.{drop.rule}")
                return drop
            if inc is not None:
                inc(f"{f.name}/kept")
        return None


    def judge_block(self, docs) -> List[Optional[Drop]]:
        """``[self(doc) for doc in docs]``, the same drops and counts, one filter at a time
        over the documents still kept: a filter with ``judge_block(views)`` (language ID,
        Gopher repetition) computes its costly part for all of them at once."""
        views = [as_view(d) for d in docs]
        drops: List[Optional[Drop]] = [None] * len(views)
        alive = list(range(len(views)))
        inc = self.counter_inc_fn
        for f in self.filters:
            if not alive:
                break
            block = getattr(f, "judge_block", None)
            got = block([views[k] for k in alive]) if block is not None else [
                f(views[k]) for k in alive]
            still = []
            kept = 0
            for k, drop in zip(alive, got):
                if drop is None:
                    still.append(k)
                    kept += 1
                else:
                    drops[k] = drop
                    if inc is not None:
                        inc(f"{f.name}/dropped.{drop.rule}")
            if inc is not None and kept:
                inc(f"{f.name}/kept", kept)
            alive = still
        return drops


def dict_counter(counts: Optional[dict] = None):
    """``(counts, counter_inc_fn)``: a plain-dict counter for tests and single-process use."""
    counts = {} if counts is None else counts

    def inc(name: str, amount: int = 1) -> None:
        counts[name] = counts.get(name, 0) + amount
    return counts, inc
