"""``Packed`` batches read and cut by columns (``records.Columns``, ``pack_columns``)
give exactly what unpacking them record by record gives: in the shard plan
(``sharding._bucket_bytes``, ``_in_cut_buckets``, ``_assign_batch``), pass 2's picks
(``refs._PicksByUnit``), exact dedup's id keys and the hash order of kept refs."""
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.prepare import _hash_records
from transforms.processing.refs import _PicksByUnit
from transforms.core.records import (
    DocRef, Packed, Pick, ScannedRange, pack, pack_columns, unpack, unpack_columns)
from transforms.storage.sharding import (
    ShardRecord, _assign_batch, _bucket_bytes, _in_cut_buckets, hash_orders, line_size,
    ref_size)

_refs = st.lists(st.builds(
    DocRef, id=st.text(max_size=6), key=st.binary(min_size=16, max_size=16),
    file=st.integers(0, 3), line=st.integers(1, 60), size=st.integers(1, 500),
    reparse=st.booleans(), signed=st.booleans(), partition_value=st.just(b""),
    range_key=st.just(b""), redacted=st.booleans(), lang=st.sampled_from(["", "en"]),
    lang_score=st.sampled_from([0.0, 0.5])), max_size=40)


def _records(refs, partitions=("",)):
    orders = hash_orders([r.id for r in refs])
    return [ShardRecord(partitions[i % len(partitions)], order, ref.id, ref)
            for i, (order, ref) in enumerate(zip(orders, refs))]


@given(_refs, st.lists(st.integers(0, 39), max_size=50))
def test_columns_take_and_pack_columns_equal_the_records(refs, picked):
    records = _records(refs, ("", "p"))
    columns = unpack_columns(pack(records))
    if not records:
        assert columns is None    # an empty batch has no class: row form
        return
    assert columns.cls is ShardRecord and len(columns) == len(records)
    assert columns["id"] == [r.id for r in records]
    assert columns["payload"] == refs
    assert columns.nested("payload")["line"] == [r.line for r in refs]
    assert columns.nested("id") is None
    indices = [i % len(records) for i in picked]
    assert unpack(columns.take(indices)) == [records[i] for i in indices]
    rebuilt = pack_columns(ShardRecord, [[r.partition for r in records],
                                         [r.order for r in records], columns["id"], refs])
    assert unpack(rebuilt) == records
    assert unpack_columns(rebuilt).nested("payload").cls is DocRef
    assert unpack_columns(records) is None and unpack_columns(pack([1, 2])) is None


@given(_refs, st.integers(1, 3000))
@settings(max_examples=60, deadline=None)
def test_shard_plan_steps_by_columns_equal_by_records(refs, cut_every):
    records = _records(refs, ("", "p"))
    for size_of, batch in ((ref_size, records),
                           (line_size, [r._replace(payload=b"x" * r.payload.size)
                                        for r in records])):
        packed = pack(batch)
        assert sorted(_bucket_bytes(packed, size_of)) == sorted(_bucket_bytes(batch, size_of))
        plans = {p: {"cuts": {r.order[0] for r in batch[::3]}} for p in ("", "p")}
        assert (_in_cut_buckets(packed, plans, size_of)
                == _in_cut_buckets(batch, plans, size_of))
        keys = sorted(r.order + (r.id,) for r in batch)
        cuts = {"": keys[::max(1, cut_every // 100)][1:], "p": keys[::7][1:]}
        by_columns = [(k, unpack(v)) for k, v in _assign_batch(packed, cuts)]
        by_records = [(k, unpack(v)) for k, v in _assign_batch(batch, cuts)]
        assert by_columns == by_records
        assert sorted(r for _, rs in by_columns for r in rs) == sorted(batch)


def _picks(outputs):
    return sorted((unit, unpack(v)) for unit, v in outputs)


@given(_refs, st.booleans())
def test_picks_by_columns_equal_picks_by_records(refs, split):
    records = _records(refs)
    shard = ("", 1, 4)
    ranges = ([ScannedRange(1, 0, 100, 1, 20, "d"), ScannedRange(1, 100, 200, 21, 40, "d"),
               ScannedRange(1, 200, 300, 41, 100, "d")] if split else [])
    fn = _PicksByUnit()
    fn.start_bundle()
    packed = _picks(fn.process((shard, pack(records)), ranges))
    fn.start_bundle()
    plain = _picks(fn.process((shard, records), ranges))
    assert packed == plain
    assert all(isinstance(v, Packed) for _, v in fn.process((shard, pack(records)), ranges))
    want = sorted(Pick(r.line, r.size, r.reparse, o.order, r.id, shard, r.redacted, r.lang,
                       r.lang_score) for o, r in zip(records, refs))
    assert sorted(p for _, ps in packed for p in ps) == want


@given(_refs)
def test_hash_records_pack_the_shard_records_of_the_kept_refs(refs):
    assert unpack(_hash_records(refs)) == _records(refs)


@given(st.lists(st.integers(0, 5), min_size=2, max_size=2).filter(lambda n: n[0] != n[1]))
def test_pack_columns_rejects_columns_of_unequal_lengths(lengths):
    """Columns of unequal lengths are refused, naming the lengths (the short one was
    taken for the count before, or the batch packed silently wrong)."""
    import pytest
    from transforms.reduction.dedup import IdKey
    columns = [["a"] * lengths[0], [b"k"] * lengths[1]]
    with pytest.raises(ValueError, match=rf"unequal lengths \[{lengths[0]}, {lengths[1]}\]"):
        pack_columns(IdKey, columns)


def test_pack_columns_rejects_a_wrong_number_of_columns():
    import pytest
    from transforms.reduction.dedup import IdKey
    with pytest.raises(ValueError, match=r"1 column\(s\) for the 2 field\(s\) of IdKey"):
        pack_columns(IdKey, [["a"]])
    assert unpack(pack_columns(IdKey, [["a", "b"], [b"k", b"l"]])) == [
        IdKey("a", b"k"), IdKey("b", b"l")]


@given(_refs)
def test_plain_annotated_columns_skip_the_type_scan_and_pack_the_same_bytes(refs):
    """Columns of fields annotated str/bytes/int/float/bool are stored as rows without
    the scan of their values' types: the bytes are those of the scan (which finds no
    records there), for refs, shard records (nested refs) and picks alike."""
    import pickle

    from transforms.core import records
    picks = [Pick(r.line, r.size, r.reparse, (i,), r.id, ("", 0, 1)) for i, r in enumerate(refs)]
    for batch in (refs, _records(refs), picks):
        fast = pack(batch).blob
        saved = dict(records._PLAIN_FIELDS)
        try:   # every field scanned, as before the shortcut
            records._PLAIN_FIELDS.clear()
            records._PLAIN_FIELDS.update({cls: (False,) * len(cls._fields)
                                          for cls in (DocRef, ShardRecord, Pick)})
            scanned = pack(batch).blob
        finally:
            records._PLAIN_FIELDS.clear()
            records._PLAIN_FIELDS.update(saved)
        assert fast == scanned
        assert unpack(Packed(fast)) == batch
        assert pickle.loads(fast) == pickle.loads(scanned)


def test_a_value_of_another_type_in_a_plain_field_still_round_trips():
    """The shortcut trusts annotations only to skip the scan: a record, a list or None
    in a field annotated ``str`` is pickled whole and comes back equal."""
    inner = DocRef("x", b"k" * 16, 0, 1, 2, False, False, b"", b"")
    odd = [DocRef(inner, b"k" * 16, 0, 1, 2, False, False, b"", b""),
           DocRef(["a", 1], b"k" * 16, None, 1, 2, False, False, b"", b"")]
    assert unpack(pack(odd)) == odd
    cols = [list(c) for c in zip(*odd)]
    assert unpack(pack_columns(DocRef, cols)) == odd
