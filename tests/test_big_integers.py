"""Integers beyond 64 bits stay exact on every path that parses or writes a value.

orjson reads such an integer as a float and refuses to write one; JSON has no
size limit.  The kind of fault: a value parsed by orjson reaching an output
(partition names, merged metadata, records read back, records written,
manifests and reports).  ``transforms.core.exact_json`` is the one place that
handles it; these tests pin every path.
"""
import json

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import prepare_corpus
from transforms.core import exact_json
from transforms.core.partition_names import MAX_NAME_CHARS, decode_name, encode_value
from transforms.processing.line_edits import set_metadata
from transforms.reduction.record_dedup import key_record
from transforms.storage.store import ReadStore, load_manifest, verify_store
from transforms.storage.write_records import record_line

BIG = 10 ** 20  # beyond uint64 (orjson: 1e+20)

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_round_trip_is_exact_for_every_json_value(value):
    written = exact_json.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert exact_json.loads(written) == value
    assert json.loads(written) == value  # the standard library reads the same value
    try:
        expected = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits: orjson refuses, the round trip holds
        pass
    else:
        assert written == expected  # otherwise exactly orjson's bytes


def _typed(value):
    """``value`` with every number tagged by its type (``10**20 == 1e20`` in Python)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


_numbers = (st.integers() | st.integers(min_value=-(1 << 200), max_value=1 << 200)
            | st.sampled_from([(1 << 63) - 1, 1 << 63, (1 << 64) - 1, 1 << 64, -(1 << 63),
                               -(1 << 63) - 1, float(1 << 63), -float(1 << 63), 1e20, -1e300])
            | st.floats(allow_nan=False, allow_infinity=False))
_number_docs = st.recursive(
    _numbers | st.text(alphabet="0123456789 ab", max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_number_docs, st.booleans())
def test_loads_reads_every_number_as_the_standard_library_does(value, as_str):
    """Type and value: an integer stays an int of the same value however long, a float
    (even 1e20, integral and beyond int64) stays a float; digit runs inside strings
    change nothing."""
    text = json.dumps(value)
    parsed = exact_json.loads(text if as_str else text.encode())
    assert _typed(parsed) == _typed(json.loads(text)) == _typed(value)


_broken = st.builds(
    lambda doc, at, bit, cut: (lambda b: (b[:at % (len(b) + 1)]
                                         + bytes([b[at % len(b)] ^ (1 << bit)])
                                         + b[at % len(b) + 1:])[:cut])(json.dumps(doc).encode()),
    _number_docs, st.integers(0, 10 ** 6), st.integers(0, 7), st.integers(0, 400))


@settings(max_examples=600, deadline=None)
@given(st.one_of(_broken, st.binary(max_size=60)))
def test_loads_raises_orjsons_error_for_anything_not_json(data):
    """Whatever the bytes (a flipped bit, a cut, deep nesting, not UTF-8), loads returns
    the standard library's value or raises ``orjson.JSONDecodeError``, as orjson.loads
    does (callers catch that): never another exception type from the fallback parser."""
    try:
        value = exact_json.loads(data)
    except orjson.JSONDecodeError:
        return
    assert _typed(value) == _typed(json.loads(data))


@pytest.mark.parametrize("depth", [0, 1, 500, 900, 990, 1000, 1023, 1024, 1025, 3000])
@pytest.mark.parametrize("leaf", [b"12345678901234567890123", b"1", b"1e400", b"1e20"])
def test_loads_of_deep_nesting_returns_the_leaf_or_orjsons_error(depth, leaf):
    data = b"[" * depth + leaf + b"]" * depth
    try:
        value = exact_json.loads(data)
    except orjson.JSONDecodeError:
        assert leaf == b"1e400" or depth >= 990   # beyond a double; too deep for a parser
        return
    for _ in range(depth):
        assert type(value) is list and len(value) == 1
        value = value[0]
    assert _typed(value) == _typed(json.loads(leaf))


@pytest.mark.parametrize("text", [b"1e400", b"[-1e400]", b'{"a": 1' + b"0" * 400 + b'.5}'])
def test_loads_refuses_floats_beyond_a_double(text):
    with pytest.raises(ValueError):
        exact_json.loads(text)


@pytest.mark.parametrize("text", [b"NaN", b'{"a": Infinity}', b'{"a": -Infinity}',
                                  b'{"a": 1234567890123456789012, "b": NaN}', b"{", b""])
def test_loads_refuses_what_is_not_json(text):
    with pytest.raises(ValueError):
        exact_json.loads(text)


def test_indented_fallback_has_orjsons_layout():
    value = {"b": [1, {"c": None}], "a": "x"}
    big = {**value, "n": BIG}
    option = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
    layout = exact_json.dumps(big, option=option).replace(b',\n  "n": 100000000000000000000', b"")
    assert layout == orjson.dumps(value, option=option)


@settings(max_examples=200, deadline=None)
@given(st.integers() | st.lists(st.integers(), max_size=3))
def test_partition_names_round_trip_any_integer(value):
    name = encode_value(value)
    if len(name) < MAX_NAME_CHARS:  # longer names end in a hash: the manifest has the value
        assert decode_name(name) == value


def test_metadata_merge_keeps_big_integers():
    line = b'{"id":1,"metadata":{"n":100000000000000000001,"lang":"xx"},"text":"t"}'
    edited = set_metadata(line, {"lang": "en", "lang_score": 0.5})
    assert json.loads(edited) == {"id": 1, "text": "t", "metadata": {
        "n": BIG + 1, "lang": "en", "lang_score": 0.5}}


def test_record_adapters_keep_big_integers():
    record = {"id": BIG * 3, "text": "a b", "count": -BIG}
    keyed = key_record(record)
    assert keyed.id == str(BIG * 3)
    assert keyed.record == record
    line = record_line(record).payload
    assert json.loads(line) == record


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_job_partitions_and_stores_big_integers_exactly(tmp_path, run_config, make_pipeline):
    rows = [{"id": BIG * 10 + i, "text": f"document {i} about topic {i * 7} here",
             "n": BIG + i % 2, "metadata": {"lang": "xx", "big": -(2 ** 70) - i}}
            for i in range(8)]
    source = _write(tmp_path / "in.jsonl", rows)
    root = tmp_path / "a"
    prepare_corpus.run(["--run_config", run_config, "--input", source,
                        "--output_roots", str(root), "--replication", "1",
                        "--partition_by", "n", "--record_language"])
    store = str(root / "corpus")
    manifest = load_manifest(store)
    values = sorted(p["value"] for p in manifest["partitions"].values()) \
        if isinstance(manifest.get("partitions"), dict) else None
    names = {s["partition"] for s in manifest["shards"]}
    assert {decode_name(name) for name in names} == {BIG, BIG + 1}
    if values is not None:
        assert values == [BIG, BIG + 1]
    checked = verify_store(store)
    assert checked and {row["status"] for row in checked} == {"ok"}
    with make_pipeline() as p:
        got = p | ReadStore(store)
        expected = [{**r, "metadata": {"big": r["metadata"]["big"]}} for r in rows]
        assert_that(got | "Strip" >> beam.Map(_without_language),
                    equal_to(expected))


def _without_language(record):
    meta = {k: v for k, v in record["metadata"].items() if k not in ("lang", "lang_score")}
    return {**record, "metadata": meta}
