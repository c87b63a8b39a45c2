"""What a prepare_corpus run may commit (issue 16's trial): the default output roots
never silently replace a dataset made from other inputs, and a run that keeps no
document commits nothing unless --allow_empty, whatever stage removed the last one.

Every case runs as the user runs it (``prepare_corpus.main``, or a subprocess of
``python -m pipelines.prepare_corpus``), checks the exit status and the exact error
line, and that the committed store is byte-identical before and after."""
import hashlib
import os
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import prepare_corpus
from transforms.prepare import count_tally, gate_bad_fraction, gate_nothing_kept
from transforms.storage.report import lineage_difference
from transforms.storage.store import load_manifest

GOOD = [b'{"id": "d1", "text": "the first document of the corpus"}\n',
        b'{"id": "d2", "text": "a second one, about something else"}\n',
        b'{"id": "d3", "text": "and a third, shorter"}\n']
HINT = ("(pass --output_roots to choose where to write; --output_roots out/a,out/b writes "
        "a new generation of it from these inputs)")
PROG = "python -m pipelines.prepare_corpus"


def store_files(*roots) -> dict[str, str]:
    """sha256 of every file under the roots, but a failed run's own audit files
    (``_audit/last_run/``, where its dead letters stay to say why it failed)."""
    digests = {}
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if "/_audit/last_run/" not in path:
                    with open(path, "rb") as f:
                        digests[path] = hashlib.sha256(f.read()).hexdigest()
    return digests


def main(argv, capsys) -> tuple[int, list[str]]:
    """``prepare_corpus.main(argv)`` -> (exit status, stderr lines)."""
    capsys.readouterr()
    try:
        prepare_corpus.main(argv)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err.splitlines()


def write(path, lines) -> str:
    path.write_bytes(b"".join(lines))
    return str(path)


# ------------------------------------------------ 1. the default roots and other inputs

@pytest.fixture
def first_run(tmp_path, monkeypatch, run_config, capsys):
    """The README's command (no --output_roots) run once, from tmp_path, on a.jsonl."""
    monkeypatch.chdir(tmp_path)
    a = write(tmp_path / "a.jsonl", GOOD)
    assert main(["--input", a, "--run_config", run_config], capsys)[0] == 0
    return a


def test_default_roots_refuse_a_dataset_made_from_other_files(tmp_path, first_run,
                                                              run_config):
    """Another day, the same folder, another input and no --output_roots: refused
    before running (exit 2, the error line and a hint), the dataset untouched.
    As the user runs it: a subprocess."""
    b = write(tmp_path / "b.jsonl", GOOD[:2])
    before = store_files("out/a", "out/b")
    proc = subprocess.run([sys.executable, "-m", "pipelines.prepare_corpus", "--input", b,
                           "--run_config", run_config], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"{PROG}: error: out/a,out/b hold a dataset 'corpus' made from other inputs "
        "(only in the dataset: a.jsonl; only in this run: b.jsonl)", HINT]
    assert store_files("out/a", "out/b") == before
    assert not os.path.exists(tmp_path / "out" / "a" / "corpus" / "_audit" / "last_run")


def test_default_roots_refuse_the_same_file_of_another_size(tmp_path, first_run,
                                                            run_config, capsys):
    before = store_files("out/a", "out/b")
    size = os.path.getsize(first_run)
    write(tmp_path / "a.jsonl", GOOD + [b'{"id": "d4", "text": "one more"}\n'])
    status, err = main(["--input", first_run, "--run_config", run_config], capsys)
    assert (status, err) == (2, [
        f"{PROG}: error: out/a,out/b hold a dataset 'corpus' made from other inputs "
        f"(other size: a.jsonl {size:,} -> {os.path.getsize(first_run):,} bytes)", HINT])
    assert store_files("out/a", "out/b") == before


def test_default_roots_refuse_the_same_file_of_other_content(tmp_path, first_run,
                                                             run_config, capsys):
    """Same path, same size, other bytes: only the job's scan sees it (it digests
    every file); the run fails (exit 1) before the commit, the dataset untouched."""
    before = store_files("out/a", "out/b")
    write(tmp_path / "a.jsonl", [GOOD[0], GOOD[1], GOOD[2].replace(b"third", b"THIRD")])
    status, err = main(["--input", first_run, "--run_config", run_config], capsys)
    assert status == 1
    assert err[0] == (
        "prepare_corpus failed: not writing the manifest: out/a,out/b hold a dataset "
        "'corpus' made from other inputs (other content, same size: a.jsonl); "
        + HINT[1:-1])
    assert store_files("out/a", "out/b") == before


def test_default_roots_with_the_same_inputs_rerun_as_today(first_run, run_config, capsys):
    """The README's command again, same inputs: runs; the same dataset keeps its
    generation, byte for byte (as with explicit roots)."""
    before = store_files("out/a", "out/b")
    assert main(["--input", first_run, "--run_config", run_config], capsys) == (0, [])
    assert {p: d for p, d in store_files("out/a", "out/b").items()
            if "run_report" not in p} == {p: d for p, d in before.items()
                                          if "run_report" not in p}
    assert load_manifest("out/a/corpus")["generation"] == 1


def test_explicit_roots_write_a_new_generation_from_other_inputs(tmp_path, first_run,
                                                                 run_config, capsys):
    """--output_roots given (even the default folders): today's behaviour, a new
    generation from the new inputs; another --dataset under the default roots is
    another dataset (nothing to refuse)."""
    b = write(tmp_path / "b.jsonl", GOOD[:2])
    assert main(["--input", b, "--output_roots", "out/a,out/b", "--run_config", run_config],
                capsys) == (0, [])
    manifest = load_manifest("out/a/corpus")
    assert (manifest["generation"], manifest["records"]) == (2, 2)
    assert [i["path"] for i in manifest["inputs"]] == [b]
    assert main(["--input", first_run, "--dataset", "other", "--run_config", run_config],
                capsys) == (0, [])
    assert load_manifest("out/b/other")["records"] == 3


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["/d/a.jsonl", "/d/b.jsonl", "/e/a.jsonl",
                                        "/d/c.jsonl.zst", "/d/e.parquet"]),
                       st.integers(0, 3), max_size=5),
       st.dictionaries(st.sampled_from(["/d/a.jsonl", "/d/b.jsonl", "/e/a.jsonl",
                                        "/d/c.jsonl.zst", "/d/e.parquet"]),
                       st.integers(0, 3), max_size=5))
def test_lineage_difference_names_every_differing_file(old, new):
    """None exactly when the same paths have the same sizes; otherwise every file
    only in one side or of another size is named (by its full path when two shown
    names are alike), under its kind."""
    recorded = [{"path": p, "bytes": n} for p, n in old.items()]
    current = [{"path": p, "bytes": n} for p, n in new.items()]
    answer = lineage_difference(recorded, current)
    if old == new:
        assert answer is None
        return
    kinds = {"only in the dataset": old.keys() - new.keys(),
             "only in this run": new.keys() - old.keys(),
             "other size": {p for p in old.keys() & new.keys() if old[p] != new[p]}}
    parts = dict(part.split(": ", 1) for part in answer.split("; "))
    assert set(parts) == {k for k, paths in kinds.items() if paths}
    # three per kind are named (in path order), the rest counted
    shown = [p for paths in kinds.values() for p in sorted(paths)[:3]]
    full = len({os.path.basename(p) for p in shown}) < len(shown)
    for kind, paths in kinds.items():
        if not paths:
            continue
        named = []
        for path in sorted(paths)[:3]:
            name = path if full else os.path.basename(path)
            named.append(f"{name} {old[path]:,} -> {new[path]:,} bytes"
                         if kind == "other size" else name)
        more = f" and {len(paths) - 3:,} more" if len(paths) > 3 else ""
        assert parts[kind] == ", ".join(named) + more


def test_lineage_difference_cuts_long_lists_and_says_unrecorded():
    recorded = [{"path": f"/d/{i}.jsonl", "bytes": 1} for i in range(5)]
    assert lineage_difference(recorded, []) == (
        "only in the dataset: 0.jsonl, 1.jsonl, 2.jsonl and 2 more")
    assert lineage_difference(None, recorded) == "its inputs are not recorded"


# ------------------------------------------------ 2. nothing kept: nothing committed

NOTHING = "; nothing committed, dataset 'ds' stays as it was " \
          "(--allow_empty commits an empty generation)"
BAD = [b'{"id": "x1", "text": \n', b'[1, 2]\n', b'{"id": "x3", "text": "  "}\n']


@pytest.mark.parametrize("lines, flags, why", [
    # every document filtered out by the recipe (and one bad line beside them)
    (GOOD + BAD[:1], ["--recipe", "minimal", "--max_bad_fraction", "0.5"],
     "0 of 3 documents kept (filters removed 3: gopher_quality 3), and 1 line(s) were "
     "dead letters (invalid_json 1)"),
    # sampling removes the last one
    (GOOD, ["--sample_fraction", "0"], "0 of 3 documents kept (filters removed 3: sample 3)"),
    # every line a dead letter (bad lines allowed, an empty text among them)
    (BAD, ["--max_bad_fraction", "1"],
     "the input holds no document: 3 line(s), every one a dead letter (empty_text 1, "
     "invalid_json 1, not_an_object 1)"),
    # no line at all
    ([b"\n", b"\n"], [], "the input holds no document (only empty files or blank lines)"),
], ids=["recipe", "sampling", "dead_letters", "blank"])
def test_a_run_that_keeps_nothing_commits_nothing(tmp_path, run_config, capsys, lines,
                                                  flags, why):
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    base = ["--output_roots", ",".join(roots), "--dataset", "ds", "--run_config", run_config]
    good = write(tmp_path / "good.jsonl", GOOD)
    assert main(["--input", good, *base], capsys) == (0, [])
    before = store_files(*roots)
    data = write(tmp_path / "data.jsonl", lines)
    status, err = main(["--input", data, *base, *flags], capsys)
    assert status == 1
    assert err[0] == f"prepare_corpus failed: not writing the manifest: {why}{NOTHING}"
    assert store_files(*roots) == before
    # --allow_empty commits the empty generation
    assert main(["--input", data, *base, *flags, "--allow_empty"], capsys)[0] == 0
    manifest = load_manifest(os.path.join(roots[0], "ds"))
    assert (manifest["generation"], manifest["records"]) == (2, 0)
    report = orjson.loads((tmp_path / "a" / "ds" / "_audit" / "run_report.json").read_bytes())
    assert report["config"]["allow_empty"] is True


def test_a_filter_keeping_one_document_commits(tmp_path, run_config, capsys):
    """The gate counts what is left: one kept document is a dataset."""
    keep = [b'{"id": "long", "text": "' + b" ".join([b"word"] * 60) + b'"}\n']
    data = write(tmp_path / "data.jsonl", GOOD + keep)
    assert main(["--input", data, "--output_roots", str(tmp_path / "a"), "--recipe", "minimal",
                 "--no_near_dedup", "--run_config", run_config], capsys) == (0, [])
    assert load_manifest(str(tmp_path / "a" / "corpus"))["records"] == 1


counts = st.dictionaries(st.sampled_from(["lang", "gopher_quality", "sample", "c4"]),
                         st.integers(1, 5000), max_size=4)
reasons = st.dictionaries(st.sampled_from(["invalid_json", "empty_text", "not_an_object"]),
                          st.integers(1, 5000), max_size=3)


@settings(max_examples=300, deadline=None)
@given(counts, reasons, st.integers(0, 3000), st.integers(0, 3000))
def test_gate_nothing_kept_counts_every_stage(filtered, dead, passed, kept):
    """The gate passes exactly when a document is kept; its message counts the
    documents read, each filter's drops (largest first) and the dead letters."""
    kept = min(kept, passed)
    documents = passed + sum(filtered.values())
    tally = {"documents": documents, "kept": kept,
             **{f"filtered.{k}": v for k, v in filtered.items()},
             **{f"dead.{k}": v for k, v in dead.items()}}
    tally = {k: v for k, v in tally.items() if v}   # a count of 0 is never in the tally
    assert count_tally(tally) == (documents, filtered, dead, kept)
    message = gate_nothing_kept(None, tally, "ds")
    if kept:
        assert message == ""
        return
    assert message.endswith(NOTHING)
    by_count = ", ".join(f"{k} {v:,}" for k, v in sorted(dead.items(),
                                                          key=lambda kv: (-kv[1], kv[0])))
    if not documents:
        assert message.startswith("the input holds no document")
        assert (f"({by_count})" in message) == bool(dead)
        return
    assert message.startswith(f"0 of {documents:,} documents kept (")
    if filtered:
        listed = ", ".join(f"{k} {v:,}" for k, v in sorted(filtered.items(),
                                                           key=lambda kv: (-kv[1], kv[0])))
        assert f"filters removed {sum(filtered.values()):,}: {listed}" in message
    assert (f"later stages removed {passed:,}" in message) == bool(passed)
    assert (f"{sum(dead.values()):,} line(s) were dead letters ({by_count})"
            in message) == bool(dead)


@given(st.integers(0, 100), reasons, st.floats(0, 1))
def test_gate_bad_fraction_counts_bad_lines_from_the_tally(documents, dead, limit):
    tally = {"documents": documents, **{f"dead.{k}": v for k, v in dead.items()}}
    bad = sum(v for k, v in dead.items() if k != "empty_text")
    message = gate_bad_fraction(None, tally, limit, "/x")
    assert bool(message) == bool(documents + bad and bad / (documents + bad) > limit)
    if message:
        assert message.startswith(f"{bad} of {documents + bad} lines are bad")
