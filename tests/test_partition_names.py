"""Partition values become folder names that are safe, confined, bounded and injective."""
import os
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.partition_names import (
    EMPTY, MAX_NAME_CHARS, MISSING, NotReversible, decode_name, encode_value, is_safe_name)

HOSTILE = [
    "../../x", "..", ".", "/etc/passwd", "/", "\\\\server\\share", "C:\\Windows", "a/../../b",
    "a\x00b", "\x00", "x" * 10_000, "Zh", "zh", "ZH", "\u00e9", "e\u0301", "CON", "con", "nul.txt",
    "com1", "lpt9.log", " ", "a ", "-rf", ".hidden", "trailing.", "a..b", "_missing", "_other",
    "_empty", "_j1", "_h0", "%2e%2e", "\u202e", "\n", "\ud800", "\U0001F600", "a:b", "a*b?c",
]


def confined(root, name):
    path = os.path.realpath(os.path.join(root, name))
    return os.path.dirname(path) == os.path.realpath(root)


def assert_safe(name, root="/tmp/store-root"):
    assert is_safe_name(name), name
    assert len(name) <= MAX_NAME_CHARS
    assert name not in (".", "..") and ".." not in name
    assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789._-" for c in name), name
    assert name == name.lower()
    assert confined(root, name)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_become_safe_confined_names(value):
    assert_safe(encode_value(value))


def test_hostile_values_get_distinct_names():
    names = [encode_value(v) for v in HOSTILE]
    assert len(set(names)) == len(HOSTILE)


def test_case_and_normalisation_variants_stay_apart_even_case_folded():
    variants = ["Zh", "zh", "ZH", "zH", unicodedata.normalize("NFC", "caf\u00e9"),
                unicodedata.normalize("NFD", "caf\u00e9")]
    names = [encode_value(v) for v in variants]
    # Distinct even on a case-insensitive, normalising file system.
    folded = {unicodedata.normalize("NFC", n).casefold() for n in names}
    assert len(folded) == len(variants)


def test_readable_values_stay_readable_and_round_trip():
    for value, name in [("zh", "zh"), ("en-us", "en-us"), ("v1.2", "v1.2"), ("web", "web"),
                        ("Zh", "_5ah"), ("", EMPTY), (None, MISSING), (1, "_j1"),
                        ("1", "1"), (True, "_jtrue"), ("../../x", "_2e_2e_2f_2e_2e_2fx"),
                        ("con", "_63on")]:
        assert encode_value(value) == name
        assert decode_name(name) == value


def test_long_values_are_bounded_hashed_and_distinct():
    a, b = "x" * 10_000, "x" * 9_999 + "y"
    na, nb = encode_value(a), encode_value(b)
    assert na != nb and len(na) == len(nb) <= MAX_NAME_CHARS
    assert na.startswith("xxxx") and "_h" in na
    with pytest.raises(NotReversible):
        decode_name(na)
    long_escaped = "\u00e9" * 500  # the cut must not split an _xx escape
    name = encode_value(long_escaped)
    assert_safe(name)
    assert name.split("_h")[0].endswith("_a9")


def test_decode_rejects_names_the_encoder_cannot_produce():
    for bad in ["_zz", "a_", "_4", "_xyz"]:
        with pytest.raises(ValueError):
            decode_name(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_any_unicode_string_is_safe_confined_and_round_trips(text):
    name = encode_value(text)
    assert_safe(name)
    try:
        assert decode_name(name) == text
    except NotReversible:
        assert len(name) == MAX_NAME_CHARS or "_h" in name


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_distinct_strings_never_share_a_name(a, b):
    if a != b:
        assert encode_value(a) != encode_value(b)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_distinct_json_values_never_share_a_name(a, b):
    na, nb = encode_value(a), encode_value(b)
    assert_safe(na)
    if na == nb:
        assert canonical(a) == canonical(b)


def canonical(value):
    from transforms.core.partition_names import canonical_json
    return None if value is None else (value if isinstance(value, str) else canonical_json(value))
