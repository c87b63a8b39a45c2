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
    for name in ("big.jsonl", "big.ndjson", "small.jsonl"):
        (tmp_path / name).write_bytes(b"x" * (5 if name.startswith("small") else 25))
    # one zstd frame: not split however large
    (tmp_path / "big.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"x\n" * 99))
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


# On the runners that run only the cross-runner tests, two of the four cases: both kinds
# of split (byte ranges, zstd frames) and both paths (near-dedup, exact only); the
# whole suite's runners (direct, Prism) run all four (scripts/test_runners.sh).
@pytest.mark.parametrize("name,mode", [
    pytest.param("big.jsonl", [], id="big.jsonl-exact+near", marks=pytest.mark.cross_runner),
    pytest.param("big.jsonl", ["--no_near_dedup"], id="big.jsonl-exact_only"),
    pytest.param("big.jsonl.zst", [], id="big.jsonl.zst-exact+near"),
    pytest.param("big.jsonl.zst", ["--no_near_dedup"], id="big.jsonl.zst-exact_only",
                 marks=pytest.mark.cross_runner)])
def test_split_run_equals_unsplit_run(tmp_path, run_config, monkeypatch, mode, name):
    """The file unsplit on the DirectRunner, then cut into ranges of about 3000 bytes
    (both passes) on the runner under test: the same shards, manifest, dead
    letters and counters.  ``big.jsonl``: byte ranges; ``big.jsonl.zst``: runs of
    zstd frames of 700 decompressed bytes each (so frames end inside lines), with
    an empty frame, a frame without content size and skippable frames among
    them."""
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
    source = str(tmp_path / "in" / name)
    data = b"\n".join(lines) + b"\n"
    with open(source, "wb") as f:
        if name.endswith(".zst"):
            cuts = sorted([*range(700, len(data), 700), 7000])   # 7000 twice: an empty frame
            f.write(_frames_file(data, cuts, [0, 0, 1, 2]))
        else:
            f.write(data)
    results, rereads = [], []
    for split_bytes, config in ((None, "direct"), (3000, run_config)):
        if split_bytes:
            monkeypatch.setattr(splits_module, "SPLIT_BYTES", split_bytes)
        assert (plan_splits([source]) != {}) == bool(split_bytes)
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
    if name.endswith(".zst"):   # ranges begin inside lines, and on line starts
        from transforms.processing.splits import count_frame_lines, range_numbers
        counts = {(0, a): count_frame_lines(source, a, b) for a, b in ranges}
        inside = [range_numbers(counts, 0, a)[2] for a, _ in ranges]
        assert any(inside) and not all(inside)
    assert results[1] == results[0]
    assert len(results[0][0]) == 4 and len(results[0][1]) == 7   # 3 shards + manifest; bad lines
    assert results[0][2]["read/lines"] == 600
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


# ---------------------------------------------------------------- zstd files split by frames

SKIPPABLE = (0x184D2A5A).to_bytes(4, "little")


def _frames_file(data: bytes, cuts: list, kinds: list) -> bytes:
    """``data`` compressed as one zstd frame per piece between ``cuts`` (sorted
    offsets, repeats make empty frames); ``kinds[i]`` picks piece ``i``'s frame:
    0 one-shot with content size and checksum, 1 streamed without content size,
    2 like 0 preceded by a skippable frame."""
    bounds = [0, *cuts, len(data)]
    out = b""
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        kind = kinds[i % len(kinds)] if kinds else 0
        piece = data[a:b]
        if kind == 1:
            out += zstandard.ZstdCompressor(write_content_size=False).compress(piece)
        else:
            if kind == 2:
                out += SKIPPABLE + (i % 3).to_bytes(4, "little") + b"\x00" * (i % 3)
            out += zstandard.ZstdCompressor(write_checksum=True).compress(piece)
    return out


_lines = st.lists(st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"x")), max_size=15)


@st.composite
def _framed(draw):
    """A JSON Lines-shaped byte string, cut into frames at random offsets (mid-line,
    on newlines, empty frames), and a random grouping of its frames into ranges."""
    lines = draw(_lines)
    data = b"\n".join(lines) + (b"\n" if draw(st.booleans()) and lines else b"")
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    kinds = draw(st.lists(st.integers(0, 2), min_size=1, max_size=4))
    return data, cuts, kinds


@settings(max_examples=300, deadline=None)
@given(_framed(), st.data(), st.integers(1, 7))
def test_frame_ranges_own_each_line_once_in_order(tmp_path_factory, framed, draw, read_size):
    """Frames grouped into ranges in any way: each range's reader delivers exactly the
    lines starting in its decompressed bytes, the union is the file's lines once
    each, in order, with the line numbers the counts give; digests cover exactly
    each range's decompressed bytes."""
    from transforms.processing.io import zstd_frames
    from transforms.processing.splits import (FrameRangeReader, count_frame_lines,
                                              range_numbers)
    data, cuts, kinds = framed
    path = str(tmp_path_factory.mktemp("z") / "x.jsonl.zst")
    open(path, "wb").write(_frames_file(data, cuts, kinds))
    frames = zstd_frames(path)
    assert frames[0].start == 0 and all(a.end == b.start for a, b in zip(frames, frames[1:]))
    groups = sorted(draw.draw(st.sets(st.integers(1, max(1, len(frames) - 1)),
                                      max_size=len(frames) - 1)))
    bounds = [0, *[g for g in groups if g < len(frames)], len(frames)]
    ranges = [(frames[a].start, frames[b - 1].end) for a, b in zip(bounds, bounds[1:])]
    counts = {(0, start): count_frame_lines(path, start, end) for start, end in ranges}
    delivered, expected_first, offset = b"", 1, 0
    for start, end in ranges:
        first, lines, inside = range_numbers(counts, 0, start)
        with FrameRangeReader(path, start, end, inside) as reader:
            part = b""
            while chunk := reader.read(read_size):
                assert len(chunk) <= read_size
                part += chunk
        size = counts[(0, start)].size
        assert reader.digest.hexdigest() == xxhash.xxh3_64(data[offset:offset + size]).hexdigest()
        owned = part.split(b"\n")[:-1] if part.endswith(b"\n") else part.split(b"\n")
        assert lines == (len(owned) if part else 0)
        assert first == expected_first
        # a range's lines start in its own decompressed bytes
        assert not part or data.find(part, offset) < offset + size
        expected_first += lines
        offset += size
        delivered += part
    assert offset == len(data)
    assert delivered == data
    assert expected_first - 1 == (len(data.split(b"\n")) - data.endswith(b"\n") if data else 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.booleans(), st.booleans()), min_size=1,
                max_size=40), st.integers(1, 20000))
def test_plan_frames_covers_every_frame_in_runs_of_about_the_split_size(frames, split_bytes):
    from transforms.processing.io import ZstdFrame
    from transforms.processing.splits import frame_weight, plan_frames
    at, found = 0, []
    for size, declared, skippable in frames:
        found.append(ZstdFrame(at, at + 10 + size, size if declared else None, skippable))
        at += 10 + size
    plan = plan_frames(found, split_bytes)
    assert plan[0][0] == 0 and plan[-1][1] == at
    assert all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
    starts = {f.start for f in found}
    assert all(start in starts for start, _ in plan)
    total = sum(map(frame_weight, found))
    count = max(1, min(-(-total // split_bytes), len(found)))
    assert len(plan) == 1 if count == 1 else len(plan) <= count
    # a run holds its share: each run without its last frame at most total / count
    # (<= split_bytes unless there are fewer frames than shares); the i-th cut is
    # where the running total first reaches (i + 1) shares or more
    weight = {f.start: frame_weight(f) for f in found}
    running = 0
    for i, (start, end) in enumerate(plan):
        inside = [f for f in found if start <= f.start < end]
        body = sum(weight[f.start] for f in inside[:-1])
        assert body * count <= total
        running += body + weight[inside[-1].start]
        if i < len(plan) - 1:
            assert running * count >= total * (i + 1)


def test_which_zstd_files_split(tmp_path, monkeypatch):
    """Several frames above the split size split at frame boundaries; one frame, or
    several holding less, do not; a truncated file fails naming it at plan time."""
    monkeypatch.setattr(splits_module, "SPLIT_BYTES", 1000)
    data = b"".join(b'{"id": %d, "text": "line %d"}\n' % (i, i) for i in range(200))  # 6 KB
    (tmp_path / "one.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    many = _frames_file(data, list(range(500, len(data), 500)), [0])
    (tmp_path / "many.jsonl.zst").write_bytes(many)
    (tmp_path / "small.jsonl.zst").write_bytes(_frames_file(data[:900], [300, 600], [0]))
    paths = sorted(str(p) for p in tmp_path.iterdir())
    plans = plan_splits(paths)
    assert list(plans) == [paths.index(str(tmp_path / "many.jsonl.zst"))]
    ranges = plans[paths.index(str(tmp_path / "many.jsonl.zst"))]
    assert len(ranges) == -(-len(data) // 1000) and ranges[-1][1] == len(many)
    (tmp_path / "many.jsonl.zst").write_bytes(many[:-5])
    with pytest.raises(InputError, match=r"many\.jsonl\.zst: the zstd stream ends inside frame"):
        plan_splits(paths)


def test_a_frame_range_cut_short_or_corrupt_names_the_file(tmp_path):
    from transforms.processing.splits import FrameRangeReader, count_frame_lines
    data = b"".join(b'{"id": %d, "text": "line %d"}\n' % (i, i) for i in range(200))
    many = _frames_file(data, [2000, 4000], [0])
    path = tmp_path / "x.jsonl.zst"
    path.write_bytes(many)
    from transforms.processing.io import zstd_frames
    frames = zstd_frames(str(path))
    start, end = frames[1].start, frames[2].end
    path.write_bytes(many[:-3])          # changed after planning: ends early
    with pytest.raises(InputError, match=r"x\.jsonl\.zst: ended at compressed byte"):
        count_frame_lines(str(path), start, end)
    path.write_bytes(many + many[:10])   # a window that does not end at a frame end
    with pytest.raises(InputError, match=r"x\.jsonl\.zst: the zstd stream ends inside frame"):
        with FrameRangeReader(str(path), start, end + 10, False) as reader:
            while reader.read():
                pass
    corrupt = bytearray(many)
    corrupt[frames[1].start + 20] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(InputError, match=r"x\.jsonl\.zst: cannot read zstd data"):
        count_frame_lines(str(path), start, end)


def _frame_scanned_ranges(path: str, groups) -> list:
    """The ``ScannedRange``s the scan makes of a zstd file whose frames are grouped
    into ranges at frame indices ``groups``."""
    from transforms.core.records import ScannedRange
    from transforms.processing.io import zstd_frames
    from transforms.processing.splits import (FrameRangeReader, count_frame_lines,
                                              range_numbers)
    frames = zstd_frames(path)
    bounds = [0, *sorted(g for g in set(groups) if 0 < g < len(frames)), len(frames)]
    ranges = [(frames[a].start, frames[b - 1].end) for a, b in zip(bounds, bounds[1:])]
    counts = {(0, a): count_frame_lines(path, a, b) for a, b in ranges}
    out = []
    for start, end in ranges:
        first, lines, inside = range_numbers(counts, 0, start)
        with FrameRangeReader(path, start, end, inside) as reader:
            while reader.read():
                pass
        out.append(ScannedRange(0, start, end, first, lines, reader.digest.hexdigest(), inside))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.just(b""), st.just(b"not json"),
                          st.text("ab \u00e9", min_size=1, max_size=12)), max_size=25),
       st.booleans(), st.lists(st.integers(0, 400), max_size=8),
       st.lists(st.integers(0, 2), min_size=1, max_size=3), st.lists(st.integers(1, 12)))
def test_pass2_by_frame_ranges_copies_what_the_whole_file_pass_copies(
        tmp_path_factory, texts, final_newline, cuts, kinds, groups):
    """A zstd file cut into frames anywhere (inside lines, empty frames, skippable
    frames), its frames grouped into ranges: kept lines read back range by range
    are exactly those one read of the whole file gives."""
    from tests.test_refs import scan
    lines = [t if isinstance(t, bytes) else orjson.dumps({"id": f"d{i}", "text": t})
             if i % 4 else orjson.dumps({"text": t}) for i, t in enumerate(texts)]
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    folder = tmp_path_factory.mktemp("p2z")
    path = str(folder / "x.jsonl.zst")
    open(path, "wb").write(_frames_file(data, sorted(min(c, len(data)) for c in cuts), kinds))
    refs, _, digests = scan(path)
    whole, units = _runs_by_unit(path, refs, [], digests, str(folder / "whole"))
    ranges = _frame_scanned_ranges(path, groups)
    split, units = _runs_by_unit(path, refs, ranges, {}, str(folder / "split"))
    assert split == whole
    owning = {r.start for r in ranges
              if any(r.first_line <= ref.line < r.first_line + r.lines for ref in refs)}
    assert units == [(0, start) for start in sorted(owning)]
    assert sum(r.lines for r in ranges) == (len(data.split(b"\n")) - data.endswith(b"\n")
                                            if data else 0)


def test_a_frame_range_changed_between_the_passes_fails(tmp_path):
    from tests.test_refs import scan
    from transforms.processing.refs import InputChanged
    data = b"".join(b'{"id": "%d", "text": "t%d"}\n' % (n, n) for n in range(40))
    cuts = list(range(100, len(data), 100))
    path = tmp_path / "x.jsonl.zst"
    bounds = [0, *cuts, len(data)]

    def raw_frames(content):   # frames of one raw block each: a changed byte moves nothing
        return b"".join((0xFD2FB528).to_bytes(4, "little") + bytes([0x20, b - a])
                        + (((b - a) << 3) | 1).to_bytes(3, "little") + content[a:b]
                        for a, b in zip(bounds, bounds[1:]))
    path.write_bytes(raw_frames(data))
    refs, _, _ = scan(path)
    ranges = _frame_scanned_ranges(str(path), [3, 6, 9])
    path.write_bytes(raw_frames(data.replace(b'"t38"', b'"T38"')))  # last range, not picked
    with pytest.raises(InputChanged, match="x.jsonl.zst changed while the job"):
        _runs_by_unit(str(path), [r for r in refs if r.id == "35"], ranges, {},
                      str(tmp_path / "s"))
    _runs_by_unit(str(path), [r for r in refs if r.id == "3"], ranges, {},  # other range
                  str(tmp_path / "s"))


def test_a_truncated_multi_frame_zstd_fails_the_run_naming_it(tmp_path, capsys, monkeypatch):
    """A file that would split by frames, cut inside its last frame: the job fails
    in one line naming it (found while planning the ranges), nothing is written."""
    from tests.test_inputs_pipeline import failure
    monkeypatch.setattr(splits_module, "SPLIT_BYTES", 3000)
    data = b"".join(b'{"id": %d, "text": "record %d"}\n' % (i, i) for i in range(2000))
    packed = _frames_file(data, list(range(1000, len(data), 1000)), [0, 1])
    cut = tmp_path / "cut.jsonl.zst"
    cut.write_bytes(packed[:len(packed) * 6 // 10])
    assert packed[len(packed) * 6 // 10:len(packed) * 6 // 10 + 4] != SKIPPABLE
    said = failure(capsys, ["--input", str(cut), "--output_roots", str(tmp_path / "o")])
    assert said.startswith(f"prepare_corpus failed: {cut}: the zstd stream ends inside frame ")
    assert not (tmp_path / "o" / "corpus" / "manifest.json").exists()
