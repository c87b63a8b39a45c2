"""Documents by reference (transforms.processing.refs): the two passes over a file agree,
and a file that changes between them fails the run."""
import os

import orjson
import pytest
from apache_beam.pvalue import TaggedOutput
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.hashing import text_key
from transforms.processing.io import parse_line
from transforms.processing.refs import (Bounds, InputChanged, Pick, ScanSpec, _ExtractRuns, _ScanFile,
                            delete_spill, run_docs)

LINES = [b'\xef\xbb\xbf{"id": "b", "text": "Two"}',   # byte-order mark on line 1
         b'{"text": "no id here", "lang": "en"}',     # gets the id <path>:2
         b'',
         b'not json',
         b'  {"id": 7, "text": "seven"}  ']


def scan(path):
    """_ScanFile over one file -> (refs, dead letters, digests)."""
    refs, dead, digests = [], [], {}
    fn = _ScanFile("id", "text", ScanSpec(), Bounds(batch_bytes=100))
    fn.setup()
    for out in fn.process((0, str(path))):
        if isinstance(out, TaggedOutput) and out.tag == "dead_letters":
            dead.append(out.value)
        elif isinstance(out, TaggedOutput):
            digests[out.value.file] = out.value.digest
        else:
            assert len(out) <= 2  # about 50 bytes a ref here: two fit in 100
            refs.extend(out)
    return refs, dead, digests


def extract(path, refs, digests, run_bytes=1 << 20):
    """Every ref to a shard (ids ending in a digit to shard 1) -> the runs
    _ExtractRuns emits, as ``(shard index, [(id, line)])``."""
    picks = [Pick(ref.line, ref.size, ref.reparse, (0,), ref.id,
                  ("", int(ref.id[-1:].isdigit()), 2)) for ref in refs]
    fn = _ExtractRuns([str(path)], "id", "text", str(path) + ".spill", run_bytes, False)
    return [(shard[1], list(run_docs(run)))
            for shard, run in fn.process(((0, 0), [picks[:1], picks[1:]]), digests, {}, [])]


def test_scan_refs_point_at_the_lines_parse_line_gives(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(LINES) + b"\n")
    refs, dead, digests = scan(path)
    expected = {}
    for line_no, raw in enumerate(LINES, start=1):
        raw = raw.removeprefix(b"\xef\xbb\xbf")
        if raw.strip() and raw != b"not json":
            doc_id, text, line = parse_line(raw, "id", "text", f"{path}:{line_no}")
            expected[doc_id] = (text_key(text), line_no, len(line) + 1, line)
    assert {ref.id: (ref.key, ref.line, ref.size) for ref in refs} == {
        doc_id: value[:3] for doc_id, value in expected.items()}
    assert [ref.reparse for ref in refs] == [False, True, False]  # reparse: id assigned
    assert [(d["line"], d["reason"]) for d in dead] == [(4, "invalid_json")]

    runs = dict(extract(path, refs, digests))
    # runs follow the id order: the integer id 7 before any string id
    assert runs == {0: [("b", expected["b"][3])],
                    1: [("7", expected["7"][3]), (f"{path}:2", expected[f"{path}:2"][3])]}
    assert orjson.loads(runs[1][1][1])["id"] == f"{path}:2"


def test_runs_are_flushed_beyond_run_bytes_and_stay_sorted(tmp_path):
    """Every flush writes new run files (a run's name says its file, flush and shard)."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(b'{"id": "%03d", "text": "t%d"}\n' % (n, n)
                              for n in range(50, 0, -1)))
    refs, _, digests = scan(path)
    runs = extract(path, refs, digests, run_bytes=200)
    assert len(runs) > 4
    assert len(os.listdir(str(path) + ".spill")) == len(runs)
    delete_spill(str(path) + ".spill")
    assert not os.path.exists(str(path) + ".spill")
    for _, docs in runs:
        ids = [doc_id for doc_id, _ in docs]
        assert ids == sorted(ids)
        assert [orjson.loads(line)["id"] for _, line in docs] == ids
    assert sorted(i for _, docs in runs for i, _ in docs) == ["%03d" % n for n in range(1, 51)]


@pytest.mark.parametrize("change", [
    lambda data: data.replace(b"t7", b"T7"),                # same sizes, other bytes
    lambda data: data.replace(b'"t7"', b'"seven"'),          # a line grows
    lambda data: data[: data.rindex(b"\n", 0, -1) + 1],     # the last line is gone
])
def test_a_file_changed_between_the_passes_fails(tmp_path, change):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(b'{"id": "%d", "text": "t%d"}\n' % (n, n) for n in range(10)))
    refs, _, digests = scan(path)
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(InputChanged, match="in.jsonl"):
        extract(path, refs, digests)


@pytest.mark.parametrize("zstd_level", [None, 1])
def test_spill_buckets_round_trip_and_retries_overwrite(tmp_path, zstd_level):
    """Records come back per bucket, whatever the flushes, compressed or not; a
    rerun of the same file (a retried bundle) rewrites its own files instead of
    adding to them."""
    from transforms.processing.refs import Spill, SpillWriter
    spill = Spill(str(tmp_path / "spill"), "bands", zstd_level=zstd_level)
    records = [(n % 3, b"r%03d\n\x00" % n) for n in range(40)]
    for _ in range(2):
        for file_index in (0, 1):
            writer = SpillWriter(spill, file_index, flush_bytes=50)
            for bucket, record in records:
                writer.add(bucket, record + bytes([file_index]))
            writer.close()
    for bucket in range(3):
        want = sorted(r + bytes([f]) for f in (0, 1) for b, r in records if b == bucket)
        assert sorted(spill.read(bucket)) == want
    assert spill.delete() > 6 and list(spill.read(0)) == []


def test_signer_spills_band_entries_and_signatures(tmp_path):
    """What the scan spills is what LSH and verification would compute from the text."""
    from transforms.reduction.minhash import LshParams, band_keys
    from transforms.reduction.near_dedup import (NearDedupConfig, Signer, band_bucket, band_record,
                                       sketch_record)
    from transforms.processing.refs import SpillWriter
    signer = Signer(NearDedupConfig(LshParams.resolve(0.8, num_perm=32)), num_buckets=4)
    signer.setup()
    texts = ["one two three four five six", "", "seven eight nine ten eleven"]
    ids, keys = ["a", "empty", "c\u00e9"], [text_key(t) for t in texts]
    spills = signer.spills(str(tmp_path))
    writers = [SpillWriter(s, 0, 1 << 20) for s in spills]
    assert signer.spill(ids, keys, texts, writers) == [True, False, True]
    for w in writers:
        w.close()
    sketches = dict(sketch_record(r) for b in range(4) for r in spills[1].read(b))
    alone = {"a": signer.sign(texts[:1])[0], "c\u00e9": signer.sign(texts[2:])[0]}
    assert sketches == {doc_id: s.sketch for doc_id, s in alone.items()}
    sigs = {doc_id: s.signature for doc_id, s in alone.items()}
    lsh = signer.config.lsh
    entries = sorted(band_record(r) for b in range(4) for r in spills[0].read(b))
    assert entries == sorted((band, keys[i], ids[i]) for i in (0, 2)
                             for band in band_keys(sigs[ids[i]], lsh.bands, lsh.rows))
    assert all(band_record(r)[0] and band_bucket(band_record(r)[0], 4) == b
               for b in range(4) for r in spills[0].read(b))


def test_plain_refs_equal_the_full_loop_for_a_block(tmp_path):
    """The scan's loop without filters/partitions/ranges gives the refs of its full
    loop, the default-id flag included (a record given ``<path>:<line>``)."""
    from transforms.core.hashing import text_keys
    path = str(tmp_path / "in.jsonl")
    fn = _ScanFile("id", "text", ScanSpec(), Bounds())
    fn.setup()
    block = [(1, ("a", "one", b'{"id":"a","text":"one"}', False)),
             (2, (f"{path}:2", "two", b'{"text":"two","id":"' + f"{path}:2".encode() + b'"}',
                  False)),
             (3, (f"{path}:2", "two", b'{"text":"two"}', False)),  # another line's default id
             (12, (f"{path}:1", "x", b'{"text":"x"}', False)),
             (13, ("17", "y", b'{"id":17,"text":"y"}', True))]   # an integer id
    keys = text_keys([text for _, (_, text, _, _) in block])
    signed = [False, True, False, False, False]
    plain = fn._plain_refs(4, path, block, keys, signed)
    full = list(_consume(fn._full_refs(4, path, block, keys, signed, None)))
    assert plain == full
    assert [type(r) for r in plain] == [type(r) for r in full]
    assert [r.reparse for r in plain] == [False, True, False, False, False]
    assert [r.int_id for r in plain] == [False, False, False, False, True]


def _consume(generator):
    """The return value of a generator that yields nothing."""
    try:
        while True:
            next(generator)
    except StopIteration as stop:
        return stop.value


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(
    st.one_of(st.integers(-10 ** 20, 10 ** 20).map(str), st.sampled_from(["007", "-0", "a", ""])),
    st.binary(max_size=4).filter(lambda b: b"\n" not in b)), min_size=1, max_size=12),
    max_size=5), st.booleans())
def test_shard_lines_merge_the_runs_in_the_store_order(runs, by_order):
    """A shard's lines from its runs (each sorted by ``_write_runs``; markers None
    among them) come out in ``shard_doc_order``, as the sort of all their documents."""
    import tempfile
    from transforms.storage.spill import _write_runs, shard_doc_order, shard_lines
    with tempfile.TemporaryDirectory() as spill:
        written, docs = [None], []
        for n, run in enumerate(runs):
            run = [((len(doc_id) % 3,), doc_id, line) for doc_id, line in run]
            docs += run if by_order else [(doc_id, line) for _, doc_id, line in run]
            written += [r for _, r in _write_runs({("", 0, 1): run}, spill, f"f{n}", by_order)]
            written.append(None)
        assert shard_lines(written) == [d[-1] for d in sorted(docs, key=shard_doc_order)]
