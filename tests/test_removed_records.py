"""The removed-records audit files (``--write_removed``, ``transforms.storage.removed``).

Every removed document is one record, its id exactly as the input gave it (an
integer of any size stays an integer, a string of digits a string), with the
file and line it was read from, and the files hold the records sorted by
``(file, line)`` in name order.  The property test draws small corpora (ids of
every kind, exact copies, near-duplicates, dead lines, sampling filters) and
computes the expected records from the inputs alone.
"""
import glob
import json
import os
import tempfile
from unittest import mock

import apache_beam as beam
import pytest
import zstandard
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from transforms import CorpusConfig, PrepareCorpus
from transforms.core import exact_json
from transforms.core.ids import id_order_key
from transforms.core.records import Removal
from transforms.processing.runner_guards import keep_direct_runner_local
from transforms.reduction.filters.sampling import DEFAULT_SEED, keep_sample, sample_hash
from transforms.reduction.minhash import LshParams
from transforms.reduction.near_dedup import NearDedupConfig
from transforms.storage import removed as removed_files

BIG = 10 ** 22   # beyond 64 bits: orjson reads it as a float


# ---------------------------------------------------------------- pure parts

@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.tuples(st.integers(0, 5), st.integers(0, 9)), st.integers(1, 12),
                       max_size=20),
       st.integers(1, 15))
def test_plan_packs_consecutive_parts_into_bounded_files(counts, piece_records):
    plan, pieces = removed_files.plan_pieces(list(counts.items()), piece_records)
    assert set(plan) == set(counts)
    order = sorted(counts)
    numbers = [plan[key] for key in order]
    # files in (file, part) order, numbered 0..pieces-1 without a gap
    assert numbers == sorted(numbers) and sorted(set(numbers)) == list(range(pieces))
    for piece in range(pieces):
        parts = [key for key in order if plan[key] == piece]
        size = sum(counts[key] for key in parts)
        assert size <= piece_records or len(parts) == 1
        if piece + 1 < pieces:   # a file ends only where the next part would not fit
            following = next(key for key in order if plan[key] == piece + 1)
            assert size + counts[following] > piece_records


def test_record_gives_back_the_input_id_values():
    paths = ["/in/a.jsonl", "/in/b.jsonl"]
    record = removed_files.removed_record(
        Removal(1, 12, str(BIG), True, "dedup.exact_duplicate", "kept=17", "17", False), paths)
    assert record == {"removed": BIG, "kept": "17", "reason": "dedup.exact_duplicate",
                      "detail": "kept=17", "file": "/in/b.jsonl", "line": 12}
    assert type(record["removed"]) is int and type(record["kept"]) is str
    near = removed_files.removed_record(
        Removal(0, 3, "-4", True, "near_dedup.near_duplicate", "kept=a jaccard=0.9", "a",
                False, 0.9), paths)
    assert list(near) == ["removed", "kept", "reason", "detail", "jaccard", "file", "line"]
    assert near["removed"] == -4 and near["jaccard"] == 0.9
    line = removed_files.piece_bytes([Removal(0, 3, str(BIG), True, "x.y", "")], paths)
    assert zstandard.ZstdDecompressor().decompress(line) == (
        b'{"removed":%d,"reason":"x.y","detail":"","file":"/in/a.jsonl","line":3}\n' % BIG)


def _removals(draw_ids) -> list[Removal]:
    return [Removal(f, line, doc_id, False, "r.x", "") for f, line, doc_id in draw_ids]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 40)), unique=True, max_size=30),
       st.integers(1, 6), st.integers(1, 9), st.randoms(use_true_random=False))
def test_writer_files_are_sorted_and_the_same_whatever_the_input_order(
        places, piece_records, part_lines, rng):
    removals = _removals((f, line, f"d{f}-{line}") for f, line in places)
    paths = ["/x/a", "/x/b", "/x/c"]
    written = []
    for attempt in range(2):
        shuffled = list(removals)
        rng.shuffle(shuffled)
        with tempfile.TemporaryDirectory() as directory:
            with beam.Pipeline() as p:
                keep_direct_runner_local(p)   # as the jobs do (runner_guards)
                _ = (p | beam.Create(shuffled, reshuffle=False)
                     | removed_files.WriteRemoved(directory, paths, part_lines=part_lines,
                                                  piece_records=piece_records))
            written.append(_files(directory))
    assert written[0] == written[1]
    names = sorted(written[0])
    pieces = len(names)
    assert names == [removed_files.piece_name("removed", i, pieces) for i in range(pieces)]
    lines = [line for name in names for line in _lines(written[0][name])]
    assert [(r["file"], r["line"]) for r in map(json.loads, lines)] == sorted(
        (paths[f], line) for f, line in places)
    for name in names:   # a file holds whole parts, packed up to piece_records
        assert len(_lines(written[0][name])) <= max(piece_records, part_lines)
    if not places:
        assert names == ["removed-00000-of-00001.jsonl.zst"] and lines == []


def _files(directory) -> dict[str, bytes]:
    return {os.path.basename(p): open(p, "rb").read()
            for p in glob.glob(os.path.join(directory, "*")) if not os.path.isdir(p)}


def _lines(data: bytes) -> list[bytes]:
    return zstandard.ZstdDecompressor().stream_reader(data).read().splitlines()


# ---------------------------------------------------------------- through PrepareCorpus

KINDS = ("int", "big", "negative", "digits", "word", "none")


def _id_of(kind: str, i: int):
    """A distinct id per document; ``None``: the record has no id."""
    return {"int": i + 1, "big": BIG + i, "negative": -(i + 1), "digits": str(100 + i),
            "word": f"doc-{i}", "none": None}[kind]


def _text(family: int, variant: int, style: int) -> str:
    """Family ``f``: 5 words of its own repeated; variants repeat them 2, 3, 4 times (same
    5-word shingles: Jaccard 1 within a family, 0 across); styles are exact copies
    (case, spaces: equal after normalisation)."""
    words = [f"f{family}w{j}" for j in range(5)] * (2 + variant)
    if style == 1:
        words[0] = words[0].upper()
    return ("  " if style == 2 else " ").join(words)


documents = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 2), st.integers(0, 2),
                               st.integers(0, 2), st.integers(0, 1)),
                     min_size=1, max_size=14)


def _write_corpus(directory, docs, bad_at) -> tuple[list[str], list[tuple]]:
    """Two JSON Lines files -> (paths, [(file index, line, id value, id str, text)])."""
    paths = [os.path.join(directory, name) for name in ("a.jsonl", "b.jsonl")]
    lines = [[], []]
    placed = []
    for i, (kind, family, variant, style, file) in enumerate(docs):
        if bad_at is not None and len(lines[file]) == bad_at:
            lines[file].append('{"id": "broken", "text": ')   # a dead letter: lines count on
        value = _id_of(kind, i)
        text = _text(family, variant, style)
        record = {"text": text} if value is None else {"id": value, "text": text}
        lines[file].append(json.dumps(record))
        line = len(lines[file])
        doc_id = f"{paths[file]}:{line}" if value is None else str(value)
        placed.append((file, line, doc_id if value is None else value, doc_id, text))
    for path, file_lines in zip(paths, lines):
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in file_lines))
    return paths, placed


def _expected(paths, placed, near: bool, fraction, per_partition) -> list[dict]:
    """The removed records, computed from the inputs: sampling by id hash, then exact
    dedup (smallest id, then file, line), near dedup (a family's smallest kept id), then
    the per-store sample; sorted by (file, line)."""
    removed = []

    def remove(doc, reason, kept=None, jaccard=None):
        record = {"removed": doc[2]}
        if kept is not None:
            record["kept"] = kept[2]
        record["reason"] = reason
        if jaccard is not None:
            record["jaccard"] = jaccard
        record.update(file=paths[doc[0]], line=doc[1])
        removed.append(record)

    rank = lambda doc: (id_order_key(doc[3]), doc[0], doc[1])  # noqa: E731
    left = []
    for doc in placed:
        if fraction is not None and not keep_sample(doc[3], fraction, DEFAULT_SEED):
            remove(doc, "sample.not_sampled")
        else:
            left.append(doc)
    by_text = {}
    for doc in left:
        by_text.setdefault(" ".join(doc[4].casefold().split()), []).append(doc)
    winners = []
    for copies in by_text.values():
        winner = min(copies, key=rank)
        winners.append(winner)
        for doc in copies:
            if doc is not winner:
                remove(doc, "dedup.exact_duplicate", winner)
    if near:
        by_shingles = {}
        for doc in winners:
            words = doc[4].casefold().split()
            by_shingles.setdefault(frozenset(zip(*(words[k:] for k in range(5)))), []).append(doc)
        winners = []
        for family in by_shingles.values():
            root = min(family, key=rank)
            winners.append(root)
            for doc in family:
                if doc is not root:
                    remove(doc, "near_dedup.near_duplicate", root, 1.0)
    if per_partition is not None:
        chosen = sorted(winners, key=lambda d: (sample_hash(d[3], DEFAULT_SEED), d[3]))
        for doc in chosen[per_partition:]:
            remove(doc, "sample_per_partition.not_sampled")
    return sorted(removed, key=lambda r: (r["file"], r["line"]))


def _json(record: dict) -> bytes:
    return exact_json.dumps({k: v for k, v in record.items() if k != "detail"})


def _typed(records: list[dict]) -> list[list]:
    """Records with every value tagged by its type (``17 != "17"``, but ``1 == True``)."""
    return [[(key, type(value).__name__, value) for key, value in r.items()] for r in records]


def read_removed(directory) -> tuple[list[str], list[dict]]:
    """(file names, records in file-name then line order), ids read exactly."""
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(directory,
                                                                       "removed-*.jsonl.zst")))
    records = []
    for name in names:
        with open(os.path.join(directory, name), "rb") as f:
            records += [json.loads(line) for line in _lines(f.read())]
    return names, records


# each example is a pipeline run (seconds): no shrinking, the drawn example is printed
@settings(max_examples=10, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(documents, st.sampled_from([None, 0, 2]), st.booleans(),
       st.sampled_from([None, 0.7]), st.sampled_from([None, 3]), st.integers(1, 4),
       st.integers(1, 6))
def test_removed_files_hold_every_removed_document_with_its_id_file_and_line_in_order(
        docs, bad_at, near, fraction, per_partition, piece_records, part_lines):
    with tempfile.TemporaryDirectory() as directory:
        paths, placed = _write_corpus(directory, docs, bad_at)
        config = CorpusConfig(
            input=paths, roots=(os.path.join(directory, "out"),), dataset="ds",
            write_removed=True, max_bad_fraction=1.0, allow_empty=True,
            near_dedup=NearDedupConfig(LshParams.resolve(0.8)) if near else None,
            sample_fraction=fraction, sample_per_partition=per_partition)
        expected = _expected(paths, placed, near, fraction, per_partition)
        with mock.patch.object(removed_files, "PIECE_RECORDS", piece_records), \
                mock.patch.object(removed_files, "PART_LINES", part_lines):
            with beam.Pipeline() as p:
                prepare = PrepareCorpus(config)
                outputs = p | "Prepare" >> prepare
                # the composite's removed output: the same records (any order), as JSON
                # text (JSON keeps 17 and "17" apart; an int beyond 64 bits cannot cross)
                assert_that(outputs["removed"] | beam.Map(
                    lambda r, paths: _json(removed_files.removed_record(r, paths)),
                    prepare.paths), equal_to([_json(r) for r in expected]))
        names, records = read_removed(os.path.join(directory, "out", "ds", "_audit"))
        assert _typed([{k: v for k, v in r.items() if k != "detail"} for r in records]) == \
            _typed(expected)
        assert names == [removed_files.piece_name("removed", i, len(names))
                         for i in range(len(names))]
        for record in records:
            if "kept" in record:   # dedup's detail names the kept id (as a string)
                assert record["detail"].startswith(f"kept={record['kept']}")


@pytest.mark.parametrize("ids", [
    [17, "17"],                 # an integer and a string of the same digits: one id order
    ["17", 17],
    [BIG, BIG + 1],
    [-(BIG), "-0", "007"],
])
def test_exact_copies_keep_their_id_types(tmp_path, ids):
    """Copies whose ids read alike as text keep each its own JSON type in the audit."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": "same words here"}) + "\n"
                            for i in ids))
    placed = [(0, n + 1, i, str(i), "same words here") for n, i in enumerate(ids)]
    config = CorpusConfig(input=str(path), roots=(str(tmp_path / "out"),), dataset="ds",
                          write_removed=True)
    with beam.Pipeline() as p:
        _ = p | PrepareCorpus(config)
    _, records = read_removed(tmp_path / "out" / "ds" / "_audit")
    expected = _expected([str(path)], placed, False, None, None)
    assert _typed([{k: v for k, v in r.items() if k != "detail"} for r in records]) == \
        _typed(expected)
