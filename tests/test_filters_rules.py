"""Exact decisions of the heuristic filters on hand-built documents, at and around each threshold.

Each rule is tested in isolation (its filter configured with only that rule
on, which is also the test that every rule can be switched alone), then the
defaults on whole documents and the chain's counters.
"""
import pytest

from transforms.reduction.filters.base import Document, Drop, FilterChain, dict_counter
from transforms.reduction.filters.c4 import C4QualityConfig, C4QualityFilter, count_sentences
from transforms.reduction.filters.config import FilterConfigError
from transforms.reduction.filters.fineweb import FineWebQualityConfig, FineWebQualityFilter
from transforms.reduction.filters.gopher import (GopherQualityConfig, GopherQualityFilter,
                                       GopherRepetitionConfig, GopherRepetitionFilter)
from transforms.reduction.filters.text import split_words

GQ_OFF = dict(min_doc_words=None, max_doc_words=None, min_avg_word_length=None,
              max_avg_word_length=None, max_symbol_word_ratio=None, max_bullet_lines_ratio=None,
              max_ellipsis_lines_ratio=None, min_alpha_words_ratio=None, min_stop_words=None)
GR_OFF = dict(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None,
              dup_para_char_frac=None, top_n_grams=(), dup_n_grams=())
FW_OFF = dict(line_punct_thr=None, short_line_thr=None, char_duplicates_ratio=None, new_line_ratio=None)


def doc(text):
    return Document("d", text)


def uniq(n, start=0):
    """n distinct 5-letter words (no digits, no stop words)."""
    out = []
    for i in range(start, start + n):
        w, k = "", i
        for _ in range(4):
            w = "bcdfghjklm"[k % 10] + w
            k //= 10
        out.append("q" + w)
    return out


def pad_to(text, n):
    """``text`` plus one space and one unique word, ``n`` characters in all."""
    assert n - len(text) >= 2, (len(text), n)
    return text + " " + "z" * (n - len(text) - 1)


def gq(**on):
    return GopherQualityFilter(GopherQualityConfig(**{**GQ_OFF, **on}))


def gr(**on):
    return GopherRepetitionFilter(GopherRepetitionConfig(**{**GR_OFF, **on}))


def fw(**on):
    return FineWebQualityFilter(FineWebQualityConfig(**{**FW_OFF, **on}))


def rule(result):
    return None if result is None else result.rule


# ---------------------------------------------------------------- words

def test_split_words_spacy_like_and_per_character_for_scripts_without_spaces():
    assert split_words("Hello, world... (e.g. this) don't it's 3.14 well-known a=b") == [
        "Hello", ",", "world", "...", "(", "e.g.", "this", ")", "do", "n't", "it", "'s", "3.14",
        "well", "-", "known", "a", "=", "b"]
    assert split_words("我爱北京。東京タワー") == ["我", "爱", "北", "京", "。", "東", "京", "タ", "ワ", "ー"]
    assert split_words("ภาษาไทย") == list("ภาษาไทย")
    assert split_words("") == []


# ---------------------------------------------------------------- Gopher quality

def test_gopher_short_and_long_doc_at_thresholds():
    f = gq(min_doc_words=50, max_doc_words=60)
    assert rule(f(doc(" ".join(uniq(49))))) == "short_doc"
    assert f(doc(" ".join(uniq(50)))) is None
    assert f(doc(" ".join(uniq(60)))) is None
    assert f(doc(" ".join(uniq(61)))) == Drop("gopher_quality", "long_doc", "words=61 > 60")
    # symbol tokens are not words
    assert rule(f(doc(" ".join(uniq(49)) + " , . ;"))) == "short_doc"


def test_gopher_mean_word_length_bounds():
    f = gq(min_avg_word_length=3, max_avg_word_length=10)
    assert f(doc(" ".join(["abc"] * 50))) is None                          # mean 3.0
    assert rule(f(doc(" ".join(["abc"] * 49 + ["ab"])))) == "below_avg_word_length"  # 2.98
    words = ["a" * 10] * 49 + ["b" * 10]
    assert f(doc(" ".join(words))) is None                                 # mean 10.0
    assert rule(f(doc(" ".join(words[:-1] + ["b" * 11])))) == "above_avg_word_length"


def test_gopher_hash_and_ellipsis_ratios():
    f = gq(max_symbol_word_ratio=0.1)
    words = uniq(90)
    assert f(doc(" ".join(words + ["#"] * 10))) is None                    # 10 / 100
    assert rule(f(doc(" ".join(words + ["#"] * 11)))) == "too_many_hashes"  # 11 / 101
    assert f(doc(" ".join(["..."] * 10 + words))) is None
    assert rule(f(doc(" ".join(["..."] * 11 + words)))) == "too_many_ellipsis"
    assert rule(f(doc(" ".join(["\u2026"] * 11 + words)))) == "too_many_ellipsis"


def test_gopher_bullet_and_end_ellipsis_lines():
    f = gq(max_bullet_lines_ratio=0.9)
    lines = [" ".join(uniq(5, 10 * i)) for i in range(10)]
    nine = "\n".join(["- " + x for x in lines[:9]] + lines[9:])
    assert f(doc(nine)) is None
    assert rule(f(doc("\n".join("  \u2022 " + x for x in lines)))) == "too_many_bullets"
    f = gq(max_ellipsis_lines_ratio=0.3)
    three = "\n".join([x + "..." for x in lines[:3]] + lines[3:])
    assert f(doc(three)) is None
    four = "\n".join([x + " \u2026  " for x in lines[:4]] + lines[4:])
    assert rule(f(doc(four))) == "too_many_end_ellipsis"


def test_gopher_alpha_ratio_and_stop_words():
    f = gq(min_alpha_words_ratio=0.8)
    assert f(doc(" ".join(uniq(80) + ["123"] * 20))) is None               # 0.8
    assert rule(f(doc(" ".join(uniq(80) + ["123"] * 21)))) == "below_alpha_ratio"
    f = gq(min_stop_words=2)
    assert f(doc("the cat and the dog")) is None
    assert f(doc("the cat The dog")) == Drop("gopher_quality", "few_stop_words", "stop_words=1 < 2")
    assert rule(f(doc("The cat AND dog"))) == "few_stop_words"  # case-sensitive, as datatrove


def test_gopher_quality_defaults_keep_prose_and_check_in_order():
    prose = " ".join(["the quick brown fox jumps over the lazy dog and runs with the wind"] * 4)
    f = GopherQualityFilter()
    assert f(doc(prose)) is None
    assert rule(f(doc("the and"))) == "short_doc"   # first rule wins
    assert rule(f(doc(""))) == "short_doc"
    assert gq()(doc("")) is None                     # every rule off: keep, no division by zero


# ---------------------------------------------------------------- Gopher repetition

def test_gopher_duplicate_paragraph_and_line_fractions():
    unique = ["\n\n".join([" ".join(uniq(30, 100 * i))]) for i in range(6)]
    keep = "\n\n".join(unique + ["Short one."] * 4)      # 3 duplicates / 10 paragraphs
    drop = "\n\n".join(unique + ["Short one."] * 5)      # 4 / 11
    f = gr(dup_para_frac=0.3)
    assert f(doc(keep)) is None
    assert rule(f(doc(drop))) == "dup_para_frac"
    f = gr(dup_line_frac=0.3)
    assert f(doc(keep.replace("\n\n", "\n"))) is None
    assert rule(f(doc(drop.replace("\n\n", "\n")))) == "dup_line_frac"


def test_gopher_duplicate_paragraph_and_line_char_fractions():
    d = "x" * 19 + "."                                                     # 20 characters
    text = pad_to(" ".join(uniq(8)), 56) + "\n\n" + d + "\n\n" + d        # 100 chars, 20 duplicate
    assert len(text) == 100
    f = gr(dup_para_char_frac=0.2)
    assert f(doc(text)) is None
    assert f(doc(text[1:])) == Drop("gopher_repetition", "dup_para_char_frac", "ratio=0.2020 > 0.2")
    text = pad_to(" ".join(uniq(8)), 58) + "\n" + d + "\n" + d              # 100 chars
    assert len(text) == 100
    f = gr(dup_line_char_frac=0.2)
    assert f(doc(text)) is None
    assert rule(f(doc(text[1:]))) == "dup_line_char_frac"
    assert gr(dup_para_char_frac=0.2)(doc(text[1:])) is None               # one paragraph


def test_gopher_top_ngram_fraction():
    text = pad_to("xx yy " * 4 + " ".join(uniq(10)), 100)   # "xx yy": 5 chars x 4 = 20 / 100
    f = gr(top_n_grams=((2, 0.2),))
    assert f(doc(text)) is None
    assert f(doc(text[:-1])) == Drop("gopher_repetition", "top_2_gram", "ratio=0.2020 > 0.2")


def test_gopher_duplicated_ngram_fraction():
    text = pad_to("a b c d e a b c d e " + " ".join(uniq(3)), 50)  # repeated "abcde": 5 chars
    f = gr(dup_n_grams=((5, 0.1),))
    assert f(doc(text)) is None                              # 5 / 50
    assert rule(f(doc(text[:-1]))) == "duplicated_5_n_grams"  # 5 / 49


def test_gopher_repetition_defaults_on_spam_and_prose():
    f = GopherRepetitionFilter()
    assert f(doc(" ".join(uniq(200)))) is None
    assert rule(f(doc("\n\n".join(["buy cheap shoes now"] * 10)))) == "dup_para_frac"
    assert rule(f(doc("\n".join(["buy cheap shoes now"] * 10)))) == "dup_line_frac"
    assert f(doc("")) is None


# ---------------------------------------------------------------- C4

GOOD = "This is a good sentence here."


def test_c4_min_sentences_counts_only_kept_lines():
    f = C4QualityFilter()
    assert f(doc("\n".join([GOOD] * 5))) is None
    assert f(doc("\n".join([GOOD] * 4))) == Drop("c4", "too_few_sentences", "sentences=4 < 5")
    assert f(doc("\n".join([GOOD] * 4 + ["This line has no end"]))).rule == "too_few_sentences"
    assert f(doc("\n".join([GOOD] * 4 + ["Too short."]))).rule == "too_few_sentences"
    assert f(doc("\n".join([GOOD] * 4 + ["Please enable JavaScript to continue."]))).rule == "too_few_sentences"
    assert f(doc("\n".join([GOOD] * 4 + ["Read our privacy policy today."]))).rule == "too_few_sentences"
    assert f(doc("\n".join([GOOD] * 4 + ["Wait for the next part..."]))).rule == "too_few_sentences"
    assert f(doc("\n".join([GOOD] * 4 + ["One two three. Four five six."]))) is None
    assert f(doc("\n".join([GOOD] * 4 + ["It is so, as shown.[1]"]))) is None  # citation removed
    assert f(doc("\n".join([GOOD] * 4 + ["A " + "w" * 1000 + " here."]))) is None
    assert f(doc("\n".join([GOOD] * 4 + ["A " + "w" * 1001 + " here."]))).rule == "too_few_sentences"


def test_c4_page_rules_and_switches():
    f = C4QualityFilter()
    five = [GOOD] * 5
    assert f(doc("\n".join(five + ["Lorem ipsum dolor sit amet."]))) == Drop(
        "c4", "lorem_ipsum", "line contains 'lorem ipsum'")
    assert f(doc("\n".join(five + ["Use a {brace} here."]))).rule == "curly_bracket"
    assert f(doc("\n".join(five + ["a {brace} in a line with no end"]))) is None  # line skipped first
    off = C4QualityFilter(C4QualityConfig(filter_lorem_ipsum=False, filter_curly_bracket=False))
    assert off(doc("\n".join(five + ["Lorem ipsum dolor sit amet.", "Use a {brace} here."]))) is None
    assert C4QualityFilter(C4QualityConfig(min_num_sentences=None))(doc("")) is None
    bad = C4QualityFilter(C4QualityConfig(badwords=("darn",)))
    assert bad(doc("\n".join(five + ["Oh darn it all."]))) == Drop("c4", "badwords", "word='darn'")
    assert bad(doc("\n".join(five + ["Oh darned it all."]))) is None


def test_count_sentences_like_spacy_sentencizer():
    assert count_sentences("One two three.") == 1
    assert count_sentences("One two. Three four! Five six? Seven.") == 4
    assert count_sentences("Ask Mr. Smith, e.g. now. Then go.") == 2
    assert count_sentences("It is (see below). Then ``x`` runs.") == 2
    assert count_sentences("Wait... and then.") == 1
    assert count_sentences("Wrapped in an io.TextIOWrapper instance.") == 2
    assert count_sentences("   ") == 0


# ---------------------------------------------------------------- FineWeb

def test_fineweb_rules_at_thresholds():
    lines = [" ".join(uniq(8, 10 * i)) for i in range(25)]
    f = fw(line_punct_thr=0.12)
    assert f(doc("\n".join([x + "." for x in lines[:3]] + lines[3:]))) is None       # 3/25
    assert f(doc("\n".join([x + "." for x in lines[:2]] + lines[2:]))).rule == "line_punct_ratio"
    assert fw(line_punct_thr=0.12, line_punct_exclude_zero=True)(doc("\n".join(lines))) is None
    assert f(doc(" \n\n")) == Drop("fineweb", "empty", "no non-blank line")

    short = ["s%02d" % i for i in range(100)]
    long_ = [" ".join(uniq(6, 10 * i)) for i in range(100)]  # 35 characters
    f = fw(short_line_thr=0.67)
    assert f(doc("\n".join(short[:67] + long_[67:]))) is None
    assert f(doc("\n".join(short[:68] + long_[68:]))).rule == "short_line_ratio"

    f = fw(char_duplicates_ratio=0.01)
    d = "dupe line."                                           # 10 chars
    body = pad_to(" ".join(uniq(100)), 990 - 10)              # 980 + 10 + 10 = 1000 chars
    assert f(doc(body + "\n" + d + "\n" + d)) is None         # 10 / 1000
    assert f(doc(body[1:] + "\n" + d + "\n" + d)).rule == "char_dup_ratio"

    f = fw(new_line_ratio=0.3)
    assert f(doc("a b c\nd e f\ng h i\nj")) is None                        # 3 newlines / 10 words
    assert f(doc("a b\nc d\ne f g\nh i\nj")) == Drop("fineweb", "list_ratio", "ratio=0.4000 > 0.3")
