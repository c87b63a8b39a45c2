import os
import subprocess
import sys

import xxhash
from hypothesis import given, strategies as st

from transforms.core.hashing import (checksum, normalise_for_hash, shard_of, stable_hash64, text_key,
                                text_keys)


def test_normalise_nfc_casefold_whitespace():
    assert normalise_for_hash("Cafe\u0301  au\tLAIT\n") == "café au lait"
    assert normalise_for_hash("Straße") == "strasse"
    assert normalise_for_hash("  \n\t ") == ""


def test_text_key_equal_for_equivalent_texts_and_distinct_otherwise():
    assert text_key("Hello   World") == text_key("hello world") == text_key(" HELLO\nworld ")
    assert text_key("caf\u00e9") == text_key("cafe\u0301")
    assert text_key("hello world") != text_key("hello  worlds")
    assert len(text_key("x")) == 16


# Every kind of whitespace str.split() knows, letters that NFC or case-folding change.
_TRICKY = st.lists(st.sampled_from(
    [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2028",
     "\u3000", "\u200b", "a", "Z", "\u00e9", "e\u0301", "\u00df", "\u0130", "\ud800", "\U0001f600"]),
    max_size=12).map("".join)


@given(st.lists(st.one_of(_TRICKY, st.text()), max_size=30))
def test_batched_text_keys_equal_text_key(texts):
    assert text_keys(texts) == [text_key(t) for t in texts]


def test_stable_hash_is_xxh3_and_checksum_is_xxh3_128():
    assert stable_hash64("abc") == xxhash.xxh3_64_intdigest(b"abc")
    assert stable_hash64(b"abc", seed=7) == xxhash.xxh3_64_intdigest(b"abc", seed=7)
    assert checksum(b"data") == xxhash.xxh3_128_hexdigest(b"data")


@given(st.text(), st.integers(min_value=1, max_value=10_000))
def test_shard_of_in_range_and_repeatable(record_id, n):
    shard = shard_of(record_id, n)
    assert 0 <= shard < n
    assert shard == shard_of(record_id, n)


def test_shard_of_balanced():
    n, ids = 16, 64_000
    counts = [0] * n
    for i in range(ids):
        counts[shard_of(f"doc-{i}", n)] += 1
    expected = ids / n
    # 5 standard deviations of a binomial count: fails by chance ~never.
    assert max(abs(c - expected) for c in counts) < 5 * (expected * (1 - 1 / n)) ** 0.5


def test_shard_of_same_in_processes_with_different_hash_seeds():
    code = ("from transforms.core.hashing import shard_of, text_key;"
            "print([shard_of(f'id-{i}', 97) for i in range(50)], text_key('Ab c').hex())")
    outputs = set()
    for seed in ("1", "2", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout
        outputs.add(out)
    assert len(outputs) == 1


def test_wide_space_class_is_exactly_the_non_ascii_isspace_code_points():
    """``_WIDE_SPACE`` (written as ``[^\\S\\x00-\\x7f]``) matches exactly the code
    points above ASCII that str.isspace() (so str.split()) treats as space."""
    from transforms.core.hashing import _WIDE_SPACE
    wanted = [c for c in range(128, 0x110000) if chr(c).isspace()]
    text = "".join(map(chr, range(0, 0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    assert [ord(m.group()) for m in _WIDE_SPACE.finditer(text)] == wanted
    assert len(wanted) == 19   # U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028/9, ...


# ----------------------------------------------------------- the compiled byte pass

def test_the_compiled_text_key_pass_is_built_and_used():
    """pip install builds transforms/core/_fastcore.c; text_keys takes it."""
    from transforms.core import _fastcore, hashing
    assert hashing._FAST is _fastcore


@given(st.lists(st.one_of(_TRICKY, st.text(), st.text(alphabet=" \t\nAbZz.\x1c\x1f", max_size=20)),
                max_size=30))
def test_compiled_and_numpy_text_keys_equal_text_key(texts):
    from transforms.core import hashing
    expected = [text_key(t) for t in texts]
    assert hashing._text_keys_numpy(texts) == expected
    assert text_keys(texts) == expected


@given(st.lists(st.one_of(st.binary(max_size=40),
                          st.text(alphabet=st.characters(max_codepoint=127), max_size=40)),
                max_size=20),
       st.binary(min_size=256, max_size=256))
def test_fold_spaces_maps_then_collapses_spaces(parts, table):
    """fold_spaces == translate by the table, split on b" ", join the non-empty words."""
    from transforms.core import _fastcore
    as_bytes = [p.encode() if isinstance(p, str) else p for p in parts]
    expected = [b" ".join(w for w in p.translate(table).split(b" ") if w) for p in as_bytes]
    assert _fastcore.fold_spaces(parts, table) == expected


def test_fold_spaces_refuses_what_it_cannot_read():
    import pytest
    from transforms.core import _fastcore
    with pytest.raises(TypeError, match="part 1 is str"):
        _fastcore.fold_spaces([b"a", "caf\u00e9"], bytes(256))
    with pytest.raises(TypeError, match="part 0 is int"):
        _fastcore.fold_spaces([3], bytes(256))
    with pytest.raises(ValueError, match="256 bytes"):
        _fastcore.fold_spaces([b"a"], b"short")
