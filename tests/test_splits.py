"""Large JSON Lines files split into byte ranges: each range owns the lines starting
in it, line numbers stay exact, the digest still covers every byte, and the job's
store, dead letters and counters equal an unsplit run's."""
import glob
import os
import shutil

import orjson
import pytest
import xxhash
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import prepare_corpus
from transforms.processing import splits as splits_module
from transforms.processing.io import InputError
from transforms.processing.refs import run_docs
from transforms.processing.splits import (RangeReader, count_lines, plan_splits,
                                          split_ranges)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"x")), max_size=15),
       st.booleans(), st.integers(1, 8), st.integers(1, 7))
def test_ranges_own_each_line_once_with_exact_numbers(tmp_path_factory, lines, final_newline,
                                                       parts, read_size):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    path = str(tmp_path_factory.mktemp("r") / "x.jsonl")
    open(path, "wb").write(data)
    ranges = split_ranges(len(data), max(1, -(-len(data) // parts)))
    delivered, counts = b"", []
    for start, end in ranges:
        with RangeReader(path, start, end) as reader:
            part = b""
            while chunk := reader.read(read_size):
                part += chunk
        assert reader.digest.hexdigest() == xxhash.xxh3_64(data[start:end]).hexdigest()
        count = count_lines(path, start, end, len(data))
        owned = part.split(b"\n")[:-1] if part.endswith(b"\n") else part.split(b"\n")
        assert count == (len(owned) if part else 0)
        counts.append(count)
        delivered += part
    assert delivered == data
    assert sum(counts) == (len(data.split(b"\n")) - data.endswith(b"\n") if data else 0)


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
    """Bytes of every shard and of the manifest of the store under ``root``."""
    files = {}
    for path in sorted(glob.glob(os.path.join(str(root), "ds", "*"))):
        if os.path.basename(path).startswith(("shard-", "manifest")):
            files[os.path.basename(path)] = open(path, "rb").read()
    return files


def _dead(root) -> list:
    out = []
    for path in glob.glob(os.path.join(str(root), "ds", "_audit", "dead_letters-*")):
        with open(path, "rb") as f:
            out += [orjson.loads(x) for x in
                    zstandard.ZstdDecompressor().stream_reader(f).read().splitlines()]
    return sorted((d["file"], d["line"], d["reason"]) for d in out)


@pytest.mark.cross_runner
@pytest.mark.parametrize("mode", [[], ["--no_near_dedup"]], ids=["exact+near", "exact_only"])
def test_split_run_equals_unsplit_run(tmp_path, run_config, monkeypatch, mode):
    """The file unsplit on the DirectRunner, then cut into 3000-byte ranges (both
    passes) on the runner under test: the same shards, manifest, dead letters
    and counters."""
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
    results, rereads = [], []
    for split_bytes, config in ((None, "direct"), (3000, run_config)):
        if split_bytes:
            monkeypatch.setattr(splits_module, "SPLIT_BYTES", split_bytes)
        root = tmp_path / "store"   # one root path: the manifest names it
        shutil.rmtree(root, ignore_errors=True)
        report = prepare_corpus.run(
            ["--input", source, "--output_roots", str(root), "--dataset", "ds",
             "--num_shards", "3", "--max_bad_fraction", "0.1", "--run_config", config,
             *mode])
        counters = {k: v for k, v in report["counters"].items()
                    if k.startswith(("read/", "dedup/", "near_dedup/kept", "store/"))
                    and not k.endswith("_reread")}
        rereads.append((report["counters"].get("read/files_reread"),
                        report["counters"].get("read/units_reread")))
        results.append((_snapshot(root), _dead(root), counters))
    ranges = plan_splits([source])[0]
    assert len(ranges) > 10
    assert results[1] == results[0]
    assert len(results[0][0]) == 4 and len(results[0][1]) == 7   # 3 shards + manifest; bad lines
    # pass 2: the unsplit file in one task; the split one range by range (every
    # range here holds a kept line)
    assert rereads == [(1, None), (None, len(ranges))]


def _scanned_ranges(path: str, data: bytes, parts: int) -> list:
    """The ``ScannedRange``s the scan makes of ``path`` cut into ``parts`` ranges."""
    from transforms.core.records import ScannedRange
    out, first = [], 1
    for start, end in split_ranges(len(data), max(1, -(-len(data) // parts))):
        with RangeReader(path, start, end) as reader:
            while reader.read():
                pass
        lines = count_lines(path, start, end, len(data))
        out.append(ScannedRange(0, start, end, first, lines, reader.digest.hexdigest()))
        first += lines
    return out


def _runs_by_unit(path: str, refs, ranges, digests, spill: str) -> dict:
    """Pass 2 as the job runs it: picks grouped by unit (``_PicksByUnit``), each unit
    through ``_ExtractRuns`` -> ``{shard index: sorted [(id, line)]}``; also the
    units read."""
    from transforms.processing.refs import _ExtractRuns, _PicksByUnit
    from transforms.storage.sharding import ShardRecord
    assigned = [(("", n % 3, 3), [ShardRecord("", (0,), ref.id, ref)])
                for n, ref in enumerate(refs)]
    grouped: dict = {}
    picker = _PicksByUnit()
    picker.start_bundle()
    for element in assigned:
        for unit, packed in picker.process(element, ranges):
            grouped.setdefault(unit, []).append(packed)
    fn = _ExtractRuns([path], "id", "text", spill, 1 << 20, False)
    by_start = {(r.file, r.start): r for r in ranges}
    shards: dict = {}
    for unit, parts in sorted(grouped.items()):
        for shard, run in fn.process((unit, parts), digests, by_start, []):
            shards.setdefault(shard[1], []).extend(run_docs(run))
    return {k: sorted(v) for k, v in shards.items()}, sorted(grouped)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.just(b""), st.just(b"not json"),
                          st.text("ab \u00e9", min_size=1, max_size=12)), max_size=25),
       st.booleans(), st.integers(1, 9))
def test_pass2_by_ranges_copies_what_the_whole_file_pass_copies(tmp_path_factory, texts,
                                                                 final_newline, parts):
    """Kept lines read back range by range (each range from its own first line, with
    its own digest) are exactly those one read of the whole file gives."""
    from tests.test_refs import scan
    lines = [t if isinstance(t, bytes) else orjson.dumps({"id": f"d{i}", "text": t})
             if i % 4 else orjson.dumps({"text": t}) for i, t in enumerate(texts)]
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    folder = tmp_path_factory.mktemp("p2")
    path = str(folder / "x.jsonl")
    open(path, "wb").write(data)
    refs, _, digests = scan(path)
    whole, units = _runs_by_unit(path, refs, [], digests, str(folder / "whole"))
    assert units == ([(0, 0)] if refs else [])
    ranges = _scanned_ranges(path, data, parts)
    split, units = _runs_by_unit(path, refs, ranges, {}, str(folder / "split"))
    assert split == whole
    owning = {r.start for r in ranges
              if any(r.first_line <= ref.line < r.first_line + r.lines for ref in refs)}
    assert units == [(0, start) for start in sorted(owning)]


def test_a_range_changed_between_the_passes_fails(tmp_path):
    from tests.test_refs import scan
    from transforms.processing.refs import InputChanged
    data = b"".join(b'{"id": "%d", "text": "t%d"}\n' % (n, n) for n in range(40))
    path = tmp_path / "x.jsonl"
    path.write_bytes(data)
    refs, _, _ = scan(path)
    ranges = _scanned_ranges(str(path), data, 4)
    path.write_bytes(data.replace(b'"t38"', b'"T38"'))   # last range, a line not picked
    with pytest.raises(InputChanged, match="x.jsonl changed while the job"):
        _runs_by_unit(str(path), [r for r in refs if r.id == "35"], ranges, {},
                      str(tmp_path / "s"))
    _runs_by_unit(str(path), [r for r in refs if r.id == "3"], ranges, {},  # other range
                  str(tmp_path / "s"))
