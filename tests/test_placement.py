import pytest
from hypothesis import given, strategies as st

from transforms.storage.placement import Root, parse_roots, place


def roots(n):
    return [Root(f"/mnt/r{i}") for i in range(n)]


def test_parse_roots_with_weights_and_errors():
    assert parse_roots("/a=2, /b ,gs://c/x=0.5") == [
        Root("/a", 2.0), Root("/b", 1.0), Root("gs://c/x", 0.5)]
    with pytest.raises(ValueError, match="more than once"):
        parse_roots("/a,/a")
    with pytest.raises(ValueError, match="positive"):
        parse_roots("/a=0")
    with pytest.raises(ValueError, match="no root"):
        parse_roots("  ")
    for spec, item in ((" , ", 1), (",/b", 1), ("/a,,/b", 2), ("/a,", 2)):
        with pytest.raises(ValueError, match=f"empty item \\(item {item} of"):
            parse_roots(spec)   # e.g. "$ROOT_A,/mnt/b" with ROOT_A unset: never R=1 quietly


def test_parse_roots_expands_a_leading_tilde(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    assert parse_roots("~/a,~/b=2,gs://x/~y") == [
        Root("/home/someone/a"), Root("/home/someone/b", 2.0), Root("gs://x/~y")]


@given(st.text(), st.integers(1, 6), st.integers(1, 6))
def test_place_distinct_and_stable(item, n, r):
    if r > n:
        with pytest.raises(ValueError, match="distinct roots"):
            place(item, roots(n), r)
        return
    chosen = place(item, roots(n), r)
    assert len(chosen) == r == len(set(chosen))
    assert chosen == place(item, roots(n), r)


def test_place_balanced_over_roots():
    n, r, items = 5, 2, 20_000
    counts = {root.uri: 0 for root in roots(n)}
    for i in range(items):
        for uri in place(f"shard-{i}", roots(n), r):
            counts[uri] += 1
    expected = items * r / n
    assert all(abs(c - expected) < 0.05 * expected for c in counts.values()), counts


def test_adding_a_root_moves_about_r_over_n_plus_one():
    n, r, items = 4, 2, 20_000
    before = [set(place(f"s{i}", roots(n), r)) for i in range(items)]
    after = [set(place(f"s{i}", roots(n + 1), r)) for i in range(items)]
    moved = sum(len(b - a) for b, a in zip(before, after))
    # Each item moves a replica iff the new root enters its top R: chance R/(N+1).
    expected = items * r / (n + 1)
    assert abs(moved - expected) < 0.05 * expected
    # Every moved replica went to the new root.
    assert all(a - b <= {"/mnt/r4"} for b, a in zip(before, after))


def test_weights_share_of_replicas():
    weighted = [Root("/a", 2.0), Root("/b"), Root("/c")]
    counts = {"/a": 0, "/b": 0, "/c": 0}
    for i in range(20_000):
        counts[place(f"s{i}", weighted, 1)[0]] += 1
    assert abs(counts["/a"] / 20_000 - 0.5) < 0.02
