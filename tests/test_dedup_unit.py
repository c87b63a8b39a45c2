from hypothesis import given, strategies as st

from transforms.dedup import DedupBucket, IdTexts, dedup_buckets, merge_entry
from transforms.hashing import text_key


def entry(doc_id, line=b"", copies=1, losers=()):
    return [doc_id, line, copies, list(losers)]


def test_merge_entry_keeps_smallest_id_and_collects_losers():
    table = {}
    for doc_id in ("m", "c", "x", "a"):
        merge_entry(table, b"k", entry(doc_id))
    doc_id, _, copies, losers = table[b"k"]
    assert (doc_id, copies, sorted(losers)) == ("a", 4, ["c", "m", "x"])


def test_merge_entry_without_audit():
    table = {}
    merge_entry(table, b"k", ["b", b"", 2, None])
    merge_entry(table, b"k", ["a", b"", 3, None])
    assert table == {b"k": ["a", b"", 5, None]}


docs = st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from(["x", "X ", "y", "z"])),
                max_size=30)


@given(docs, st.integers(1, 4))
def test_dedup_bucket_any_split_gives_the_same_winners(pairs, parts):
    """Combining in any grouping equals the plain definition: min id per normalised text."""
    fn = DedupBucket()
    chunks = [pairs[i::parts] for i in range(parts)]
    accs = [fn.add_input(fn.create_accumulator(),
                         [(text_key(t), entry(i, t.encode())) for i, t in chunk])
            for chunk in chunks]
    merged = fn.extract_output(fn.merge_accumulators(accs))
    expected = {}
    for doc_id, text in pairs:
        expected.setdefault(text_key(text), []).append(doc_id)
    assert {k: (v[0], v[2]) for k, v in merged.items()} == {
        k: (min(ids), len(ids)) for k, ids in expected.items()}
    for k, v in merged.items():
        assert sorted([v[0]] + v[3]) == sorted(expected[k])


def test_id_texts_flags_ids_with_several_texts():
    fn = IdTexts()
    a = fn.add_input(fn.create_accumulator(), [("x", b"k1"), ("y", b"k2"), ("x", b"k1")])
    b = fn.add_input(fn.create_accumulator(), [("y", b"k3"), ("z", b"k4")])
    assert fn.extract_output(fn.merge_accumulators([a, b])) == ["y"]


def test_dedup_buckets_scale_with_input():
    assert dedup_buckets(0) == 16
    assert dedup_buckets(10 << 30) == 160
    assert dedup_buckets(1 << 50) == 65536
