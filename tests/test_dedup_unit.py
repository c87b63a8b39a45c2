from hypothesis import given, strategies as st

from transforms.reduction.dedup import (IdKey, _EmitWinners, conflicting_ids, dedup_buckets, rank,
                              winners)
from transforms.core.hashing import text_key
from transforms.core.ids import id_order_key, show_ids
from transforms.core.records import pack
from transforms.processing.refs import DocRef


def ref(doc_id, text, line=1, file=0):
    return DocRef(doc_id, text_key(text), file, line, 10, False, False, b"", b"")


def test_winners_keep_smallest_id_per_text_and_count_copies():
    refs = [ref(i, "x") for i in ("m", "c", "x", "a")] + [ref("b", "y")]
    best, seen = winners(iter(refs))
    assert seen == 5
    assert {k: r.id for k, r in best.items()} == {text_key("x"): "a", text_key("y"): "b"}


def test_same_id_twice_is_ordered_by_file_and_line():
    best, _ = winners([ref("a", "x", line=9), ref("a", "x", line=3, file=1),
                       ref("a", "x", line=5)])
    assert rank(best[text_key("x")]) == (id_order_key("a"), 0, 5)


docs = st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from(["x", "X ", "y", "z"])),
                max_size=30)


@given(docs, st.integers(1, 4))
def test_emit_winners_any_batching_gives_the_plain_definition(pairs, parts):
    """Kept = min id per normalised text; removed = every other copy, named with its
    winner; whatever the batching, and reading the group as a stream."""
    refs = [ref(i, t, line=n) for n, (i, t) in enumerate(pairs)]
    batches = [refs[i::parts] for i in range(parts)]
    fn = _EmitWinners(with_removed=True, batch_bytes=120)
    out = list(fn.process((0, batches)))
    kept = [r for o in out if isinstance(o, list) for r in o]
    assert all(sum(len(r.id) + 48 for r in o) <= 120 or len(o) == 1
               for o in out if isinstance(o, list))
    removed = [o.value for o in out if not isinstance(o, list)]
    expected = {}
    for r in refs:
        expected.setdefault(r.key, []).append(r)
    want = {k: min(rs, key=rank) for k, rs in expected.items()}
    assert sorted(map(rank, kept)) == sorted(map(rank, want.values()))
    assert sorted((d.id, d.kept) for d in removed) == sorted(
        (r.id, want[r.key].id) for r in refs if rank(r) != rank(want[r.key]))


def test_conflicting_ids_are_ids_with_several_texts():
    pairs = [IdKey("x", b"k1"), IdKey("y", b"k2"), IdKey("x", b"k1"), IdKey("y", b"k3"),
             IdKey("z", b"k4")]
    assert conflicting_ids(iter(pairs)) == ["y"]


def test_dedup_buckets_scale_with_input():
    assert dedup_buckets(0) == 16
    assert dedup_buckets(10 << 30) == 160
    assert dedup_buckets(1 << 50) == 65536


@given(docs, st.integers(1, 4), st.integers(1, 7))
def test_key_into_buckets_packs_and_emit_winners_reads_packed_batches(pairs, parts, buckets):
    """The grouping values are Packed lists; unpacked they are the refs that went in,
    and winners read from packed batches equal winners from plain lists."""
    from transforms.core.records import Packed, unpack
    from transforms.reduction.dedup import IDS_TAG, _KeyIntoBuckets
    refs = [ref(i, t, line=n) for n, (i, t) in enumerate(pairs)]
    out = list(_KeyIntoBuckets(buckets).process(refs))
    main = [o for o in out if not hasattr(o, "tag")]
    ids = [o.value for o in out if getattr(o, "tag", None) == IDS_TAG]
    assert all(isinstance(v, Packed) for _, v in main + ids)
    assert sorted(r for _, v in main for r in unpack(v)) == sorted(refs)
    assert sorted(k for _, v in ids for k in unpack(v)) == sorted(IdKey(r.id, r.key) for r in refs)
    batches = [refs[i::parts] for i in range(parts)]
    fn = _EmitWinners(with_removed=True, batch_bytes=1 << 20)
    plain = list(fn.process((0, batches)))
    packed = list(fn.process((0, [pack(b) for b in batches])))
    assert [o if isinstance(o, list) else o.value for o in plain] == \
        [o if isinstance(o, list) else o.value for o in packed]


def test_pack_round_trips_records_and_passes_plain_lists():
    from transforms.core.records import Pick, unpack
    picks = [Pick(3, 10, False, (1, 2), "a", ("", 0, 2)), Pick(1, 5, True, (0,), "b", ("p", 1, 3))]
    assert unpack(pack(picks)) == picks
    assert unpack(picks) is picks
    assert unpack(pack([])) == []


def test_unpack_takes_a_packed_batch_in_any_class_with_its_fields():
    """A worker's RowCoder may decode Packed into a schema-generated class."""
    from typing import NamedTuple
    import pytest
    from apache_beam import coders
    from transforms.core.records import Packed, unpack
    refs = [ref("a", "x"), ref("b", "y")]

    class Generated(NamedTuple):
        blob: bytes

    assert unpack(Generated(pack(refs).blob)) == refs
    coder = coders.registry.get_coder(Packed)
    assert unpack(coder.decode(coder.encode(pack(refs)))) == refs
    with pytest.raises(TypeError, match="Packed or a list"):
        unpack(("not", "a", "batch"))


_values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False), st.text(max_size=5), st.binary(max_size=5),
                    st.tuples(st.integers(0, 9), st.text(max_size=3)))
_doc_refs = st.builds(DocRef, st.text(max_size=6), st.binary(min_size=16, max_size=16),
                      st.integers(0, 9), st.integers(1, 99), st.integers(1, 999),
                      st.booleans(), st.booleans(), st.binary(max_size=4), st.binary(max_size=4),
                      st.booleans(), st.text(max_size=3), st.floats(0, 1))


@given(st.lists(_doc_refs, max_size=30), st.lists(_values, max_size=10),
       st.lists(st.one_of(_doc_refs, _values), max_size=10))
def test_pack_by_columns_gives_back_equal_records_of_the_same_classes(refs, values, mixed):
    """``pack`` stores NamedTuples of one class by columns (nested ones too: a
    ShardRecord's DocRef payloads); anything else (plain values, mixed classes)
    as rows.  ``unpack`` gives back equal records of the same classes."""
    from transforms.core.records import _COLUMNS, unpack
    from transforms.storage.sharding import ShardRecord, hash_order
    import pickle
    records = [ShardRecord("", hash_order(r.id), r.id, r) for r in refs]
    for batch in (refs, records, values, mixed, [ShardRecord("p", (1,), "a", v) for v in values]):
        back = unpack(pack(batch))
        assert back == batch
        assert [type(x) for x in back] == [type(x) for x in batch]
        assert [type(x[3]) for x in back if isinstance(x, ShardRecord)] == \
            [type(x[3]) for x in batch if isinstance(x, ShardRecord)]
    if records:
        encoded = pickle.loads(pack(records).blob)
        assert encoded[0] == _COLUMNS and encoded[1] is ShardRecord
        assert encoded[3][3][0] == _COLUMNS and encoded[3][3][1] is DocRef  # payloads as columns


def test_tune_gc_freezes_and_raises_the_thresholds_once_per_process():
    import gc
    from transforms.core import worker_gc
    saved, was = gc.get_threshold(), worker_gc._tuned
    try:
        worker_gc._tuned = False
        assert worker_gc.tune_gc() is True
        assert gc.get_threshold() == worker_gc.THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert worker_gc.tune_gc() is False
    finally:
        gc.set_threshold(*saved)
        worker_gc._tuned = was


def test_tune_malloc_sets_glibcs_thresholds_and_leaves_other_c_libraries_alone(monkeypatch):
    """On glibc every mallopt call is taken (True); a C library without mallopt
    (musl, macOS) is left alone (False), never an error."""
    import ctypes
    import platform
    from transforms.core import worker_gc
    if platform.libc_ver()[0] == "glibc":
        assert worker_gc.tune_malloc() is True
        assert worker_gc.tune_malloc() is True   # idempotent

    class NoMallopt:
        def __init__(self, _name):
            pass
    monkeypatch.setattr(ctypes, "CDLL", NoMallopt)
    assert worker_gc.tune_malloc() is False


@given(st.lists(st.tuples(st.text(max_size=8), st.binary(min_size=1, max_size=20)), max_size=40),
       st.integers(1, 70000))
def test_bucket_lists_equal_the_per_ref_bucket_functions(pairs, num_buckets):
    """The batch forms (numpy for 16-byte keys) give the per-ref buckets, for any key."""
    from transforms.reduction.dedup import bucket_of_id, bucket_of_key, id_buckets, key_buckets
    for keyed in (pairs, [(i, text_key(i)) for i, _ in pairs]):
        refs = [DocRef(i, k, 0, 1, 1, False, False, b"", b"") for i, k in keyed]
        assert key_buckets(refs, num_buckets) == [bucket_of_key(r.key, num_buckets) for r in refs]
        assert id_buckets(refs, num_buckets) == [bucket_of_id(r.id, num_buckets) for r in refs]


def test_pack_keeps_rows_of_a_class_pickle_cannot_name():
    """Beam's schema-generated NamedTuple classes (what a RowCoder decodes into on
    the Flink and Spark clusters) cannot be pickled by name: such lists are packed
    as rows (their instances pickle by their own __reduce__), not by columns."""
    import pickle
    from typing import NamedTuple

    from transforms.core.records import pack, unpack

    class Local(NamedTuple):   # <locals> in its qualified name: not importable
        a: int
        b: str

    Local.__reduce__ = lambda self: (tuple, (tuple(self),))
    rows = [Local(1, "x"), Local(2, "y")]
    assert unpack(pickle.loads(pickle.dumps(pack(rows)))) == [(1, "x"), (2, "y")]


def test_show_ids_writes_ids_as_json_gives_them():
    """Messages name ids as written in the input: an integer (or its canonical decimal
    string: the same id) bare, any other string quoted; never a Python list."""
    assert show_ids(["7"]) == "7"
    assert show_ids([7, "-3", "007", "a b", "-0"]) == '7, -3, "007", "a b", "-0"'
    assert show_ids(['say "hi"', "日本"]) == '"say \\"hi\\"", "日本"'
    assert show_ids([str(n) for n in range(12)], limit=3) == "0, 1, 2 and 9 more"
