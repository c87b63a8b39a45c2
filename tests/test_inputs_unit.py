"""Reading inputs exactly (issue 12), without Beam: decoders' end of stream, errors
naming the file, paths, the id splice, the id order, one JSON meaning, bounds."""
import bz2
import gzip
import io
import json
import lzma
import os

import lz4.frame
import numpy as np
import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.processing import io as tio
from transforms.reduction.dedup import winners
from transforms.processing.refs import DocRef, shard_doc_order
from transforms.processing.components import large_star, orient, small_star
from transforms.core.ids import id_order_key, id_sort_keys, smallest_id
from transforms.processing.io import (BadRecord, InputError, LongLine, NoInputFiles, ZstdFrameCheck, expand_patterns,
                           iter_lines, open_text_stream, parse_line, parsed_lines, probe_inputs)
from transforms.processing.npy import NpyError, inspect_npy, match_inputs
from transforms.storage.store import pack_text_shard

COMPRESSORS = {
    "gz": gzip.compress,
    "zst": lambda b: zstandard.ZstdCompressor().compress(b),
    "zst-checksum": lambda b: zstandard.ZstdCompressor(write_checksum=True).compress(b),
    "lz4": lz4.frame.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
}
SUFFIX = {"gz": ".gz", "zst": ".zst", "zst-checksum": ".zst", "lz4": ".lz4", "bz2": ".bz2",
          "xz": ".xz"}


def read_all(path) -> bytes:
    with open_text_stream(str(path)) as stream:
        return b"".join(iter(lambda: stream.read(7), b""))


# ---------------------------------------------------------------- 1. truncation

json_records = st.lists(
    st.fixed_dictionaries({"id": st.integers(), "text": st.text(max_size=40)}),
    min_size=1, max_size=30)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=json_records, codec=st.sampled_from(sorted(COMPRESSORS)),
       cut=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_truncated_compressed_input_is_read_whole_or_fails_naming_the_file(
        tmp_path, records, codec, cut):
    """Property: a JSON Lines file compressed any supported way, then cut at any
    byte, is never read as a shorter file: the read fails naming the file."""
    payload = "".join(json.dumps(r) + "\n" for r in records).encode()
    packed = COMPRESSORS[codec](payload)
    path = tmp_path / f"cut.jsonl{SUFFIX[codec]}"
    path.write_bytes(packed)
    assert read_all(path) == payload
    path.write_bytes(packed[:int(cut * len(packed))])
    with pytest.raises(InputError) as err:
        read_all(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_every_cut_of_a_small_file_fails(tmp_path, codec):
    payload = b"".join(b'{"id": %d, "text": "t %d"}\n' % (i, i) for i in range(50))
    packed = COMPRESSORS[codec](payload)
    path = tmp_path / f"x.jsonl{SUFFIX[codec]}"
    for cut in range(len(packed)):
        path.write_bytes(packed[:cut])
        with pytest.raises(InputError, match=str(path)):
            read_all(path)


def test_two_zstd_frames_cut_inside_the_second_fails(tmp_path):
    cctx = zstandard.ZstdCompressor()
    frame1 = cctx.compress(b'{"id": 1, "text": "a"}\n' * 300)
    frame2 = cctx.compress(b'{"id": 2, "text": "b"}\n' * 300)
    path = tmp_path / "two.jsonl.zst"
    path.write_bytes(frame1 + frame2)
    assert read_all(path).count(b"\n") == 600
    path.write_bytes(frame1 + frame2[:len(frame2) // 2])
    with pytest.raises(InputError, match=r"two\.jsonl\.zst: the zstd stream ends inside frame 2"):
        read_all(path)


def test_zstd_streamed_frames_without_content_size_and_skippable_frames(tmp_path):
    payload = b'{"id": 1, "text": "streamed"}\n' * 5000
    out = io.BytesIO()
    with zstandard.ZstdCompressor(write_content_size=False).stream_writer(
            out, closefd=False) as writer:
        for i in range(0, len(payload), 1000):
            writer.write(payload[i:i + 1000])
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    path = tmp_path / "s.jsonl.zst"
    path.write_bytes(skippable + out.getvalue() + skippable)
    assert read_all(path) == payload
    path.write_bytes(skippable[:6])
    with pytest.raises(InputError, match="ends inside frame 1"):
        read_all(path)


def test_zstd_frame_check_rejects_garbage_after_a_frame():
    check = ZstdFrameCheck()
    with pytest.raises(ValueError, match="no zstd frame starts at compressed byte 12"):
        check.feed(zstandard.ZstdCompressor().compress(b"abc") + b"junk")


def test_plain_jsonl_and_empty_compressed_files(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b"")
    assert read_all(tmp_path / "a.jsonl") == b""
    (tmp_path / "a.jsonl.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"a\.jsonl\.gz: is empty \(0 bytes\), not a gzip"):
        read_all(tmp_path / "a.jsonl.gz")


# ---------------------------------------------------------------- 2. errors name the file

def test_corrupt_stream_error_names_file_and_line(tmp_path):
    payload = b"".join(b'{"id": %d, "text": "line %d"}\n' % (i, i) for i in range(200000))
    packed = bytearray(gzip.compress(payload))
    packed[len(packed) // 2] ^= 0xFF
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(bytes(packed))
    tally = dict.fromkeys(("lines", "blank_lines", "records", "bytes"), 0)
    with pytest.raises(InputError) as err:
        list(parsed_lines(str(path), "id", "text", tally))
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read gzip data")
    assert err.value.line == tally["lines"] + 1 and f"at line {err.value.line}" in message
    assert "\n" not in message


def test_npy_shorter_than_its_header_is_refused_at_plan_time(tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, np.arange(64, dtype=np.float32).reshape(16, 4))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(NpyError, match=r"short\.npy is truncated: its header declares shape "
                                       r"\(16, 4\) of <f4 \(384 bytes"):
        inspect_npy(str(path))


def test_npy_header_claiming_a_huge_shape_is_refused(tmp_path):
    path = tmp_path / "huge.npy"
    header = {"descr": "<f4", "fortran_order": False, "shape": (2 ** 50, 16)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 256)
    with pytest.raises(NpyError, match=r"huge\.npy is truncated: .*shape \(1125899906842624, 16\)"):
        inspect_npy(str(path))


# ---------------------------------------------------------------- 3. paths

def test_an_existing_literal_path_wins_over_glob_characters(tmp_path):
    (tmp_path / "data [v1].jsonl").write_bytes(b"")
    (tmp_path / "data v.jsonl").write_bytes(b"")
    assert expand_patterns(str(tmp_path / "data [v1].jsonl")) == [
        str(tmp_path / "data [v1].jsonl")]
    assert expand_patterns(str(tmp_path / "data [v]*.jsonl")) == [str(tmp_path / "data v.jsonl")]


def test_bare_relative_glob(tmp_path, monkeypatch):
    for name in ("b.jsonl", "a.jsonl", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    # from the working directory, named absolutely: workers that run in another folder
    # (a cluster's worker pool) read the same files, and the lineage says which
    absolute = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    assert expand_patterns("*.jsonl") == absolute
    assert expand_patterns("./*.jsonl") == absolute
    assert expand_patterns("a.jsonl,./a.jsonl,b.jsonl") == absolute


def test_a_directory_means_its_recognised_files_recursively(tmp_path):
    data = tmp_path / "data"
    (data / "sub" / "deeper").mkdir(parents=True)
    (data / ".hidden").mkdir()
    files = ["a.jsonl", "b.jsonl.gz", "sub/c.jsonl.zst", "sub/deeper/d.ndjson.lz4",
             "e.JSONL.xz"]
    for name in files + ["README", "notes.txt", "sub/x.json", ".hidden/h.jsonl", ".e.jsonl"]:
        (data / name).write_bytes(b"")
    expected = sorted(str(data / n) for n in files)
    assert expand_patterns(str(data)) == expected
    assert expand_patterns(str(data) + "/") == sorted(str(data) + "/" + n for n in files)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "README").write_bytes(b"")
    with pytest.raises(NoInputFiles, match=r"empty: is a directory with no file ending in "
                                         r"\.jsonl/\.jsonl\.gz/"):
        expand_patterns(str(tmp_path / "empty"))


def test_npy_inputs_use_the_same_path_rules(tmp_path):
    (tmp_path / "arr [1].npy").write_bytes(b"")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.npy").write_bytes(b"")
    (tmp_path / "d" / "README").write_bytes(b"")
    assert match_inputs(str(tmp_path / "arr [1].npy")) == [str(tmp_path / "arr [1].npy")]
    assert match_inputs(str(tmp_path / "d")) == [str(tmp_path / "d" / "x.npy")]
    with pytest.raises(NoInputFiles, match="matches no file"):
        match_inputs(str(tmp_path / "nothing*.npy"))


# ---------------------------------------------------------------- 4. re-encoding

def test_a_missing_id_is_spliced_in_and_every_other_byte_kept():
    line = b'{"text": "x", "big": 123456789012345678901234567890, "f": 1.10, "u": "\\u00e9"} '
    doc_id, text, stored = parse_line(line, "id", "text", "f.jsonl:3")
    assert doc_id == "f.jsonl:3" and text == "x"
    assert stored == line.strip()[:-1] + b',"id":"f.jsonl:3"}'
    assert b"123456789012345678901234567890" in stored and b"1.10" in stored
    assert orjson.loads(stored)["id"] == "f.jsonl:3"


@pytest.mark.parametrize("line, stored", [
    (b'{"id": null, "text": "x"}', b'{"id": "f:1", "text": "x"}'),
    (b'{"m": {"id": 1}, "text": "{\\"id\\": null, [", "id" :\tnull }',
     b'{"m": {"id": 1}, "text": "{\\"id\\": null, [", "id" :\t"f:1" }'),
    (b'{"text": "x", "\\u0069d": null, "a": [null, {"id": null}]}',
     b'{"text": "x", "\\u0069d": "f:1", "a": [null, {"id": null}]}'),
])
def test_a_null_id_is_replaced_in_place(line, stored):
    doc_id, _, got = parse_line(line, "id", "text", "f:1")
    assert (doc_id, got) == ("f:1", stored)


@pytest.mark.parametrize("literal", [b"18446744073709551616", b"-9223372036854775809",
                                     b"123456789012345678901234567890"])
def test_integer_ids_of_any_size_are_exact(literal):
    line = b'{"id": ' + literal + b', "text": "x"}'
    assert parse_line(line, "id", "text", "f:1") == (literal.decode(), "x", line)


@pytest.mark.parametrize("line, reason", [
    (b'{"id": 1.5, "text": "x"}', "bad_id"),
    (b'{"id": 1e30, "text": "x"}', "bad_id"),
    (b'{"id": [1], "text": "x"}', "bad_id"),
])
def test_ids_that_are_not_integers_or_strings(line, reason):
    with pytest.raises(BadRecord) as err:
        parse_line(line, "id", "text", "f:1")
    assert err.value.reason == reason


# ---------------------------------------------------------------- 5. id order

def test_id_order_integers_numerically_then_strings():
    ids = ["abc", "102", "2", "-3", "10a", "007", "0", "18446744073709551616", "-100", "B"]
    assert sorted(ids, key=id_order_key) == [
        "-100", "-3", "0", "2", "102", "18446744073709551616", "007", "10a", "B", "abc"]
    assert smallest_id(["102", "2", "20"]) == "2"


@given(st.lists(st.integers(min_value=-10 ** 30, max_value=10 ** 30), min_size=1, unique=True))
def test_id_order_matches_integer_order(values):
    assert sorted(map(str, values), key=id_order_key) == list(map(str, sorted(values)))


@given(st.lists(st.one_of(st.integers().map(str), st.text(max_size=6)), min_size=2,
                max_size=8, unique=True))
def test_id_order_is_total(ids):
    keys = [id_order_key(i) for i in ids]
    assert len(set(keys)) == len(ids)


_sort_ids = st.one_of(
    st.integers(-10 ** 30, 10 ** 30).map(str),                       # canonical integers
    st.sampled_from(["0", "-0", "007", "00", "", "-", "1,2", ",", "1e3", "+4", " 5",
                     "\uff11", "1_000", "9" * 4400, "-" + "9" * 4400]),  # near-integers
    st.text(alphabet="0123456789,-", max_size=5), st.text(max_size=4))


@given(st.lists(_sort_ids, max_size=25))
def test_id_sort_keys_sort_as_the_id_order(ids):
    """One call's keys order the ids as ``id_order_key`` does, whatever the ids: all
    canonical integers (int keys), none (the strings) or any mix (the tuples); ties
    only for equal ids."""
    keys = id_sort_keys(ids)
    assert len(keys) == len(ids)
    assert [ids[i] for i in sorted(range(len(ids)), key=keys.__getitem__)] == \
        sorted(ids, key=id_order_key)
    for i in range(len(ids)):
        for j in range(len(ids)):
            assert (keys[i] < keys[j]) == (id_order_key(ids[i]) < id_order_key(ids[j]))


def test_id_sort_keys_kinds():
    assert id_sort_keys(["10", "-3", "0", "2"]) == [10, -3, 0, 2]
    for odd in ("-0", "007", "1,2", "", "\uff11", "9" * 4400, "a"):   # any of them: the tuples
        assert id_sort_keys(["10", odd]) == [id_order_key("10"), id_order_key(odd)]
    assert id_sort_keys(["doc-2", "b", "007", "-0", "", "1a"]) == ["doc-2", "b", "007", "-0", "", "1a"]
    assert id_sort_keys(["a,1", "b"]) == [id_order_key("a,1"), id_order_key("b")]   # looks like 1
    assert id_sort_keys([]) == []
    assert id_sort_keys([7, 3]) == [id_order_key(7), id_order_key(3)]   # ints given directly


def test_every_smallest_id_decision_uses_the_id_order():
    refs = [DocRef(doc_id, b"k" * 16, 0, line, 10, False, False, b"", b"")
            for line, doc_id in enumerate(("102", "2", "30"), 1)]
    best, seen = winners(refs)
    assert best[b"k" * 16].id == "2" and seen == 3
    assert sorted([("102", b"c"), ("2", b"a"), ("10", b"b")], key=shard_doc_order) == [
        ("2", b"a"), ("10", b"b"), ("102", b"c")]
    assert sorted([(1, "102", b"c"), (1, "2", b"a"), (0, "x", b"d")], key=shard_doc_order) == [
        (0, "x", b"d"), (1, "2", b"a"), (1, "102", b"c")]
    assert orient(("102", "2")) == [("102", "2")] and orient(("2", "102")) == [("102", "2")]
    assert large_star("9", ["102", "2", "30"]) == [("30", "2"), ("102", "2")]
    assert small_star("102", ["9", "30"]) == [("30", "9"), ("102", "9")]
    assert pack_text_shard([("102", b"c"), ("2", b"a"), ("x", b"d"), ("10", b"b")]) == \
        b"a\nb\nc\nd\n"


# ---------------------------------------------------------------- 6. one JSON meaning

@pytest.mark.parametrize("line", [
    b'{"lang": "en", "\\u006cang": "zh", "text": "x"}',
    b'{"lang": "en", "lang": "zh", "text": "x"}',
    b'{"text": "a", "text": "b"}',
    b'{"n": 123456789012345678901234567890, "lang": 1, "lang": 2, "text": "x"}',
])
def test_a_repeated_key_is_a_dead_letter(line):
    with pytest.raises(BadRecord) as err:
        parse_line(line, "id", "text", "f:1")
    assert err.value.reason == "duplicate_key"


def test_repeated_keys_inside_values_are_not_top_level_repeats():
    line = b'{"a": {"k": 1}, "b": {"k": 2}, "text": "t \\"lang\\": x", "id": 3}'
    assert parse_line(line, "id", "text", "f:1") == ("3", 't "lang": x', line)


# ---------------------------------------------------------------- 7. wrong kinds

def _write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def test_probe_refuses_wrong_kinds_of_input(tmp_path):
    ok = _write(tmp_path / "ok.jsonl", b'{"id": 1, "text": "x", "url": "u"}\n')
    cases = {
        "a.jsonl": (b"PAR1\x15\x04" + b"\0" * 20, r"a\.jsonl: is a Parquet file, not JSON Lines"),
        "b.jsonl": (b"id,text,url\n1,hello,http://x\n", r"b\.jsonl: looks like CSV/TSV"),
        "c.jsonl": (b'[{"id": 1, "text": "x"},\n {"id": 2, "text": "y"}]\n',
                    r"c\.jsonl: holds a JSON array, not JSON Lines"),
        "d.jsonl": (gzip.compress(b'{"text": "x"}\n'),
                    r"d\.jsonl: is gzip-compressed but its name does not say so"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(InputError, match=message):
            probe_inputs([ok, _write(tmp_path / name, data)], "text")
    assert probe_inputs([ok], "text") == {"files": 1, "records": 1,
                                          "fields": ["id", "text", "url"]}


def test_probe_refuses_a_text_field_no_record_has(tmp_path):
    path = _write(tmp_path / "x.jsonl", b'{"id": 1, "text": "x", "url": "u"}\n{"id": 2}\n')
    with pytest.raises(ValueError, match=r"^no record has field 'body'; fields seen: id, text, "
                                         r"url \("):
        probe_inputs([path], "body")


def test_probe_refuses_a_non_numeric_range_field_naming_values(tmp_path):
    path = _write(tmp_path / "x.jsonl", b'{"text": "a", "source": "web"}\n'
                                        b'{"text": "b", "source": "books"}\n'
                                        b'{"text": "c", "source": null, "n": 1}\n')
    with pytest.raises(ValueError, match=r"--range_by source: the field holds non-numeric "
                                         r"values \('web', 'books'\)"):
        probe_inputs([path], "text", "source")
    assert probe_inputs([path], "text", "n")["records"] == 3


# ---------------------------------------------------------------- 8. bounded lines

def test_long_lines_are_skipped_without_being_held(monkeypatch):
    monkeypatch.setattr(tio, "_CHUNK", 5)
    data = b"ok\n" + b"x" * 53 + b"\nshort\n" + b"y" * 40
    lines = list(iter_lines(io.BytesIO(data), max_line_bytes=12))
    assert lines[0] == b"ok" and lines[2] == b"short"
    assert isinstance(lines[1], LongLine) and lines[1].size == 53
    assert lines[1].head.startswith(b"xxxx") and len(lines[1].head) <= 53
    assert isinstance(lines[3], LongLine) and lines[3].size == 40


@pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
def test_line_too_long_is_a_dead_letter(tmp_path, suffix):
    payload = b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "' + b"z" * 5000 + b'"}\n'
    payload += b'{"id": 3, "text": "fine"}\n'
    packed = {"": bytes, ".gz": gzip.compress,
              ".zst": zstandard.ZstdCompressor().compress}[suffix](payload)
    path = tmp_path / f"l.jsonl{suffix}"
    path.write_bytes(packed)
    tally = dict.fromkeys(("lines", "blank_lines", "records", "bytes"), 0)
    out = list(parsed_lines(str(path), "id", "text", tally, max_line_bytes=1000))
    assert [(n, d if isinstance(d, tuple) else d.reason) for n, _, d in out] == [
        (1, ("1", "ok", b'{"id": 1, "text": "ok"}')), (2, "line_too_long"),
        (3, ("3", "fine", b'{"id": 3, "text": "fine"}'))]
    assert out[1][2].size == 5021 and tally["bytes"] == len(payload)


# ---------------------------------------------------------------- 9. empty text

@pytest.mark.parametrize("text", ["", " ", "\n\t ", "\u3000"])
def test_empty_text_is_removed_unless_kept(text):
    line = orjson.dumps({"id": "a", "text": text})
    with pytest.raises(BadRecord) as err:
        parse_line(line, "id", "text", "f:1")
    assert err.value.reason == "empty_text"
    assert parse_line(line, "id", "text", "f:1", keep_empty=True) == ("a", text, line)


def test_text_files_decode_by_extension(tmp_path):
    payload = b'{"id": 1, "text": "x"}\n' * 100
    for codec, compress in COMPRESSORS.items():
        path = tmp_path / f"f{codec}.jsonl{SUFFIX[codec]}"
        path.write_bytes(compress(payload))
        assert read_all(path) == payload, codec
    assert os.path.exists(tmp_path / "fgz.jsonl.gz")


_ids = st.one_of(st.integers(-10**30, 10**30).map(str), st.text(max_size=4),
                 st.sampled_from(["007", "-0", "10", "2", "a"]))


@given(st.lists(st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), _ids,
                          st.binary(max_size=3)), max_size=30))
def test_sorted_docs_follow_run_order(docs):
    """The decorated sort of runs gives the order of the key function (the shard
    writer's merge: tests/test_refs.py, ``shard_lines``)."""
    from transforms.storage.spill import run_order, sorted_docs
    for by_order in (False, True):
        assert sorted_docs(list(docs), by_order) == sorted(docs, key=lambda d: run_order(d, by_order))
