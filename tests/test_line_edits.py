"""Byte-exact record edits of the filter stage (redaction, language metadata)."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.processing.line_edits import EditError, replace_field, set_metadata, value_span


def test_replace_field_keeps_every_other_byte():
    line = b'{"id": 12345678901234567890123, "x": {"text": "inner"},  "text" : "a@b.org x", "z":[1]}'
    assert replace_field(line, "text", "<EMAIL> x") == \
        b'{"id": 12345678901234567890123, "x": {"text": "inner"},  "text" : "<EMAIL> x", "z":[1]}'
    with pytest.raises(EditError, match="no top-level field 'body'"):
        replace_field(line, "body", "x")


@pytest.mark.parametrize("line, expected", [
    (b'{"id":1}', b'{"id":1,"metadata":{"lang":"en","lang_score":0.5}}'),
    (b'{}', b'{"metadata":{"lang":"en","lang_score":0.5}}'),
    (b'{"id":1,"metadata":null,"t":"x"}', b'{"id":1,"metadata":{"lang":"en","lang_score":0.5},"t":"x"}'),
    (b'{"metadata": {"a": [1, {"b": 2}]}, "t": 1}',
     b'{"metadata": {"a": [1, {"b": 2}],"lang":"en","lang_score":0.5}, "t": 1}'),
    (b'{"metadata":{ },"t":1}', b'{"metadata":{"lang":"en","lang_score":0.5},"t":1}'),
    (b'{"metadata":{"lang":"xx","a":1}}', b'{"metadata":{"a":1,"lang":"en","lang_score":0.5}}'),
])
def test_set_metadata(line, expected):
    assert set_metadata(line, {"lang": "en", "lang_score": 0.5}) == expected


def test_set_metadata_refuses_to_merge_metadata_it_cannot_parse():
    """A key to set may be inside metadata that is not JSON: refused, never duplicated;
    metadata without the key gets it appended, its bytes kept."""
    with pytest.raises(EditError, match="'metadata' is not valid JSON .* the keys \\['lang'\\]"):
        set_metadata(b'{"id":1,"metadata":{"lang":NaN}}', {"lang": "en"})
    assert set_metadata(b'{"id":1,"metadata":{"x":NaN}}', {"lang": "en"}) == \
        b'{"id":1,"metadata":{"x":NaN,"lang":"en"}}'


def test_set_metadata_refuses_a_non_object():
    with pytest.raises(EditError, match="'metadata' is not an object"):
        set_metadata(b'{"metadata": "web"}', {"lang": "en"})


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _json, max_size=5), st.text(max_size=20),
       st.sampled_from([(",", ":"), (", ", ": ")]))
def test_edits_agree_with_a_json_parser(record, value, separators):
    """Whatever the record, the edit changes exactly the field (parsed back)."""
    record = {k: v for k, v in record.items() if k not in ("text", "metadata")}
    record["text"] = "old"
    line = json.dumps(record, separators=separators, ensure_ascii=False).encode()
    span = value_span(line, "text")
    assert line[span[0]:span[1]] == b'"old"'
    edited = replace_field(line, "text", value)
    # the standard library reads integers of any size exactly (orjson: floats past 64 bits)
    assert json.loads(edited) == {**record, "text": value}
    with_meta = set_metadata(edited, {"lang": "en", "lang_score": 0.25})
    assert json.loads(with_meta) == {**record, "text": value,
                                       "metadata": {"lang": "en", "lang_score": 0.25}}
