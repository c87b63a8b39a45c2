"""Text helpers shared by the heuristic filters: words, lines, punctuation sets.

Pure Python, no Beam import.

Word splitting (``split_words``)
--------------------------------
datatrove tokenises English with spaCy's rule-based tokenizer
(``datatrove.utils.word_tokenizers``, ``SpaCyTokenizer("en")``); we reproduce
its rules without spaCy, in a few compiled regular expressions, per
whitespace-separated chunk:

* prefixes peel off the front one at a time (quotes, brackets, ``, ; : ! ?``,
  ``#*&_``, ``$`` and other currency signs, ``...``), suffixes off the end
  (the same, plus ``'s 're 'll 've 'd 'm n't``, and ``.`` after a digit, a
  lower-case letter, ``_`` or punctuation); abbreviations spaCy keeps whole
  (``Ltd.``, ``e.g.``, ``U.S.``) and URLs stay one token;
* what is left splits at spaCy's infixes: ``-`` between letters, ``--``,
  ``...``, ``+-*^`` between digits, ``.`` between a lower- and an upper-case
  letter, ``,`` between letters, ``: < > = /`` before a letter; anything else
  (``f(x``, ``x+y``, ``path\\to``) stays one token, as in spaCy;
* ``cannot`` is ``can`` + ``not``.

Decisions of the Gopher, C4 and FineWeb filters agree with datatrove's on
99.87-100% of 10k documents (BENCHMARKS.md); the remaining differences are
spaCy's special cases we do not copy (emoticons such as ``:)``, ``C++``).

* **scripts written without spaces** -- Han (CJK ideographs), Hiragana,
  Katakana, Thai, Lao, Khmer, Myanmar -- count **one word per character**
  (the per-script rule used by C4's and Gopher's multilingual follow-ups when
  no segmenter is installed).  So a Chinese page of 300 characters has about
  300 words, where a segmenter (jieba) would give about 150-200: thresholds
  in words are therefore looser-than-English lower bounds for these scripts.

``analyse_words`` runs its fast path compiled when the extension is built
(``native.FAST.analyse_words``: ``str.split()``'s whitespace and ``str.isalpha()`` by
CPython's own predicates, the same memo for other chunks); ``analyse_words_py`` is the
Python reference (``tests/test_filters_native.py``).

The punctuation sets are copied from datatrove (``src/datatrove/utils/text.py``,
Apache-2.0): ``PUNCTUATION`` (ASCII/CJK punctuation plus control characters)
and ``TERMINAL_PUNCTUATION`` (Unicode sentence terminals of every script).
"""
import re
from typing import Dict, NamedTuple, Tuple

from transforms.reduction.filters.native import FAST

PUNCTUATION = "!/\u2014\u201d:\uff05\uff11\u3008&(\u3001\u2501\u005c\u3010#%\u300c\u300d\uff0c\u3011\uff1b+^]~\u201c\u300a\u201e';\u2019{|\u2236\u00b4[=-`*\uff0e\uff08\u2013\uff1f\uff01\uff1a$\uff5e\u00ab\u3009,><\u300b)?\uff09\u3002\u2026@_.\u0022}\u25ba\u00bb\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u000b\u000c\u000d\u000e\u000f\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f\u007f\u0080\u0081\u0082\u0083\u0084\u0085\u0086\u0087\u0088\u0089\u008a\u008b\u008c\u008d\u008e\u008f\u0090\u0091\u0092\u0093\u0094\u0095\u0096\u0097\u0098\u0099\u009a\u009b\u009c\u009d\u009e\u009f"
TERMINAL_PUNCTUATION = "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048\U000110be\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7\U00011641\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88"

PUNCTUATION_SET = frozenset(PUNCTUATION) | frozenset(TERMINAL_PUNCTUATION)
TERMINAL_PUNCTUATION_TUPLE = tuple(TERMINAL_PUNCTUATION)

# Characters of scripts written without spaces: one word each.
NO_SPACE_SCRIPTS = (
    "\u0e00-\u0e7f"   # Thai
    "\u0e80-\u0eff"   # Lao
    "\u1000-\u109f"   # Myanmar
    "\u1780-\u17ff"   # Khmer
    "\u3040-\u309f"   # Hiragana
    "\u30a0-\u30ff"   # Katakana
    "\u31f0-\u31ff"   # Katakana phonetic extensions
    "\u3400-\u4dbf"   # CJK extension A
    "\u4e00-\u9fff"   # CJK unified ideographs
    "\uf900-\ufaff"   # CJK compatibility ideographs
    "\uff66-\uff9f"   # half-width Katakana
    "\U00020000-\U0002ebef"  # CJK extensions B-F
)
_A = rf"[^\W_{NO_SPACE_SCRIPTS}]"  # a word character that is not "_" nor of a no-space script
WORD_RE = re.compile(
    rf"[{NO_SPACE_SCRIPTS}]"                          # one character of a no-space script
    r"|(?:[A-Za-z]\.){2,}"                            # e.g. i.e. U.S. (spaCy keeps them whole)
    rf"|{_A}+(?=[nN]['\u2019][tT](?!\w))"              # do|n't
    r"|(?i:can)(?=not\b)"                              # can|not
    r"|[nN]['\u2019][tT](?!\w)"                       # n't
    r"|['\u2019](?:[sSdDmM]|re|RE|ll|LL|ve|VE)(?!\w)"  # 's 're 'll 've 'd 'm
    rf"|{_A}+(?:(?:\.|_+|(?<=\d)[,:/](?=\d)){_A}+)*"  # a word: 3.14, os.path, snake_case
    r"|\.{2,}|-{2,}|'{2}"                              # ellipsis, dash, quote pair: one token
    rf"|[^\s{NO_SPACE_SCRIPTS}]"                      # any other character: one symbol token
)
_NO_SPACE_RE = re.compile(rf"[{NO_SPACE_SCRIPTS}]")


# spaCy's English punctuation rules (spacy/lang/punctuation.py, char_classes.py), reduced to
# what changes word and symbol counts: which characters peel off a chunk's start or end,
# and where a chunk splits inside.
_QUOTES = "\"'`\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u00ab\u00bb\u2039\u203a"
_PUNCT = ",:;!?\u00bf\u061f\u00a1()[]{}<>_#*&\u3002\uff1f\uff01\uff0c\u3001\uff1b\uff1a\uff5e\u00b7"
_PREFIX_RE = re.compile(rf"''|\(:|\.{{2,}}|\u2026+|[{re.escape(_QUOTES + _PUNCT)}\u00a7%=\u2014\u2013$\u00a3\u20ac\u00a5]"
                        r"|\+(?![0-9])")
_SUFFIX_RE = re.compile(rf"(?:''|\):|:\]|:\)|:\(|\.{{2,}}|\u2026+|(?<=\w)[nN]['\u2019][tT]|(?<=\w)['\u2019](?:[sSdDmM]|re|RE|ll|LL|ve|VE)"
                        rf"|[{re.escape(_QUOTES + _PUNCT)}\u2014\u2013]"
                        r"|(?<=[0-9])[+%\u00b0]|(?<=[0-9a-z_\W])\.|(?<=[A-Z][A-Z])\.)$")
_INFIX_RE = re.compile(r"(\.{2,}|\u2026"
                       r"|(?<=[0-9])[+\-*^](?=[0-9-])"
                       r"|(?<=[a-z'\"])\.(?=[A-Z'\"])"
                       r"|(?<=[^\W\d_]),(?=[^\W\d_])"
                       r"|(?<=[^\W_])(?:-{1,3}|\u2013|\u2014|~)(?=[^\W\d_])"
                       r"|(?<=[^\W_])[:<>=/](?=[^\W\d_]))")
# Abbreviations spaCy's English tokenizer keeps whole, period included (a subset of
# spacy/lang/en/tokenizer_exceptions.py).
ABBREVIATIONS = frozenset((
    "Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Jr.", "Sr.", "Prof.", "Inc.", "Ltd.", "Co.", "Corp.",
    "vs.", "etc.", "e.g.", "i.e.", "a.m.", "p.m.", "Mt.", "No.", "Jan.", "Feb.", "Mar.", "Apr.",
    "Jun.", "Jul.", "Aug.", "Sep.", "Sept.", "Oct.", "Nov.", "Dec.", "U.S.", "U.K."))
_KEEP_WHOLE_RE = re.compile(r"(?:[A-Za-z]\.){2,}$|(?:https?://|www\.)\S+$")


def _split_chunk(chunk: str, out: list) -> None:
    """spaCy-style split of one whitespace-free chunk: prefixes, suffixes, infixes."""
    suffixes = []
    while chunk:
        if _KEEP_WHOLE_RE.match(chunk) or chunk in ABBREVIATIONS:
            break
        if not chunk[0].isalnum() and len(chunk) > 1:
            m = _PREFIX_RE.match(chunk)
            if m is not None:
                out.append(m.group())
                chunk = chunk[m.end():]
                continue
        if (not chunk[-1].isalnum() or "'" in chunk or "\u2019" in chunk) and len(chunk) > 1:
            m = _SUFFIX_RE.search(chunk)
            if m is not None:
                suffixes.append(m.group())
                chunk = chunk[:m.start()]
                continue
        break
    if chunk:
        if chunk.isalnum() or chunk in ABBREVIATIONS or _KEEP_WHOLE_RE.match(chunk):
            out.append(chunk)
        else:
            out.extend(p for p in _INFIX_RE.split(chunk) if p)
    out.extend(reversed(suffixes))


def _split_chunks(chunks, out: list) -> None:
    """The per-chunk rules (module docstring) over whitespace-free ``chunks``, into ``out``."""
    for chunk in chunks:
        if chunk.isalpha() and not _NO_SPACE_RE.search(chunk):
            if len(chunk) == 6 and chunk.lower() == "cannot":  # spaCy: can|not
                out.extend((chunk[:3], chunk[3:]))
            else:
                out.append(chunk)
        elif _NO_SPACE_RE.search(chunk):
            out.extend(WORD_RE.findall(chunk))
        else:
            _split_chunk(chunk, out)


class Words(NamedTuple):
    """The tokens of a text and the per-token counts the Gopher rules need.

    ``words``: ``split_words(text)``; ``symbols``: tokens made only of
    ``PUNCTUATION_SET`` characters (``is_symbol``); ``symbol_chars``: their
    characters; ``no_alpha``: tokens without an alphabetic character
    (``str.isalpha``); ``chars``: characters of all tokens.
    """
    words: list
    symbols: int
    symbol_chars: int
    no_alpha: int
    chars: int


def _token_counts(tokens) -> Tuple[int, int, int]:
    """``(symbols, symbol_chars, no_alpha)`` of ``tokens``."""
    symbols = symbol_chars = no_alpha = 0
    for token in tokens:
        if all(ch in PUNCTUATION_SET for ch in token):
            symbols += 1
            symbol_chars += len(token)
        if not any(ch.isalpha() for ch in token):
            no_alpha += 1
    return symbols, symbol_chars, no_alpha


_CHUNK_CACHE: Dict[str, tuple] = {}
_CHUNK_CACHE_MAX = 1 << 16


def _special_chunk(chunk: str) -> tuple:
    """``(tokens, symbols, symbol_chars, no_alpha)`` of one chunk, memoised (a pure function)."""
    found = _CHUNK_CACHE.get(chunk)
    if found is None:
        tokens = []
        _split_chunks((chunk,), tokens)
        found = (tokens,) + _token_counts(tokens)
        if len(_CHUNK_CACHE) >= _CHUNK_CACHE_MAX:
            _CHUNK_CACHE.clear()
        _CHUNK_CACHE[chunk] = found
    return found


def analyse_words(text: str) -> Words:
    """``Words`` of ``text``: the tokens of ``split_words`` and their counts.

    Fast path (no character of a script written without spaces): a plain
    alphabetic chunk is its own token (no symbol, has a letter); any other
    chunk (and ``cannot``) gets its tokens and counts from ``_split_chunk``
    through a bounded memo.  Otherwise every chunk goes through the rules one
    by one.  Both give the tokens of applying the rules chunk by chunk.  The
    fast path runs compiled (``native.FAST.analyse_words``: the same chunks,
    the same memo) when the extension is built; ``analyse_words_py`` is the
    Python reference.
    """
    if FAST is not None:
        found = FAST.analyse_words(text, _CHUNK_CACHE, _special_chunk)
        if found is not None:
            return Words(*found)
        out = []
        _split_chunks(text.split(), out)
        symbols, symbol_chars, no_alpha = _token_counts(out)
        return Words(out, symbols, symbol_chars, no_alpha, sum(map(len, out)))
    return analyse_words_py(text)


def analyse_words_py(text: str) -> Words:
    """``analyse_words`` in pure Python (the reference of the compiled fast path)."""
    if text.isascii() or _NO_SPACE_RE.search(text) is None:  # (no such script is ASCII)
        out = []
        append, extend = out.append, out.extend
        symbols = symbol_chars = no_alpha = 0
        for chunk in text.split():
            if chunk.isalpha() and (len(chunk) != 6 or chunk.lower() != "cannot"):
                append(chunk)
                continue
            tokens, sym, sym_chars, noalpha = _special_chunk(chunk)
            extend(tokens)
            if sym or noalpha:
                symbols += sym
                symbol_chars += sym_chars
                no_alpha += noalpha
    else:
        out = []
        _split_chunks(text.split(), out)
        symbols, symbol_chars, no_alpha = _token_counts(out)
    return Words(out, symbols, symbol_chars, no_alpha, sum(map(len, out)))


def split_words(text: str) -> list:
    """Words and symbol tokens of ``text``, in order (see the module docstring).

    >>> split_words("Hello, world... 3.14 是中文 don't (x).")
    ['Hello', ',', 'world', '...', '3.14', '是', '中', '文', 'do', "n't", '(', 'x', ')', '.']
    """
    return analyse_words(text).words


def has_no_space_script(text: str) -> bool:
    """True when ``text`` holds a character of a script written without spaces."""
    if FAST is not None:
        return FAST.has_no_space_script(text)
    return not text.isascii() and _NO_SPACE_RE.search(text) is not None


def has_no_space_script_py(text: str) -> bool:
    """``has_no_space_script`` in pure Python (the reference)."""
    return not text.isascii() and _NO_SPACE_RE.search(text) is not None


def is_symbol(token: str) -> bool:
    """True when every character of ``token`` is in ``PUNCTUATION_SET`` (datatrove's rule)."""
    return all(ch in PUNCTUATION_SET for ch in token)
