"""FineWeb's line-level quality rules (Penedo et al. 2024, "The FineWeb
Datasets: Decanting the Web for the Finest Text Data at Scale", §3.3 and
Appendix "FineWeb custom filters").

Mirrors datatrove 0.10 ``src/datatrove/pipeline/filters/
fineweb_quality_filter.py`` (``FineWebQualityFilter``); lines are the
non-blank ``"\\n"``-separated lines.  Rules, in order (rule name, parameter,
default):

* ``empty``: no non-blank line;
* ``line_punct_ratio``: fraction of lines ending in a terminal punctuation
  mark (``stop_chars``, default the Unicode sentence terminals of
  ``text.TERMINAL_PUNCTUATION``) < ``line_punct_thr`` = 0.12 (unless the
  fraction is 0 and ``line_punct_exclude_zero``);
* ``short_line_ratio``: fraction of lines of at most ``short_line_length`` =
  30 characters > ``short_line_thr`` = 0.67;
* ``char_dup_ratio``: characters in duplicate lines / characters without
  newlines > ``char_duplicates_ratio`` = 0.01;
* ``list_ratio``: newlines / words > ``new_line_ratio`` = 0.3.

``None`` switches a rule off.  Words come from ``text.split_words`` (datatrove:
spaCy tokens).  Pure Python.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from tests.filters_reference.base import Drop, RuleFilter, as_view, fmt
from transforms.reduction.filters.config import (FilterConfigError, check_bool, check_count,
                                       check_fraction, check_positive)
from tests.filters_reference.gopher import find_duplicates
from tests.filters_reference.text import TERMINAL_PUNCTUATION_TUPLE


@dataclass(frozen=True)
class FineWebQualityConfig:
    """Thresholds of the FineWeb rules (see the module docstring).

    Raises ``FilterConfigError`` naming the parameter.
    """
    line_punct_thr: Optional[float] = 0.12
    line_punct_exclude_zero: bool = False
    stop_chars: Optional[Tuple[str, ...]] = None
    short_line_thr: Optional[float] = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: Optional[float] = 0.01
    new_line_ratio: Optional[float] = 0.3

    def __post_init__(self):
        owner = type(self).__name__
        check_fraction(owner, "line_punct_thr", self.line_punct_thr)
        check_bool(owner, "line_punct_exclude_zero", self.line_punct_exclude_zero)
        check_fraction(owner, "short_line_thr", self.short_line_thr)
        check_count(owner, "short_line_length", self.short_line_length)
        check_fraction(owner, "char_duplicates_ratio", self.char_duplicates_ratio)
        check_positive(owner, "new_line_ratio", self.new_line_ratio)
        if self.stop_chars is not None:
            if isinstance(self.stop_chars, str) or not all(
                    isinstance(s, str) and s for s in self.stop_chars):
                raise FilterConfigError(f"{owner}.stop_chars must be a list of non-empty strings or null")
            object.__setattr__(self, "stop_chars", tuple(self.stop_chars))


class FineWebQualityFilter(RuleFilter):
    """FineWeb rules (``FineWebQualityConfig``) -> ``Drop("fineweb", rule, detail)``."""

    def __init__(self, config: FineWebQualityConfig = FineWebQualityConfig(), name: str = "fineweb"):
        super().__init__(config, name)
        self._stop = config.stop_chars if config.stop_chars is not None else TERMINAL_PUNCTUATION_TUPLE

    def __call__(self, doc) -> Optional[Drop]:
        c = self.config
        view = as_view(doc)
        text = view.text
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if not lines:
            return self._drop("empty", "no non-blank line")
        n = len(lines)
        if c.line_punct_thr is not None:
            ratio = sum(1 for line in lines if line.endswith(self._stop)) / n
            if ratio < c.line_punct_thr and not (ratio == 0 and c.line_punct_exclude_zero):
                return self._drop("line_punct_ratio", f"ratio={fmt(ratio)} < {c.line_punct_thr}")
        if c.short_line_thr is not None:
            ratio = sum(1 for line in lines if len(line) <= c.short_line_length) / n
            if ratio > c.short_line_thr:
                return self._drop("short_line_ratio", f"ratio={fmt(ratio)} > {c.short_line_thr}")
        if c.char_duplicates_ratio is not None:
            chars = len(text) - text.count("\n")
            ratio = find_duplicates(lines)[1] / chars if chars else 0.0
            if ratio > c.char_duplicates_ratio:
                return self._drop("char_dup_ratio", f"ratio={fmt(ratio)} > {c.char_duplicates_ratio}")
        if c.new_line_ratio is not None:
            n_words = len(view.words)
            ratio = text.count("\n") / n_words if n_words else float("inf")
            if ratio > c.new_line_ratio:
                return self._drop("list_ratio", f"ratio={fmt(ratio)} > {c.new_line_ratio}")
        return None
