"""Pass 2's spill runs (``transforms.storage.spill``): lz4 frames read back only when
they hold what their ``Run`` says, and deleted shard by shard by the store's writer
(``_WriteShard``), whose retried bundles find the shard's sidecar instead."""
import os
import re
import tempfile
from unittest import mock

import apache_beam as beam
import lz4.frame
import orjson
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.codecs import bytes_codec
from transforms.storage import parquet_shards, spill, store
from transforms.storage.commit import SPILL_PREFIX
from transforms.storage.placement import Placement, Root
from transforms.storage.spill import (InputChanged, RUN_SUFFIX, WRITTEN_SUFFIX, _write_runs,
                                      delete_spill, read_written, run_lines, shard_doc_order,
                                      written_path)
from transforms.storage.write_records import WriteRecords

IDS = st.one_of(st.integers(-10 ** 20, 10 ** 20).map(str),
                st.sampled_from(["007", "-0", "a", "", "é"]))
LINES = st.binary(max_size=40).filter(lambda b: b"\n" not in b)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(IDS, LINES), min_size=1, max_size=30), st.booleans())
def test_a_run_is_one_lz4_frame_of_its_sorted_lines(docs, by_order):
    """``_write_runs`` -> one lz4 frame whose stored content size is the run's
    ``raw_bytes``; ``run_lines`` gives back its lines in the store's order."""
    docs = [((len(doc_id) % 3,), doc_id, line) for doc_id, line in docs]
    with tempfile.TemporaryDirectory() as folder:
        [(shard, run)] = list(_write_runs({("", 0, 1): docs}, folder, "f0", by_order))
        assert shard == ("", 0, 1) and run.path.endswith(RUN_SUFFIX)
        expected = sorted(docs if by_order else [(i, line) for _, i, line in docs],
                          key=shard_doc_order)
        data = open(run.path, "rb").read()
        assert lz4.frame.get_frame_info(data)["content_size"] == run.raw_bytes
        assert lz4.frame.decompress(data) == b"\n".join(d[-1] for d in expected)
        assert run_lines(run) == [d[-1] for d in expected]
        assert run.ids == [d[-2] for d in expected]
        assert run.orders == ([d[0] for d in expected] if by_order else [])


def _run(folder, lines=(b'{"id": "a"}', b'{"id": "b"}', b'{"id": "c"}')):
    docs = [((), orjson.loads(line)["id"], line) for line in lines]
    [(_, run)] = list(_write_runs({("", 0, 1): docs}, str(folder), "f0", False))
    return run


DAMAGES = {
    "other_raw_bytes": lambda run, data: (run._replace(raw_bytes=run.raw_bytes + 1), data),
    "fewer_ids": lambda run, data: (run._replace(ids=run.ids[:-1]), data),
    "more_ids": lambda run, data: (run._replace(ids=run.ids + ["d"]), data),
    "same_size_other_lines": lambda run, data: (
        run, lz4.frame.compress(lz4.frame.decompress(data).replace(b"\n", b" "),
                                store_size=True)),
    "truncated": lambda run, data: (run, data[:-3]),
    "trailing_bytes": lambda run, data: (run, data + b"xx"),
    "two_frames": lambda run, data: (run, data + data),
    "no_content_size": lambda run, data: (
        run, lz4.frame.compress(lz4.frame.decompress(data), store_size=False)),
    "zstd_run": lambda run, data: (
        run, zstandard.ZstdCompressor(level=1, write_content_size=True).compress(
            lz4.frame.decompress(data))),
    "empty_file": lambda run, data: (run, b""),
    "not_compressed": lambda run, data: (run, lz4.frame.decompress(data)),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_run_that_differs_from_its_record_is_input_changed(tmp_path, damage):
    """Every way a run file can disagree with its ``Run`` (sizes, line count, not
    exactly one lz4 frame with its content size) is ``InputChanged`` naming the file."""
    run = _run(tmp_path)
    assert run_lines(run) == [b'{"id": "a"}', b'{"id": "b"}', b'{"id": "c"}']
    data = open(run.path, "rb").read()
    run, data = DAMAGES[damage](run, data)
    with open(run.path, "wb") as f:
        f.write(data)
    with pytest.raises(InputChanged, match=os.path.basename(run.path)):
        run_lines(run)


class _Counter:
    def __init__(self):
        self.value = 0

    def inc(self, n=1):
        self.value += n


def _writer(roots, shard_format="jsonl", spill_dir=None, replication=2):
    placement = Placement([Root(store.normalise_root(r)) for r in roots], replication)
    fn = store._WriteShard("ds", placement, bytes_codec("zstd:level=3"), shard_format,
                           ("id", "text"), spill_dir=spill_dir)
    for name in ("shards", "records", "raw", "stored", "replicas"):
        setattr(fn, name, _Counter())
    return fn


def _counters(fn):
    return {name: getattr(fn, name).value
            for name in ("shards", "records", "raw", "stored", "replicas")}


def _runs(spill_dir, shard=("", 0, 1)):
    """Two runs (two input files) and a marker for ``shard``: -> (runs, lines sorted)."""
    files = [[b'{"id": "b", "text": "x"}', b'{"id": 3, "text": "y"}'],
             [b'{"id": "a", "text": "z"}', b'{"id": 10, "text": "w"}']]
    runs = [None]
    for n, lines in enumerate(files):
        docs = [((), str(orjson.loads(line)["id"]), line) for line in lines]
        runs += [r for _, r in _write_runs({shard: docs}, spill_dir, f"f{n}", False)]
    return runs, [files[0][1], files[1][1], files[1][0], files[0][0]]


@pytest.mark.parametrize("shard_format", ["jsonl", "parquet"])
def test_the_writer_deletes_a_shards_runs_and_a_retry_yields_its_sidecar(
        tmp_path, monkeypatch, shard_format):
    """The first attempt writes the shard on both roots, records its entry in a
    sidecar and deletes the shard's runs; a retried bundle (the same runs again)
    yields the same entry from the sidecar, counts as the first did, reads no run."""
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    spill_dir = str(tmp_path / "spill")
    runs, lines = _runs(spill_dir)
    fields = parquet_shards.run_schema(lines) if shard_format == "parquet" else None
    first = _writer(roots, shard_format, spill_dir)
    [entry] = list(first.process((("", 0, 1), runs), {}, fields))
    assert entry["records"] == 4 and sorted(entry["replicas"]) == [0, 1]
    for root in roots:   # the shard's bytes, as the manifest will say
        stored = open(os.path.join(root, "ds", entry["name"]), "rb").read()
        assert len(stored) == entry["stored_bytes"]
        manifest = {"kind": "text", "shard_format": shard_format,
                    "codec": bytes_codec("zstd:level=3").describe(),
                    **({"parquet": parquet_shards.store_schema(fields, ("id", "text"))}
                       if fields else {})}
        decoded = store.decode_payload(manifest, entry, stored).splitlines()
        assert [orjson.loads(line) for line in decoded] == [orjson.loads(x) for x in lines]
    # the runs are gone, the sidecar holds the entry
    assert sorted(os.listdir(spill_dir)) == ["-shard00000-of-00001" + WRITTEN_SUFFIX]
    assert read_written(spill_dir, ("", 0, 1)) == entry
    counted = _counters(first)
    assert counted == {"shards": 1, "records": 4, "raw": entry["raw_bytes"],
                       "stored": entry["stored_bytes"], "replicas": 2}

    def no_read(*_):
        raise AssertionError("a retried writer read a run")
    monkeypatch.setattr(spill, "run_lines", no_read)
    monkeypatch.setattr(store, "shard_lines", no_read)
    retry = _writer(roots, shard_format, spill_dir)
    assert list(retry.process((("", 0, 1), runs), {}, fields)) == [entry]
    assert _counters(retry) == counted
    delete_spill(spill_dir)   # runs already gone: fine
    assert not os.path.exists(spill_dir)
    delete_spill(spill_dir)   # the folder already gone: fine too


def test_a_retry_after_the_sidecar_but_before_the_deletion_deletes_the_runs(tmp_path):
    """An attempt that stopped between the sidecar and the deletion left the runs:
    the retry yields the entry and deletes them."""
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    spill_dir = str(tmp_path / "spill")
    runs, _ = _runs(spill_dir)
    [entry] = list(_writer(roots).process((("", 0, 1), runs), {}))   # no spill_dir: kept
    assert len([n for n in os.listdir(spill_dir) if n.endswith(RUN_SUFFIX)]) == 2
    spill.write_written(spill_dir, ("", 0, 1), entry, runs)

    def no_read(*_):
        raise AssertionError("the retry read a run")
    with mock.patch.object(store, "shard_lines", no_read):
        assert list(_writer(roots, spill_dir=spill_dir).process((("", 0, 1), runs), {})) \
            == [entry]
    assert os.listdir(spill_dir) == [os.path.basename(written_path(spill_dir, ("", 0, 1)))]


@pytest.mark.parametrize("fault", ["missing", "shorter", "folder"])
@pytest.mark.parametrize("replica", [0, 1])
def test_a_sidecar_whose_replica_is_gone_fails_naming_the_shard(tmp_path, fault, replica):
    """The runs are deleted: a replica the sidecar promises that is not a file of its
    stored size cannot be rewritten, and the writer fails naming the shard and file."""
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    spill_dir = str(tmp_path / "spill")
    runs, _ = _runs(spill_dir, ("p1", 2, 3))
    [entry] = list(_writer(roots, spill_dir=spill_dir).process((("p1", 2, 3), runs), {}))
    assert entry["partition"] == "p1" and entry["index"] == 2
    path = os.path.join(roots[replica], "ds", entry["name"])
    if fault == "shorter":
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[:-1])
    else:
        os.remove(path)
        if fault == "folder":
            os.mkdir(path)
    retry = _writer(roots, spill_dir=spill_dir)
    with pytest.raises(store.StoreError, match=f"shard {entry['name']}: its replica {path}"):
        list(retry.process((("p1", 2, 3), runs), {}))
    assert _counters(retry)["shards"] == 0


def test_a_written_store_leaves_no_run_in_its_spill(tmp_path, make_pipeline):
    """End to end (WriteRecords, the same writer as prepare_corpus's): a commit stopped
    by a precondition leaves the spill folder as the shard writers left it: one sidecar
    per shard, no run; the shards are discarded, nothing is committed."""
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    records = [{"id": n, "text": f"doc {n}"} for n in range(200)]
    with pytest.raises(Exception, match="not writing the manifest: stop here"):
        with make_pipeline() as p:
            gate = p | "Gate" >> beam.Create(["stop here"])
            (p | beam.Create(records)
             | WriteRecords(roots, "ds", 2, num_shards=5, batch_bytes=512,
                            preconditions=[gate]))
    [spill_dir] = [os.path.join(roots[0], "ds", n) for n in os.listdir(os.path.join(roots[0], "ds"))
                   if n.startswith(SPILL_PREFIX)]
    names = sorted(os.listdir(spill_dir))
    assert names == sorted(os.path.basename(written_path(spill_dir, ("", i, 5)))
                           for i in range(5))
    assert sum(read_written(spill_dir, ("", i, 5))["records"] for i in range(5)) == 200
    for root in roots:
        assert not [n for n in os.listdir(os.path.join(root, "ds")) if n.startswith("shard-")]


def test_a_sidecar_of_other_runs_is_ignored_and_the_shard_written_from_its_runs(tmp_path):
    """The same transform object run again (the same spill folder) after a failed run
    finds the earlier run's sidecars: they record other runs, so each shard is written
    from its own runs, not taken from the sidecar."""
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    spill_dir = str(tmp_path / "spill")
    runs, _ = _runs(spill_dir)
    [old] = list(_writer(roots, spill_dir=spill_dir).process((("", 0, 1), runs), {}))
    docs = [((), "z", b'{"id": "z", "text": "new"}')]
    new_runs = [None] + [r for _, r in _write_runs({("", 0, 1): docs}, spill_dir, "g0", False)]
    [entry] = list(_writer(roots, spill_dir=spill_dir).process((("", 0, 1), new_runs), {}))
    assert entry["records"] == 1 and entry["name"] != old["name"]
    assert read_written(spill_dir, ("", 0, 1)) == entry


@pytest.mark.parametrize("damage", ["replica gone", "unreadable sidecar", "no digest"])
def test_a_sidecar_that_cannot_be_trusted_is_ignored_while_the_runs_are_there(tmp_path, damage):
    """Replicas gone (their generation discarded) or a sidecar cut short: with every run
    still there the shard is written again; with the runs gone the error names the file."""
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    spill_dir = str(tmp_path / "spill")
    runs, _ = _runs(spill_dir)
    [entry] = list(_writer(roots).process((("", 0, 1), runs), {}))   # runs kept
    sidecar = written_path(spill_dir, ("", 0, 1))
    spill.write_written(spill_dir, ("", 0, 1), entry, None if damage == "no digest" else runs)
    if damage == "replica gone":
        os.remove(os.path.join(roots[1], "ds", entry["name"]))
    elif damage == "unreadable sidecar":
        with open(sidecar, "wb") as f:
            f.write(b'{"entry": {"na')
    assert list(_writer(roots, spill_dir=spill_dir).process((("", 0, 1), runs), {})) == [entry]
    assert os.path.getsize(os.path.join(roots[1], "ds", entry["name"])) == entry["stored_bytes"]
    assert os.listdir(spill_dir) == [os.path.basename(sidecar)]   # runs deleted now
    # the same damage again, the runs gone: the writer fails naming the file
    if damage == "replica gone":
        os.remove(os.path.join(roots[1], "ds", entry["name"]))
        expected = f"its replica {os.path.join(roots[1], 'ds', entry['name'])}"
    elif damage == "unreadable sidecar":
        with open(sidecar, "wb") as f:
            f.write(b'{"entry": {"na')
        expected = f"{sidecar}: not a shard writer's record"
    else:
        spill.write_written(spill_dir, ("", 0, 1), entry, None)
        expected = f"{sidecar}: records other runs than this shard's"
    with pytest.raises(store.StoreError, match=re.escape(expected) + ".*runs are already deleted"):
        list(_writer(roots, spill_dir=spill_dir).process((("", 0, 1), runs), {}))
