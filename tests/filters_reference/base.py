"""The old ``DocView`` (words, lines, language computed once), over the reference
``split_words`` and ``detect_language``; ``Drop``, ``RuleFilter``, ``fmt`` are the shared ones."""
from functools import cached_property

from transforms.reduction.filters.base import Document, Drop, RuleFilter, fmt  # noqa: F401
from tests.filters_reference.text import split_words


class DocView:
    __slots__ = ("id", "text", "fields", "__dict__")

    def __init__(self, doc: Document):
        self.id = doc.id
        self.text = doc.text
        self.fields = doc.fields or {}

    @cached_property
    def words(self) -> list:
        return split_words(self.text)

    @cached_property
    def lines(self) -> list:
        return self.text.splitlines()

    def language(self, max_chars: int = 2000):
        cache = self.__dict__.setdefault("_language", {})
        if max_chars not in cache:
            from tests.filters_reference.langid import detect_language
            cache[max_chars] = detect_language(self.text, max_chars)
        return cache[max_chars]


def as_view(doc) -> DocView:
    return doc if isinstance(doc, DocView) else DocView(doc)
