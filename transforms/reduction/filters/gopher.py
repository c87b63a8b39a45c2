"""Gopher quality and Gopher repetition filters (MassiveText rules).

Source: Rae et al. 2021, "Scaling Language Models: Methods, Analysis &
Insights from Training Gopher", Appendix A.1.1 (quality filters) and Table A1
(repetition thresholds).  The rules, their order, the reason names and the
arithmetic mirror datatrove 0.10 (``src/datatrove/pipeline/filters/
gopher_quality_filter.py`` and ``gopher_repetition_filter.py``) so that the
decisions agree (see BENCHMARKS.md, "Filter agreement"); words come from
``transforms.reduction.filters.text.split_words`` (a regex, where datatrove uses spaCy).

Every threshold is a config parameter; ``None`` switches its rule off.
Pure Python, no Beam import.
"""
import re
from dataclasses import dataclass
from typing import FrozenSet, Optional, Tuple

from transforms.reduction.filters.base import Drop, RuleFilter, as_view, fmt
from transforms.reduction.filters.config import (FilterConfigError, check_count, check_fraction,
                                       check_positive)
from transforms.reduction.filters.native import FAST
from transforms.reduction.filters.ngrams import duplicate_ngram_chars, top_ngram_chars  # noqa: F401 (re-exported)

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_BULLETS = ("\u2022", "-")     # a bullet line starts (after leading spaces) with one of these
_ELLIPSES = ("...", "\u2026")  # an ellipsis line ends (before trailing spaces) with one of these


@dataclass(frozen=True)
class GopherQualityConfig:
    """Thresholds of the Gopher quality rules (defaults: the paper's).

    Rules, in the order checked (rule name -> parameter):

    * ``short_doc`` / ``long_doc``: non-symbol words outside
      [``min_doc_words`` = 50, ``max_doc_words`` = 100000];
    * ``below_avg_word_length`` / ``above_avg_word_length``: mean length of
      non-symbol words outside [``min_avg_word_length`` = 3,
      ``max_avg_word_length`` = 10] characters;
    * ``too_many_hashes`` / ``too_many_ellipsis``: ``#`` count, or ``...``
      plus ``…`` count, per word (all tokens) > ``max_symbol_word_ratio`` = 0.1;
    * ``too_many_bullets``: fraction of lines starting (after leading spaces)
      with ``•`` or ``-`` > ``max_bullet_lines_ratio`` = 0.9;
    * ``too_many_end_ellipsis``: fraction of lines ending with ``...`` or
      ``…`` > ``max_ellipsis_lines_ratio`` = 0.3;
    * ``below_alpha_ratio``: fraction of words with an alphabetic character
      < ``min_alpha_words_ratio`` = 0.8;
    * ``few_stop_words``: distinct stop words present (case-sensitive, as
      datatrove) < ``min_stop_words`` = 2, from ``stop_words`` (the paper's
      8 English words).

    Raises ``FilterConfigError`` naming the parameter.
    """
    min_doc_words: Optional[int] = 50
    max_doc_words: Optional[int] = 100_000
    min_avg_word_length: Optional[float] = 3
    max_avg_word_length: Optional[float] = 10
    max_symbol_word_ratio: Optional[float] = 0.1
    max_bullet_lines_ratio: Optional[float] = 0.9
    max_ellipsis_lines_ratio: Optional[float] = 0.3
    min_alpha_words_ratio: Optional[float] = 0.8
    min_stop_words: Optional[int] = 2
    stop_words: Tuple[str, ...] = GOPHER_STOP_WORDS

    def __post_init__(self):
        owner = type(self).__name__
        check_count(owner, "min_doc_words", self.min_doc_words)
        check_count(owner, "max_doc_words", self.max_doc_words, 1)
        check_positive(owner, "min_avg_word_length", self.min_avg_word_length)
        check_positive(owner, "max_avg_word_length", self.max_avg_word_length)
        for name in ("max_symbol_word_ratio", "max_bullet_lines_ratio",
                     "max_ellipsis_lines_ratio", "min_alpha_words_ratio"):
            check_fraction(owner, name, getattr(self, name))
        check_count(owner, "min_stop_words", self.min_stop_words)
        if isinstance(self.stop_words, str) or not all(isinstance(w, str) for w in self.stop_words):
            raise FilterConfigError(f"{owner}.stop_words must be a list of strings, got {self.stop_words!r}")
        object.__setattr__(self, "stop_words", tuple(self.stop_words))


class GopherQualityFilter(RuleFilter):
    """Gopher quality rules (``GopherQualityConfig``) -> ``Drop("gopher_quality", rule, detail)``."""

    def __init__(self, config: GopherQualityConfig = GopherQualityConfig(), name: str = "gopher_quality"):
        super().__init__(config, name)
        self._stop_words: FrozenSet[str] = frozenset(config.stop_words)
        self._stop_tuple = tuple(dict.fromkeys(config.stop_words))  # distinct, for FAST

    def __call__(self, doc) -> Optional[Drop]:
        c = self.config
        view = as_view(doc)
        text = view.text
        info = view.word_info
        words = info.words
        n_words = len(words)
        n_non_symbol = n_words - info.symbols
        if c.min_doc_words is not None and n_non_symbol < c.min_doc_words:
            return self._drop("short_doc", f"words={n_non_symbol} < {c.min_doc_words}")
        if c.max_doc_words is not None and n_non_symbol > c.max_doc_words:
            return self._drop("long_doc", f"words={n_non_symbol} > {c.max_doc_words}")
        if n_words == 0:  # every count below divides by it; nothing left to judge
            return None
        if c.min_avg_word_length is not None or c.max_avg_word_length is not None:
            avg = (info.chars - info.symbol_chars) / n_non_symbol if n_non_symbol else 0.0
            if c.min_avg_word_length is not None and avg < c.min_avg_word_length:
                return self._drop("below_avg_word_length", f"mean={fmt(avg)} < {c.min_avg_word_length}")
            if c.max_avg_word_length is not None and avg > c.max_avg_word_length:
                return self._drop("above_avg_word_length", f"mean={fmt(avg)} > {c.max_avg_word_length}")
        if c.max_symbol_word_ratio is not None:
            ratio = text.count("#") / n_words
            if ratio > c.max_symbol_word_ratio:
                return self._drop("too_many_hashes", f"ratio={fmt(ratio)} > {c.max_symbol_word_ratio}")
            ratio = (text.count("...") + text.count("\u2026")) / n_words
            if ratio > c.max_symbol_word_ratio:
                return self._drop("too_many_ellipsis", f"ratio={fmt(ratio)} > {c.max_symbol_word_ratio}")
        lines = view.lines
        n_lines = len(lines)
        if n_lines and (c.max_bullet_lines_ratio is not None or c.max_ellipsis_lines_ratio is not None):
            if FAST is not None and type(lines) is list:
                bullets, ellipses = FAST.line_marks(lines, _BULLETS, _ELLIPSES)
            else:
                bullets = sum(1 for s in lines if s.lstrip().startswith(_BULLETS))
                ellipses = sum(1 for s in lines if s.rstrip().endswith(_ELLIPSES))
        if n_lines and c.max_bullet_lines_ratio is not None:
            ratio = bullets / n_lines
            if ratio > c.max_bullet_lines_ratio:
                return self._drop("too_many_bullets", f"ratio={fmt(ratio)} > {c.max_bullet_lines_ratio}")
        if n_lines and c.max_ellipsis_lines_ratio is not None:
            ratio = ellipses / n_lines
            if ratio > c.max_ellipsis_lines_ratio:
                return self._drop("too_many_end_ellipsis",
                                  f"ratio={fmt(ratio)} > {c.max_ellipsis_lines_ratio}")
        if c.min_alpha_words_ratio is not None:
            ratio = (n_words - info.no_alpha) / n_words
            if ratio < c.min_alpha_words_ratio:
                return self._drop("below_alpha_ratio", f"ratio={fmt(ratio)} < {c.min_alpha_words_ratio}")
        if c.min_stop_words is not None:
            if FAST is not None and type(words) is list:
                found = FAST.count_present(words, self._stop_tuple)
            else:
                found = len(self._stop_words.intersection(words))
            if found < c.min_stop_words:
                return self._drop("few_stop_words", f"stop_words={found} < {c.min_stop_words}")
        return None


def _ngram_pairs(value) -> Tuple[Tuple[int, float], ...]:
    return tuple((int(n), float(f)) for n, f in value)


@dataclass(frozen=True)
class GopherRepetitionConfig:
    """Thresholds of the Gopher repetition rules (Rae et al. 2021, Table A1).

    Rules, in the order checked (rule name -> parameter, default):

    * ``dup_para_frac``: duplicate paragraphs (split on 2+ newlines) / paragraphs > 0.30;
    * ``dup_para_char_frac``: characters in duplicate paragraphs / characters > 0.20;
    * ``dup_line_frac``: duplicate lines (split on 1+ newlines) / lines > 0.30;
    * ``dup_line_char_frac``: characters in duplicate lines / characters > 0.20;
    * ``top_<n>_gram`` for ``top_n_grams`` = ((2, 0.20), (3, 0.18), (4, 0.16)):
      characters of the most frequent word n-gram (words joined by one space)
      times its count / characters > the fraction;
    * ``duplicated_<n>_n_grams`` for ``dup_n_grams`` = ((5, 0.15), (6, 0.14),
      (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)): characters of repeated,
      non-overlapping word n-grams (words joined without space, datatrove's
      ``find_all_duplicate``) / characters > the fraction.

    An empty ``top_n_grams`` / ``dup_n_grams`` switches those rules off.
    Raises ``FilterConfigError`` naming the parameter.
    """
    dup_line_frac: Optional[float] = 0.3
    dup_para_frac: Optional[float] = 0.3
    dup_line_char_frac: Optional[float] = 0.2
    dup_para_char_frac: Optional[float] = 0.2
    top_n_grams: Tuple[Tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_n_grams: Tuple[Tuple[int, float], ...] = (
        (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac"):
            check_fraction(owner, name, getattr(self, name))
        for name in ("top_n_grams", "dup_n_grams"):
            value = getattr(self, name)
            try:
                pairs = _ngram_pairs(value)
            except (TypeError, ValueError):
                raise FilterConfigError(
                    f"{owner}.{name} must be a list of [n, fraction] pairs, got {value!r}") from None
            for n, frac in pairs:
                check_count(owner, f"{name}[n]", n, 1)
                check_fraction(owner, f"{name}[fraction]", frac)
            object.__setattr__(self, name, pairs)


def find_duplicates(items) -> Tuple[int, int]:
    """``(duplicate elements, characters in duplicate elements)``: every repeat after the first."""
    seen = set()
    dup_elements = dup_chars = 0
    for item in items:
        if item in seen:
            dup_elements += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_elements, dup_chars


_PARA_SPLIT = re.compile(r"\n{2,}")
_LINE_SPLIT = re.compile(r"\n+")


def repetition_counts_py(text: str) -> Tuple[int, int, int, int, int, int]:
    """``(paragraphs, duplicate paragraphs, their characters, lines, duplicate lines, their
    characters)`` of ``text``: paragraphs split on 2+ newlines after ``strip()``, lines
    on 1+ newlines, duplicates as ``find_duplicates``."""
    paragraphs = _PARA_SPLIT.split(text.strip())
    lines = _LINE_SPLIT.split(text)
    return (len(paragraphs), *find_duplicates(paragraphs), len(lines), *find_duplicates(lines))


def repetition_counts(text: str) -> Tuple[int, int, int, int, int, int]:
    """``repetition_counts_py(text)``, compiled (``native.FAST.repetition_lines``) when built."""
    if FAST is not None:
        return FAST.repetition_lines(text)
    return repetition_counts_py(text)


class GopherRepetitionFilter(RuleFilter):
    """Gopher repetition rules (``GopherRepetitionConfig``) -> ``Drop("gopher_repetition", rule, detail)``."""

    def __init__(self, config: GopherRepetitionConfig = GopherRepetitionConfig(),
                 name: str = "gopher_repetition"):
        super().__init__(config, name)
        self._top_ns = tuple(n for n, _ in config.top_n_grams)
        self._dup_ns = tuple(n for n, _ in config.dup_n_grams)
        self._top_fracs = {}  # the lowest fraction per n (a recipe may list one n twice)
        for n, frac in config.top_n_grams:
            self._top_fracs[n] = min(frac, self._top_fracs.get(n, frac))

    def __call__(self, doc) -> Optional[Drop]:
        view = as_view(doc)
        done, drop = self._line_rules(view)
        if done:
            return drop
        top, dup = view.ngrams.compute(self._top_ns, self._dup_ns, self._top_fires(len(view.text)))
        return self._ngram_rules(top, dup, len(view.text))

    def _top_fires(self, n_chars: int):
        fracs = self._top_fracs
        return lambda n, chars: chars / n_chars > fracs[n]

    def _line_rules(self, view) -> Tuple[bool, Optional[Drop]]:
        """``(done, drop)``: the paragraph and line rules; ``done`` when the n-gram rules
        need not run (a drop, an empty text or no n-gram rule)."""
        c = self.config
        text = view.text
        n_chars = len(text)
        if n_chars == 0:
            return True, None
        para_rules = c.dup_para_frac is not None or c.dup_para_char_frac is not None
        line_rules = c.dup_line_frac is not None or c.dup_line_char_frac is not None
        if para_rules or line_rules:
            paras, dups, dup_chars, lines, line_dups, line_dup_chars = repetition_counts(text)
            # in datatrove's order: paragraphs (by count, then by characters), then lines
            for name, part, whole in (("dup_para_frac", dups, paras),
                                      ("dup_para_char_frac", dup_chars, n_chars),
                                      ("dup_line_frac", line_dups, lines),
                                      ("dup_line_char_frac", line_dup_chars, n_chars)):
                limit = getattr(c, name)
                if limit is not None and part / whole > limit:
                    return True, self._drop(name, f"ratio={fmt(part / whole)} > {limit}")
        return (not c.top_n_grams and not c.dup_n_grams), None

    def _ngram_rules(self, top, dup, n_chars: int) -> Optional[Drop]:
        c = self.config
        for n, frac in c.top_n_grams:
            if top[n] is None:  # an upper bound of its figure is below the threshold
                continue
            ratio = top[n] / n_chars
            if ratio > frac:
                return self._drop(f"top_{n}_gram", f"ratio={fmt(ratio)} > {frac}")
        for n, frac in c.dup_n_grams:
            ratio = dup[n] / n_chars
            if ratio > frac:
                return self._drop(f"duplicated_{n}_n_grams", f"ratio={fmt(ratio)} > {frac}")
        return None
