from hypothesis import given, strategies as st

from transforms.reduction.dedup import (IdKey, _EmitWinners, conflicting_ids, dedup_buckets, rank,
                              winners)
from transforms.core.hashing import text_key
from transforms.core.ids import id_order_key
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
    assert sorted((d["removed"], d["kept"]) for d in removed) == sorted(
        (r.id, want[r.key].id) for r in refs if rank(r) != rank(want[r.key]))


def test_conflicting_ids_are_ids_with_several_texts():
    pairs = [IdKey("x", b"k1"), IdKey("y", b"k2"), IdKey("x", b"k1"), IdKey("y", b"k3"),
             IdKey("z", b"k4")]
    assert conflicting_ids(iter(pairs)) == ["y"]


def test_dedup_buckets_scale_with_input():
    assert dedup_buckets(0) == 16
    assert dedup_buckets(10 << 30) == 160
    assert dedup_buckets(1 << 50) == 65536
