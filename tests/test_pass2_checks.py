"""Pass 2 (``refs._ExtractRuns``) refuses every way a picked line can differ from the
first read, with a message naming the file and line, and flushes its runs after the
same lines whatever the shards.  (Examples from branch pass2vec's tests, session 13.)"""
from unittest import mock

import orjson
import pytest
import xxhash

from transforms.core.records import Pick, pack
from transforms.processing import io as io_module
from transforms.processing.refs import InputChanged, _ExtractRuns
from transforms.storage.spill import run_lines

MAX_LINE = 90   # --max_line_bytes of the tests: longer lines are LongLines


def write(tmp_path, lines):
    path = tmp_path / "in.jsonl"
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(data)
    return str(path), {0: xxhash.xxh3_64(data).hexdigest()}


def extract(path, digests, picks, run_bytes=1 << 20):
    fn = _ExtractRuns([path], "id", "text", path + ".spill", run_bytes, False, MAX_LINE)
    return [(shard, run.ids, run_lines(run))
            for shard, run in fn.process(((0, 0), [pack(picks)]), digests, {}, [])]


LINES = [orjson.dumps({"id": f"d{n}", "text": f"t{n}"}) for n in range(1, 7)]


def pick(line_no, shard=0, size=None, **flags):
    size = len(LINES[line_no - 1]) + 1 if size is None else size
    return Pick(line_no, size, flags.get("reparse", False), (0,), f"d{line_no}",
                ("", shard, 2), False, "", 0.0)


@pytest.mark.parametrize("picks, message", [
    ([pick(2), pick(4, size=3)], r"in.jsonl: line 4 changed since the first read$"),
    ([pick(2), pick(3), pick(3, shard=1)], r"in.jsonl: line 3 picked twice$"),
    ([pick(2), pick(9, size=5)], r"in.jsonl changed while the job was reading it"),
    ([pick(0, size=5), pick(2)], r"in.jsonl changed while the job was reading it"),
    ([pick(4, size=5, reparse=True), pick(1, size=99)],   # the first in line order
     r"in.jsonl: line 1 changed since the first read$"),
])
def test_every_input_changed_case_is_raised(tmp_path, picks, message):
    path, digests = write(tmp_path, LINES)
    with pytest.raises(InputChanged, match=message):
        extract(path, digests, picks)


def test_a_line_now_past_max_line_bytes_is_a_changed_line(tmp_path):
    """(Read in small chunks, a line over the bound is held as a ``LongLine``: it was
    an AttributeError before.)"""
    path, digests = write(tmp_path, LINES[:2] + [b'{"id": "d3", "text": "%s"}' % (b"x" * 200)])
    with mock.patch.object(io_module, "_CHUNK", 16), pytest.raises(
            InputChanged, match=r"line 3 changed since the first read \(now 224 "
                                r"bytes, over the bound of 90\)"):
        extract(path, digests, [pick(1), pick(3)])


def test_a_changed_digest_fails_after_every_line_matched(tmp_path):
    path, digests = write(tmp_path, LINES)
    with pytest.raises(InputChanged, match="changed while the job was reading it"):
        extract(path, {0: "0"}, [pick(1), pick(2)])
    assert extract(path, digests, [pick(1), pick(2)]) == [
        (("", 0, 2), ["d1", "d2"], [LINES[0], LINES[1]])]


def test_flushes_fall_after_the_same_lines_whatever_the_shards(tmp_path):
    path, digests = write(tmp_path, LINES)
    size = len(LINES[0]) + 1
    runs = extract(path, digests, [pick(n, n % 2) for n in range(1, 7)], run_bytes=2 * size)
    # a flush after every second line: lines 1-2, 3-4, 5-6, each to both shards
    assert [(shard[1], ids) for shard, ids, _ in runs] == [
        (1, ["d1"]), (0, ["d2"]), (1, ["d3"]), (0, ["d4"]), (1, ["d5"]), (0, ["d6"])]
