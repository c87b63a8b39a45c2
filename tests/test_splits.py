"""Large JSON Lines files split into byte ranges: each range owns the lines starting
in it, line numbers stay exact, the digest still covers every byte, and the job's
store, dead letters and counters equal an unsplit run's."""
import glob
import os

import orjson
import pytest
import xxhash
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import prepare_corpus
from transforms.processing import splits as splits_module
from transforms.processing.io import InputError
from transforms.processing.splits import (RangeReader, SplitDigest, combine_digests,
                                          count_lines, plan_splits, split_ranges)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"x")), max_size=15),
       st.booleans(), st.integers(1, 8), st.integers(1, 7))
def test_ranges_own_each_line_once_with_exact_numbers(tmp_path_factory, lines, final_newline,
                                                       parts, read_size):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    path = str(tmp_path_factory.mktemp("r") / "x.jsonl")
    open(path, "wb").write(data)
    ranges = split_ranges(len(data), max(1, -(-len(data) // parts)))
    delivered, counts, hexes = b"", [], []
    for start, end in ranges:
        with RangeReader(path, start, end) as reader:
            part = b""
            while chunk := reader.read(read_size):
                part += chunk
        assert reader.digest.hexdigest() == xxhash.xxh3_64(data[start:end]).hexdigest()
        hexes.append(reader.digest.hexdigest())
        count = count_lines(path, start, end, len(data))
        owned = part.split(b"\n")[:-1] if part.endswith(b"\n") else part.split(b"\n")
        assert count == (len(owned) if part else 0)
        counts.append(count)
        delivered += part
    assert delivered == data
    assert sum(counts) == (len(data.split(b"\n")) - data.endswith(b"\n") if data else 0)
    digest = SplitDigest(ranges)
    for i in range(0, len(data), 5):
        digest.update(data[i:i + 5])
    assert digest.hexdigest() == combine_digests(hexes)


def test_which_files_split(tmp_path, monkeypatch):
    monkeypatch.setattr(splits_module, "SPLIT_BYTES", 10)
    for name in ("big.jsonl", "big.ndjson", "big.jsonl.zst", "small.jsonl"):
        (tmp_path / name).write_bytes(b"x" * (5 if name.startswith("small") else 25))
    paths = sorted(str(p) for p in tmp_path.iterdir())
    assert plan_splits(paths) == {0: [(0, 8), (8, 16), (16, 25)],
                                  2: [(0, 8), (8, 16), (16, 25)]}
    assert [os.path.basename(paths[i]) for i in (0, 2)] == ["big.jsonl", "big.ndjson"]


def test_a_file_shorter_than_planned_is_an_input_error(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"a\nb\n")
    with pytest.raises(InputError, match="x.jsonl: ended at byte 4, before 10"):
        with RangeReader(str(path), 0, 10) as reader:
            while reader.read():
                pass


def _snapshot(root) -> dict:
    files = {}
    for path in sorted(glob.glob(os.path.join(str(root), "ds", "*"))):
        if os.path.basename(path).startswith("shard-"):
            files[os.path.basename(path)] = open(path, "rb").read()
    return files


def _dead(root) -> list:
    out = []
    for path in glob.glob(os.path.join(str(root), "ds", "_audit", "dead_letters-*")):
        with open(path, "rb") as f:
            out += [orjson.loads(x) for x in
                    zstandard.ZstdDecompressor().stream_reader(f).read().splitlines()]
    return sorted((d["file"], d["line"], d["reason"]) for d in out)


@pytest.mark.parametrize("mode", [[], ["--no_near_dedup"]], ids=["exact+near", "exact_only"])
def test_split_run_equals_unsplit_run(tmp_path, run_config, monkeypatch, mode):
    lines = []
    for i in range(600):
        if i % 97 == 5:
            lines.append(b'{"id": "bad", "text": ')          # invalid JSON
        elif i % 89 == 3:
            lines.append(b"")                               # blank
        elif i % 71 == 7:
            lines.append(b'{"text": "no id %d here"}' % i)   # default id: file:line
        else:
            text = " ".join(f"w{(i * j * 31) % 701}" for j in range(5 + i % 40))
            lines.append(orjson.dumps({"id": f"d{i:04d}", "text": text, "i": i}))
    os.makedirs(tmp_path / "in")
    source = str(tmp_path / "in" / "big.jsonl")
    with open(source, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    results = []
    for split_bytes in (None, 3000):
        if split_bytes:
            monkeypatch.setattr(splits_module, "SPLIT_BYTES", split_bytes)
        root = tmp_path / ("split" if split_bytes else "whole")
        report = prepare_corpus.run(
            ["--input", source, "--output_roots", str(root), "--dataset", "ds",
             "--num_shards", "3", "--max_bad_fraction", "0.1", "--run_config", run_config,
             *mode])
        counters = {k: v for k, v in report["counters"].items()
                    if k.startswith(("read/", "dedup/", "near_dedup/kept", "store/"))}
        results.append((_snapshot(root), _dead(root), counters))
    assert len(plan_splits([source])[0]) > 10
    assert results[1] == results[0]
    assert len(results[0][0]) == 3 and len(results[0][1]) == 7   # shards; bad lines
