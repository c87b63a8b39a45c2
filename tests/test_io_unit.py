import gzip
import io

import orjson
import pytest
import zstandard
from hypothesis import given, strategies as st

from transforms.processing.io import BadRecord, expand_patterns, iter_lines, open_text_stream, parse_line


@pytest.mark.parametrize("line, reason", [
    (b'{"id": 1, "text": "unterminated', "invalid_json"),
    (b'{"id": "a", "text": "\xff\xfe"}', "invalid_utf8"),
    (b'["a", "list"]', "not_an_object"),
    (b'"just a string"', "not_an_object"),
    (b'{"id": "a"}', "missing_text"),
    (b'{"id": "a", "text": null}', "missing_text"),
    (b'{"id": "a", "text": 42}', "text_not_string"),
    (b'{"id": "a", "text": ["x"]}', "text_not_string"),
    (b'{"id": 1.5, "text": "x"}', "bad_id"),
    (b'{"id": true, "text": "x"}', "bad_id"),
])
def test_parse_line_reasons(line, reason):
    with pytest.raises(BadRecord) as err:
        parse_line(line, "id", "text", "f:1")
    assert err.value.reason == reason


def test_parse_line_keeps_line_and_other_fields():
    line = b'{"id": 7, "text": "Hi", "meta": {"x": [1, 2]}}  \r'
    assert parse_line(line, "id", "text", "f:1") == ("7", "Hi", line.strip())


@pytest.mark.parametrize("line, doc_id, int_id", [
    (b'{"id": 17, "text": "t"}', "17", True),
    (b'{"id": "17", "text": "t"}', "17", False),          # digits in a string: a string
    (b'{"id": 100000000000000000000001, "text": "t"}', "100000000000000000000001", True),
    (b'{"id": -3, "text": "t"}', "-3", True),
    (b'{"id": "a", "text": "t"}', "a", False),
    (b'{"text": "t"}', "f:1", False),                      # the default id is a string
    (b'{"id": null, "text": "t"}', "f:1", False),
])
def test_parse_line_typed_says_whether_the_id_is_a_json_integer(line, doc_id, int_id):
    plain = parse_line(line, "id", "text", "f:1")
    assert parse_line(line, "id", "text", "f:1", typed=True) == (*plain, int_id)
    assert plain[0] == doc_id


def test_parse_line_missing_id_gets_default_written_into_record():
    doc_id, text, line = parse_line(b'{"body": "x", "n": 1}', "key", "body", "data.jsonl:12")
    assert doc_id == "data.jsonl:12" and text == "x"
    assert orjson.loads(line) == {"body": "x", "n": 1, "key": "data.jsonl:12"}


def test_iter_lines_across_chunk_boundaries(monkeypatch):
    import transforms.processing.io as tio
    monkeypatch.setattr(tio, "_CHUNK", 3)
    data = "alpha\nbe\n\ngamma \u2028 x\nlast".encode()
    assert list(iter_lines(io.BytesIO(data))) == data.split(b"\n")


def test_open_text_stream_decompresses_by_extension(tmp_path):
    payload = b'{"id": 1, "text": "x"}\n' * 1000
    (tmp_path / "a.jsonl").write_bytes(payload)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(payload))
    # Two concatenated zstd frames, as produced by appending writers.
    cctx = zstandard.ZstdCompressor()
    (tmp_path / "a.jsonl.zst").write_bytes(cctx.compress(payload[:500]) + cctx.compress(payload[500:]))
    for name in ("a.jsonl", "a.jsonl.gz", "a.jsonl.zst"):
        with open_text_stream(str(tmp_path / name)) as stream:
            assert b"\n".join(iter_lines(stream)) + b"\n" == payload


def test_expand_patterns_sorted_unique_and_missing_is_error(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    pattern = str(tmp_path / "*.jsonl")
    assert expand_patterns(f"{pattern},{tmp_path / 'a.jsonl'}") == [
        str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        expand_patterns(f"{pattern},{tmp_path / 'nothing-here*.jsonl'}")


def test_read_counters_move_inside_a_file(tmp_path, monkeypatch):
    """A large file's read counters grow every COUNT_EVERY records, not only at its end
    (what a live progress display shows), and end at the file's exact totals."""
    from transforms.processing import io as read_io

    class Recorder:
        def __init__(self):
            self.value = 0

        def inc(self, n=1):
            self.value += n

    path = tmp_path / "in.jsonl"
    lines = [b'{"id": %d, "text": "t%d"}' % (i, i) for i in range(10)]
    lines.insert(4, b"")          # a blank line
    lines.insert(7, b"[1]")       # a bad line
    path.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setattr(read_io, "COUNT_EVERY", 3)
    fn = read_io.JsonlFileDoFn("id", "text")
    fn.counters = {name: Recorder() for name in fn.counters}
    seen = []
    for line_no, _ in fn.documents(str(path)):
        if line_no is not None:
            seen.append(fn.counters["records"].value)
    # before yielding record 3, 6, 9 the counters were brought up to date
    assert seen == [0, 0, 3, 3, 3, 6, 6, 6, 9, 9]
    assert {n: c.value for n, c in fn.counters.items()} == {
        "lines": 12, "blank_lines": 1, "records": 10, "bytes": path.stat().st_size}


def test_input_items_starting_with_a_tilde_are_in_the_home_folder(tmp_path, monkeypatch):
    """``--input "~/a.jsonl,~/b.jsonl"``: the shell expands only the first item."""
    from transforms.processing.io import expand_patterns
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "a.jsonl").write_bytes(b'{"id": 1, "text": "x"}\n')
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.jsonl").write_bytes(b'{"id": 2, "text": "y"}\n')
    assert expand_patterns("~/a.jsonl,~/d") == [str(tmp_path / "a.jsonl"),
                                                 str(tmp_path / "d" / "b.jsonl")]
    with pytest.raises(FileNotFoundError, match="matches no file: ~/nothing"):
        expand_patterns("~/nothing*.jsonl")


@given(st.lists(st.sampled_from([b"a", b"bc", b"\xef\xbb\xbf", b"\n", b"\r\n", b"x" * 9, b" "]),
                max_size=60),
       st.integers(1, 7), st.sampled_from([None, 4, 8]), st.integers(1, 3), st.data())
def test_lines_at_gives_the_wanted_lines_numbered_lines_gives(parts, chunk, max_line,
                                                             first_line, data):
    """``lines_at`` (a Python step per chunk and per wanted line) cuts, numbers and
    digests a stream exactly as ``numbered_lines``, at any chunk size and line bound,
    BOM and long lines included; a repeated number gives its line again."""
    from unittest import mock
    import xxhash
    from transforms.processing import io as io_module
    from transforms.processing.io import lines_at, numbered_lines
    raw = b"".join(parts)
    with mock.patch.object(io_module, "_CHUNK", chunk):
        expected_digest, got_digest = xxhash.xxh3_64(), xxhash.xxh3_64()
        every = list(numbered_lines(io.BytesIO(raw), expected_digest, max_line, first_line))
        numbers = [n for n, _ in every]
        wanted = sorted(data.draw(st.lists(st.sampled_from(numbers), max_size=8))
                        if numbers else [])
        got = list(lines_at(io.BytesIO(raw), wanted, got_digest, max_line, first_line))
    by_number = dict(every)
    assert [n for n, _ in got] == wanted
    for n, line in got:
        expect = by_number[n]
        if isinstance(expect, bytes):
            assert line == expect
        else:   # a LongLine: same head and size
            assert (line.head, line.size) == (expect.head, expect.size)
    assert got_digest.hexdigest() == expected_digest.hexdigest()


def test_lines_at_stops_at_a_number_out_of_order_but_reads_to_the_end():
    import xxhash
    from transforms.processing.io import lines_at
    digest = xxhash.xxh3_64()
    assert list(lines_at(io.BytesIO(b"a\nb\nc\nd\n"), [2, 1, 3], digest)) == [(2, b"b")]
    assert digest.hexdigest() == xxhash.xxh3_64(b"a\nb\nc\nd\n").hexdigest()
    assert list(lines_at(io.BytesIO(b"a\nb\n"), [0, 1])) == []
