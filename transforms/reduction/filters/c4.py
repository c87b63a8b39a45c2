"""C4 quality filter (Raffel et al. 2020, "Exploring the Limits of Transfer
Learning with a Unified Text-to-Text Transformer", JMLR 21, §2.2).

The rules, their order and reason names mirror datatrove 0.10
(``src/datatrove/pipeline/filters/c4_filters.py``, ``C4QualityFilter``, itself
after TFDS ``tensorflow_datasets/text/c4_utils.py``).  Lines are judged one by
one; a line that fails a line rule is ignored (it would be removed from the
page), a page-level rule drops the page:

Line rules (the line is skipped): a word longer than ``max_word_length`` =
1000 characters; no terminal punctuation (``. ? ! " '``) or ending in ``...``
(``filter_no_terminal_punct``); fewer than ``min_words_per_line`` = 3 words;
contains "javascript" (``filter_javascript``); contains a cookie/terms-of-use
phrase (``filter_policy``).  Wikipedia citation marks (``[1]``, ``[edit]``,
``[citation needed]``) are removed from a line before the punctuation check
(``remove_citations``).

Page rules (rule names): ``lorem_ipsum`` (a kept-so-far line contains "lorem
ipsum"), ``curly_bracket`` (such a line contains ``{``), ``too_few_sentences``
(fewer than ``min_num_sentences`` = 5 sentences in the kept lines), and
``badwords`` (a word of ``badwords`` appears, flanked by non-word characters).

**This filter decides; it does not rewrite the text.**  C4 also removes the
failed lines from a kept page; that is a cleaning step, not a drop decision,
and is not done here.

**Bad-words list**: C4 uses the LDNOOBW "List of Dirty, Naughty, Obscene or
Otherwise Bad Words" (CC-BY-4.0).  No PyPI package we found ships that list
(``naughty`` 0.0.2, LGPL, ships a sub-domain list; ``naughty-words-py`` 1.0.0,
GPL-3.0, ships no list; datatrove downloads it at run time, which we do not),
so none is bundled: ``badwords`` is empty by default and a recipe may list
words.

Sentences: datatrove counts spaCy sentencizer sentences per line; we count
sentence ends with a regular expression (``count_sentences``), see its
docstring.  Words per line: whitespace-separated words (as C4), except that a
line in a script written without spaces (Han, Kana, Thai, ...) counts one word
per character of that script (``transforms.reduction.filters.text``).
"""
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from transforms.reduction.filters.base import Drop, RuleFilter, as_view
from transforms.reduction.filters.config import FilterConfigError, check_bool, check_count
from transforms.reduction.filters.native import FAST
from transforms.reduction.filters.text import ABBREVIATIONS, has_no_space_script, split_words

CITATION_RE = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
ELLIPSIS = "..."
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                     "use of cookies", "use cookies")



def _has_policy(lower: str) -> bool:
    """``any(p in lower for p in POLICY_SUBSTRINGS)``, without a generator per line."""
    for p in POLICY_SUBSTRINGS:
        if p in lower:
            return True
    return False


# spaCy's English tokenizer keeps these (and single letters "J.") whole, so their period
# ends no sentence.
_ABBREVIATIONS = ABBREVIATIONS
# A sentence end: a run of . ! ? 。！？ ending a whitespace-separated chunk (closing
# punctuation may follow), with a word later in the line; or spaCy's infix split of
# "io.TextIOWrapper" (a period between a lower- and an upper-case letter).
_SENT_END_RE = re.compile(r"(\S*?)([.!?\u3002\uff01\uff1f]+)[^\w\s]*(?=\s+\W*\w)|(?<=[a-z])\.(?=[A-Z])")
_LEADING_PUNCT_RE = re.compile(r"^[^\w]+")


def _sentence_ends(line: str):
    """``(group 1, group 2)`` of every ``_SENT_END_RE`` match of ``line``, in order
    (``(None, None)`` for the lower.Upper infix): compiled (``native.FAST.sentence_end``,
    the same matches) when the extension is built, else ``finditer``."""
    if FAST is None:
        for match in _SENT_END_RE.finditer(line):
            yield match.group(1), match.group(2)
        return
    pos = 0
    while True:
        found = FAST.sentence_end(line, pos)
        if found is None:
            return
        start, head_end, punct_end, pos = found
        if head_end < 0:
            yield None, None
        else:
            yield line[start:head_end], line[head_end:punct_end]


def count_sentences(line: str, at_most: Optional[int] = None) -> int:
    """Sentences in one line: 1 + sentence ends followed by more words.

    Approximates spaCy's sentencizer on spaCy's English tokens (datatrove's
    ``split_into_sentences``): a ``.``/``!``/``?`` run ending a chunk starts a
    new sentence at the next word, unless the chunk is an abbreviation spaCy
    keeps whole (``Mr.``, ``e.g.``, a single capital ``J.``) or the run is an
    ellipsis ``...``; 。！？ count too, and so does a period between a lower-
    and an upper-case letter (spaCy splits ``io.TextIOWrapper`` there).  An
    empty line has 0 sentences.  ``at_most``: stop counting there (the count
    returned is then ``at_most``; C4's rule only asks whether a page reaches 5).
    """
    if not line.strip():
        return 0
    count = 1
    if at_most is not None and count >= at_most:
        return at_most
    for head, punct in _sentence_ends(line):
        if punct is None:  # lower.Upper infix
            count += 1
        elif len(punct) > 1 and set(punct) == {"."}:  # an ellipsis is one token, not a sentence end
            continue
        else:
            head = _LEADING_PUNCT_RE.sub("", head)
            if punct == "." and (head + "." in _ABBREVIATIONS or (len(head) == 1 and head.isalpha())
                                 or ("." in head and head.replace(".", "").isalpha() and len(head) <= 6)):
                continue
            count += 1
        if at_most is not None and count >= at_most:
            return at_most
    return count


@dataclass(frozen=True)
class C4QualityConfig:
    """Parameters of the C4 rules (defaults: C4's).  See the module docstring.

    ``min_num_sentences``, ``min_words_per_line``, ``max_word_length``: ``None``
    switches the rule off.  ``badwords``: words (lower case) that drop a page.
    Raises ``FilterConfigError`` naming the parameter.
    """
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: Optional[int] = 5
    min_words_per_line: Optional[int] = 3
    max_word_length: Optional[int] = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    badwords: Tuple[str, ...] = ()

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("remove_citations", "filter_no_terminal_punct", "filter_lorem_ipsum",
                     "filter_javascript", "filter_curly_bracket", "filter_policy"):
            check_bool(owner, name, getattr(self, name))
        check_count(owner, "min_num_sentences", self.min_num_sentences)
        check_count(owner, "min_words_per_line", self.min_words_per_line)
        check_count(owner, "max_word_length", self.max_word_length, 1)
        if isinstance(self.badwords, str) or not all(isinstance(w, str) and w for w in self.badwords):
            raise FilterConfigError(f"{owner}.badwords must be a list of non-empty strings")
        object.__setattr__(self, "badwords", tuple(w.lower() for w in self.badwords))


class C4QualityFilter(RuleFilter):
    """C4 rules (``C4QualityConfig``) -> ``Drop("c4", rule, detail)``."""

    def __init__(self, config: C4QualityConfig = C4QualityConfig(), name: str = "c4"):
        super().__init__(config, name)
        self._badwords_re = (re.compile(r"(?:\W|^)({})(?:\W|$)".format(
            "|".join(re.escape(w) for w in sorted(config.badwords)))) if config.badwords else None)

    def __call__(self, doc) -> Optional[Drop]:
        c = self.config
        view = as_view(doc)
        sentences = 0
        wanted = c.min_num_sentences  # counting stops once the page has them (the rule's only question)
        max_len = c.max_word_length
        min_words = c.min_words_per_line
        no_space_doc = has_no_space_script(view.text)
        # Once the page has its sentences, a later line can only drop it by 'lorem ipsum'
        # or '{': when the text holds neither (nor a citation mark whose removal could
        # join one), the lines left change nothing and are not read.
        text = view.text
        settled = not ((c.filter_curly_bracket and "{" in text)
                       or (c.filter_lorem_ipsum and ("lorem ipsum" in text.lower()
                                                     or (c.remove_citations and "[" in text))))
        for line in view.lines:
            if settled and (wanted is None or sentences >= wanted):
                break
            line = line.strip()
            # a word longer than max_len needs a line longer than max_len
            if max_len is not None and len(line) > max_len and (
                    FAST.split_stats(line, -1)[1] if FAST is not None
                    else max(map(len, line.split()))) > max_len:
                continue
            words_line = line
            if c.remove_citations and "[" in line:
                line = CITATION_RE.sub("", line)
            if c.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION)
                                               or line.endswith(ELLIPSIS)):
                continue
            if min_words is not None:
                if no_space_doc and has_no_space_script(line):
                    n_words = len(split_words(line))
                elif FAST is not None:  # the same: whitespace chunks, counted up to min_words
                    n_words = FAST.split_stats(words_line, min_words)[0]
                else:  # whitespace words of the line before citation removal, counted up to min_words
                    n_words = len(words_line.split(None, min_words))
                if n_words < min_words:
                    continue
            lower = line.lower()
            if c.filter_lorem_ipsum and "lorem ipsum" in lower:
                return Drop(self.name, "lorem_ipsum", "line contains 'lorem ipsum'")
            if c.filter_javascript and "javascript" in lower:
                continue
            if c.filter_curly_bracket and "{" in line:
                return Drop(self.name, "curly_bracket", "line contains '{'")
            if c.filter_policy and _has_policy(lower):
                continue
            if wanted is not None and sentences < wanted:
                sentences += count_sentences(line, wanted - sentences)
        if c.min_num_sentences is not None and sentences < c.min_num_sentences:
            return Drop(self.name, "too_few_sentences", f"sentences={sentences} < {c.min_num_sentences}")
        if self._badwords_re is not None:
            found = self._badwords_re.search(view.text.lower())
            if found:
                return Drop(self.name, "badwords", f"word={found.group(1)!r}")
        return None
