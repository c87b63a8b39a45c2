"""Store safety under faults: damage, kill -9, a full disk, concurrent writers,
failed runs and bad options never cost a committed dataset (issue 11).

The fault machinery is in tests/store_faults.py (also the source of the
figures in RELIABILITY.md).  These tests run their jobs on the in-process
DirectRunner (or a subprocess of it, for kill -9): they test the store, not
a runner.
"""
import errno
import glob
import gzip
import os
import shutil
import subprocess

import duckdb
import orjson
import polars as pl
import pytest
import zstandard

from pipelines import prepare_corpus, verify_store as verify_cli
from tests import store_faults as sf
from transforms.storage.commit import (
    ConcurrentWriteError, DatasetLock, DatasetLocked, check_dataset_name, seal)
from transforms.storage.store import (
    MANIFEST, ReadStore, StoreError, WriteStore, load_manifest, manifest_bytes, repair_store,
    root_paths, verify_store)
from transforms.storage.placement import Root

ALL_FAULTS = sf.REPLICA_FAULTS + sf.MANIFEST_FAULTS + sf.STRAY_FAULTS


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A text store and an array store (3 roots, R=2, 3 shards), built once."""
    base = tmp_path_factory.mktemp("pristine")
    stores = {}
    for kind in (sf.TEXT, sf.ARRAY):
        ext = "jsonl" if kind == sf.TEXT else "npy"
        src = (sf.text_input if kind == sf.TEXT else sf.array_input)(base / f"in.{ext}")
        roots = [str(base / kind / n) for n in ("r0", "r1", "r2")]
        sf.build(kind, src, roots, 3)
        stores[kind] = roots
    return stores


@pytest.mark.parametrize("fault", ALL_FAULTS)
@pytest.mark.parametrize("kind", [sf.TEXT, sf.ARRAY])
def test_a_fault_is_detected_read_around_and_repaired(pristine, tmp_path, monkeypatch, kind,
                                                      fault):
    result = sf.run_trial(kind, fault, pristine[kind], str(tmp_path / "trial"), monkeypatch)
    assert result["detected"], result
    assert result["read_ok"], result
    assert result["repaired"] and result["read_after_repair"], result
    assert result["outside_untouched"], result
    if fault == "unknown_file":
        assert result["actions"] == ["stray:unknown -> left in place (not ours to delete)"]
    elif fault in ("stale_shard", "temp_file"):
        assert result["actions"] == [f"stray:{'stale' if fault == 'stale_shard' else 'temp'}"
                                     " -> deleted"]
    elif fault in sf.MANIFEST_FAULTS:
        assert len(result["actions"]) == 1 and "wrote generation 1" in result["actions"][0]
    else:
        assert len(result["actions"]) == 1 and " -> copied from " in result["actions"][0]


def test_repair_never_copies_a_manifest_that_fails_its_checks(pristine, tmp_path):
    """One wrong digit on root 1, repair run through root 1: the good copies win."""
    roots = [str(tmp_path / n) for n in ("r0", "r1", "r2")]
    for src, dst in zip(pristine[sf.TEXT], roots):
        shutil.copytree(src, dst)
    root_map = dict(zip(pristine[sf.TEXT], roots))
    good = open(os.path.join(roots[0], "ds", MANIFEST), "rb").read()
    sf.inject("manifest_one_digit_changed", roots, "ds", orjson.loads(good), str(tmp_path))
    repair_store(os.path.join(roots[1], "ds"), root_map)
    assert open(os.path.join(roots[0], "ds", MANIFEST), "rb").read() == good
    fixed = orjson.loads(open(os.path.join(roots[1], "ds", MANIFEST), "rb").read())
    assert {**fixed, "root_index": 0} == orjson.loads(good)


def test_repair_goes_past_each_fault_to_the_next(pristine, tmp_path):
    """A directory, a FIFO and a bit flip in three replicas: one repair fixes all."""
    roots = [str(tmp_path / n) for n in ("r0", "r1", "r2")]
    for src, dst in zip(pristine[sf.ARRAY], roots):
        shutil.copytree(src, dst)
    root_map = dict(zip(pristine[sf.ARRAY], roots))
    store = os.path.join(roots[0], "emb")
    expected = sf.contents(sf.ARRAY, store, root_map)
    manifest = load_manifest(store, root_map)
    first = sf._replica(roots, manifest, "emb", shard=0, copy=0)
    os.remove(first)
    os.makedirs(first)
    second = sf._replica(roots, manifest, "emb", shard=1, copy=1)
    os.remove(second)
    os.mkfifo(second)
    sf._flip(sf._replica(roots, manifest, "emb", shard=2, copy=0))
    assert sorted(r["status"] for r in sf.problems(verify_store(store, root_map))) == [
        "corrupt", "not_a_file", "not_a_file"]
    actions = repair_store(store, root_map)
    assert sorted(a["status"] for a in actions) == ["corrupt", "not_a_file", "not_a_file"]
    assert all(" -> " not in a["action"] and a["action"].startswith("copied from")
               for a in actions)
    assert sf.problems(verify_store(store, root_map)) == []
    assert sf.contents(sf.ARRAY, store, root_map) == expected
    assert os.listdir(os.path.join(roots[manifest["shards"][0]["replicas"][0]], "emb",
                                   "_audit", "displaced"))      # the directory, kept aside


# ---------------------------------------------------------------- crash between copies

def _crash_between_manifest_copies(tmp_path):
    """Old gen 1 on roots b, c (with its files); new gen 2 on a: a crash after the
    first manifest copy of a rewrite, before collection."""
    old_src = sf.text_input(tmp_path / "old.jsonl", seed=1)
    new_src = sf.text_input(tmp_path / "new.jsonl", seed=2)
    roots = [str(tmp_path / n) for n in ("a", "b", "c")]
    sf.build(sf.TEXT, old_src, roots, 3)
    old = sf.contents(sf.TEXT, os.path.join(roots[0], "ds"))
    aside = tmp_path / "aside"
    shutil.copytree(tmp_path / "b", aside / "b")
    shutil.copytree(tmp_path / "c", aside / "c")
    sf.build(sf.TEXT, new_src, roots, 2)
    new = sf.contents(sf.TEXT, os.path.join(roots[0], "ds"))
    for n in ("b", "c"):       # put the old manifest and old shards back next to the new
        for path in glob.glob(str(aside / n / "ds" / "*")):
            if os.path.isfile(path):
                shutil.copyfile(path, tmp_path / n / "ds" / os.path.basename(path))
    return roots, old, new


def test_roots_that_disagree_read_the_newest_generation_and_repair_rolls_forward(tmp_path):
    roots, old, new = _crash_between_manifest_copies(tmp_path)
    generations = [orjson.loads(open(os.path.join(r, "ds", MANIFEST), "rb").read())
                   ["generation"] for r in roots]
    assert generations == [2, 1, 1]
    for root in roots:   # every root reads the newest complete generation
        assert sf.contents(sf.TEXT, os.path.join(root, "ds")) == new
    rows = verify_store(os.path.join(roots[1], "ds"))
    statuses = {(r["shard"], r["root"]): r["status"] for r in rows if r["shard"] == MANIFEST}
    assert statuses == {(MANIFEST, roots[0]): "ok", (MANIFEST, roots[1]): "older_generation",
                        (MANIFEST, roots[2]): "older_generation"}
    old_on_bc = sorted(os.path.join(r, "ds", n) for r in roots[1:]
                       for n in os.listdir(os.path.join(tmp_path, "aside", os.path.basename(r),
                                                        "ds"))
                       if n.startswith("shard-"))
    # the old 3 shards x R=2, less those placed on root a (none, for some contents)
    assert 0 < len(old_on_bc) <= 6
    assert sorted(r["path"] for r in rows if r["status"] == "stray:stale") == old_on_bc
    actions = repair_store(os.path.join(roots[1], "ds"))   # through an old root
    assert sorted(a["action"] for a in actions) == ["deleted"] * len(old_on_bc) + \
        ["wrote generation 2"] * 2
    assert sf.problems(verify_store(os.path.join(roots[2], "ds"))) == []
    for root in roots:
        m = orjson.loads(open(os.path.join(root, "ds", MANIFEST), "rb").read())
        assert m["generation"] == 2 and sf.contents(sf.TEXT, os.path.join(root, "ds")) == new


def test_a_newer_generation_without_its_shards_is_never_rolled_back(tmp_path):
    roots, old, new = _crash_between_manifest_copies(tmp_path)
    newest = load_manifest(os.path.join(roots[0], "ds"))
    lost = newest["shards"][0]
    for index in lost["replicas"]:
        os.remove(os.path.join(roots[index], "ds", lost["name"]))
    # readers fall back to the complete older generation
    assert sf.contents(sf.TEXT, os.path.join(roots[0], "ds")) == old
    before = open(os.path.join(roots[0], "ds", MANIFEST), "rb").read()
    actions = repair_store(os.path.join(roots[1], "ds"))
    # the old generation's replicas on root a (collected by the new commit) come back;
    # root a's newer manifest stays, and nothing is collected
    assert [a["action"] for a in actions if a["shard"] == MANIFEST] == [
        "left in place: a newer generation is never rolled back"]
    assert all(a["action"].startswith("copied from") for a in actions if a["shard"] != MANIFEST)
    assert open(os.path.join(roots[0], "ds", MANIFEST), "rb").read() == before
    for root in roots:
        assert sf.contents(sf.TEXT, os.path.join(root, "ds")) == old


# ---------------------------------------------------------------- kill -9

# Every write step of the text rewrite (in three interleaved thirds, so that pytest-xdist
# workers share them: steps 1, 4, 7, ...; 2, 5, 8, ...; 3, 6, 9, ...); every 3rd of the
# others (the phases: partial temp file, shard renames, manifest copies, collection,
# reports all get hit).  The full sweeps of all four are in RELIABILITY.md
# (python -m tests.store_faults).
@pytest.mark.parametrize("kind,rewrite,first,stride", [
    (sf.TEXT, True, 1, 3), (sf.TEXT, True, 2, 3), (sf.TEXT, True, 3, 3),
    (sf.ARRAY, True, 1, 3), (sf.TEXT, False, 1, 3)],
    ids=["text-rewrite-1", "text-rewrite-2", "text-rewrite-3", "array-rewrite",
         "text-first-write"])
def test_kill_at_write_steps_leaves_a_complete_dataset(tmp_path, kind, rewrite, first, stride):
    results = sf.kill_sweep(kind, str(tmp_path / "sweep"), rewrite=rewrite,
                            points=range(first, 1000, stride))
    kills = [r for r in results if r["killed"]]
    assert results[-1]["rc"] == 0, results[-1]        # the sweep reached a finished run
    assert len(kills) * stride >= 16                   # the write steps were kill points
    assert [r["point"] for r in kills if not sf.survived(r, rewrite)] == [], \
        [r for r in kills if not sf.survived(r, rewrite)]
    states = {s for r in kills for s in r["states"]}
    assert states == ({"old", "new"} if rewrite else {"none", "new"})


# ---------------------------------------------------------------- full disk

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root can mount one); without mount rights, None."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True)
    yield str(mount) if proc.returncode == 0 else None
    if proc.returncode == 0:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_during_a_rewrite_keeps_the_old_dataset(tmp_path, small_disk,
                                                            monkeypatch):
    base = small_disk or str(tmp_path / "disk")
    roots = [os.path.join(base, n) for n in ("a", "b")]
    sf.build(sf.TEXT, sf.text_input(tmp_path / "old.jsonl", n=200, seed=1), roots, 2)
    old = sf.contents(sf.TEXT, os.path.join(roots[0], "ds"))
    big = sf.text_input(tmp_path / "big.jsonl", n=6000, seed=2)   # ~0.5 MB of zstd shards
    if small_disk:
        with open(os.path.join(base, "filler"), "wb") as f:     # leave ~300 KiB free
            st = os.statvfs(base)
            f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - (300 << 10)))
    else:  # no mount rights: the same fault, simulated at the write call
        from transforms.storage import commit
        real = commit.FileSystems.create

        def create(path, *a, **k):
            if "/.tmp-shard-" in path:
                raise OSError(errno.ENOSPC, "No space left on device", path)
            return real(path, *a, **k)
        monkeypatch.setattr(commit.FileSystems, "create", create)
    with pytest.raises(Exception, match="No space left on device|ENOSPC|Errno 28"):
        sf.build(sf.TEXT, big, roots, 2)
    for root in roots:
        assert sf.contents(sf.TEXT, os.path.join(root, "ds")) == old
        names = os.listdir(os.path.join(root, "ds"))
        assert not [n for n in names if n.startswith(".tmp-")], names   # no partial file left
        assert ".lock" not in names                                     # released
    if small_disk:
        os.remove(os.path.join(base, "filler"))
    assert sf.problems(verify_store(os.path.join(roots[0], "ds"))) == []


# ---------------------------------------------------------------- concurrent writers

def _job_pipeline(tmp_path, name, roots, docs):
    """prepare_corpus's whole pipeline over ``docs``, built (not run): building reads
    the generation its commit will replace (the compare-and-swap's base)."""
    import apache_beam as beam
    from transforms.storage.placement import parse_roots
    source = tmp_path / f"{name}.jsonl"
    source.write_bytes(b"".join(line + b"\n" for _, line in docs))
    parser = prepare_corpus.build_parser()
    args, options = parser.parse(["--input", str(source), "--output_roots", ",".join(roots),
                                  "--dataset", "ds", "--replication", "2", "--num_shards", "2",
                                  "--no_near_dedup"])
    pipeline = beam.Pipeline(options=options)
    prepare_corpus.build_pipeline(pipeline, args, parse_roots(",".join(roots)))
    return pipeline


def test_interleaved_writers_the_second_commit_fails_and_the_first_dataset_stays(tmp_path):
    roots = [str(tmp_path / n) for n in ("a", "b")]
    docs_a = [(f"a{i}", orjson.dumps({"id": f"a{i}", "text": "x" * i})) for i in range(1, 50)]
    docs_b = [(f"b{i}", orjson.dumps({"id": f"b{i}", "text": "y" * i})) for i in range(1, 30)]
    pipeline_a = _job_pipeline(tmp_path, "a", roots, docs_a)
    # B starts after A and runs start to end while A has not committed
    _job_pipeline(tmp_path, "b", roots, docs_b).run().wait_until_finish()
    expected_b = sorted(line for _, line in docs_b)
    with pytest.raises(Exception, match="committed by another writer"):
        pipeline_a.run().wait_until_finish()
    prepare_corpus._delete_spills(os.path.join(roots[0], "ds"))  # as run() does after a failure
    for root in roots:
        assert sf.contents(sf.TEXT, os.path.join(root, "ds")) == expected_b
    assert sf.problems(verify_store(os.path.join(roots[0], "ds"))) == []  # A's files discarded


def test_a_second_writer_is_refused_with_a_clear_message_and_break_lock(tmp_path, capsys):
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    src = sf.text_input(tmp_path / "in.jsonl")
    sf.build(sf.TEXT, src, roots, 2)
    lock = DatasetLock([os.path.join(r, "ds") for r in roots], job="other")
    lock.acquire()
    before = sf.tree(str(tmp_path), skip=set())
    try:
        with pytest.raises(SystemExit) as exit_info:
            prepare_corpus.main(sf.job_argv(sf.TEXT, src, roots, 2))
        assert exit_info.value.code == 1
        failed, hint = capsys.readouterr().err.strip().splitlines()[-2:]
        assert failed.startswith("prepare_corpus failed: ") and "/ds/.lock is held by other " \
            f"pid {os.getpid()}" in failed and "(that process is still running)" in failed
        assert hint == "hint: wait for that run to end, then run again"   # no --break_lock
        assert sf.tree(str(tmp_path), skip=set()) == before   # nothing changed
        # --break_lock never takes a running writer's lock: refused, nothing changed
        with pytest.raises(SystemExit) as exit_info:
            prepare_corpus.main(sf.job_argv(sf.TEXT, src, roots, 2) + ["--break_lock"])
        assert exit_info.value.code == 1
        failed, hint = capsys.readouterr().err.strip().splitlines()[-2:]
        assert f"/ds/.lock is held by other pid {os.getpid()}" in failed and failed.endswith(
            "(that process is still running): --break_lock removes only the lock of a run "
            "that has ended"), failed
        assert hint == f"hint: wait for that run to end (or stop it: kill {os.getpid()}), " \
            "then run again"
        assert sf.tree(str(tmp_path), skip=set()) == before
    finally:
        lock.release()
    # a lock whose pid now belongs to a process started after it was taken (pid reuse):
    # its holder is gone
    for root in roots:
        with open(os.path.join(root, "ds", ".lock"), "w") as f:
            f.write(orjson.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                  "job": "prepare_corpus", "token": "t",
                                  "since": "2020-01-01T00:00:00+00:00"}).decode())
    with pytest.raises(DatasetLocked, match="the lock is stale"):
        sf.build(sf.TEXT, src, roots, 2)
    # a lock left by a killed run: named as stale, broken by the documented flag
    for root in roots:
        with open(os.path.join(root, "ds", ".lock"), "w") as f:
            f.write(orjson.dumps({"pid": 2 ** 22 + 7, "host": os.uname().nodename,
                                  "job": "prepare_corpus", "token": "t"}).decode())
    with pytest.raises(DatasetLocked, match="the lock is stale"):
        sf.build(sf.TEXT, src, roots, 2)
    sf.build(sf.TEXT, src, roots, 2, "--break_lock")
    assert not glob.glob(os.path.join(str(tmp_path), "*", "ds", ".lock"))


# ---------------------------------------------------------------- validation and failed runs

def _existing_dataset(tmp_path):
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    src = sf.text_input(tmp_path / "in.jsonl")
    sf.build(sf.TEXT, src, roots, 2)
    victim = tmp_path / "victim"     # files a bad --dataset could reach
    victim.mkdir()
    for name in ("dead_letters-00000-of-00001.jsonl.zst", "removed-x.jsonl.zst"):
        (victim / name).write_bytes(b"precious")
    (victim / ".runs-1234").mkdir()
    (victim / ".runs-1234" / "run").write_bytes(b"precious")
    return roots, src


@pytest.mark.parametrize("bad", [
    ["--dataset", "../victim"], ["--dataset", str("/abs/victim")], ["--dataset", "."],
    ["--dataset", "_audit"], ["--output_roots", "{a},{a}/../a"], ["--output_roots", "{a},{link}"],
    ["--output_roots", "{a},{A}"], ["--output_roots", "{a},{a}/ds/inner"],
    ["--replication", "3"], ["--codec", "zstd:level=99"], ["--max_partitions", "1"],
    ["--input", "{a}/no-such-input.jsonl"], ["--output_roots", "{a},{file}/below/a/file"],
], ids=lambda bad: " ".join(bad))
def test_a_run_that_fails_validation_changes_nothing_on_disk(tmp_path, capsys, bad):
    roots, src = _existing_dataset(tmp_path)
    os.symlink(roots[0], tmp_path / "link")
    before = sf.tree(str(tmp_path), skip=set())
    argv = sf.job_argv(sf.TEXT, src, roots, 2)
    fill = {"a": roots[0], "A": str(tmp_path / "A"), "link": str(tmp_path / "link"),
            "file": src}
    for i in range(0, len(bad), 2):
        value = bad[i + 1].format(**fill)
        if bad[i] in argv:
            argv[argv.index(bad[i]) + 1] = value
        else:
            argv += [bad[i], value]
    if bad[0] == "--input":   # found when the pipeline is built: a one-line error
        with pytest.raises(FileNotFoundError, match="input pattern matches no file"):
            prepare_corpus.run(argv)
    else:
        with pytest.raises(SystemExit) as exit_info:
            prepare_corpus.run(argv)
        assert exit_info.value.code == 2
        assert "error: " in capsys.readouterr().err
    assert sf.tree(str(tmp_path), skip=set()) == before


def test_an_output_root_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    """Checked before anything is made: a root below a file, or in a folder this user
    may not write (faked here: the tests run as root), is one line naming the root and
    the folder in the way."""
    from pipelines import cli
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"^--output_roots: cannot write to root "
                       rf"{tmp_path}/f/x/y: {tmp_path}/f is a file, not a folder$"):
        cli.check_writable_root(str(tmp_path / "f" / "x" / "y"))
    cli.check_writable_root(str(tmp_path / "new" / "deeper"))   # makeable: fine
    monkeypatch.setattr(cli.os, "access", lambda path, mode: path != str(tmp_path))
    with pytest.raises(ValueError, match=rf"^--output_roots: cannot write to root "
                       rf"{tmp_path}/new: permission denied on {tmp_path}$"):
        cli.check_writable_root(str(tmp_path / "new"))
    cli.check_writable_root("s3://bucket/root")   # remote: the store's own errors
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_a_lock_that_cannot_be_written_stops_the_run_naming_it(tmp_path):
    """A root the checks pass but the OS refuses (e.g. under /proc): the lock step fails
    with one line naming the lock's path, before anything is written."""
    from transforms.storage.commit import RootNotWritable
    lock = DatasetLock(["/proc/no-such-folder/ds", str(tmp_path / "b" / "ds")], job="x")
    with pytest.raises(RootNotWritable, match=r"^cannot write the dataset's lock "
                       r"/proc/no-such-folder/ds/\.lock: no such file or directory$"):
        lock.acquire()
    assert not glob.glob(str(tmp_path / "*" / "ds" / ".lock"))


def test_dataset_names():
    for good in ("corpus", "web-2024.v1", "A_b"):
        assert check_dataset_name(good) == good
    for bad in ("", ".", "..", "../x", "a/b", ".hidden", "_audit", "x" * 201, "a\\b", None):
        with pytest.raises(ValueError, match="plain folder name"):
            check_dataset_name(bad)


def test_a_failed_rerun_keeps_the_committed_dataset(tmp_path):
    roots = [str(tmp_path / n) for n in ("a", "b", "c")]
    src = sf.text_input(tmp_path / "in.jsonl")
    sf.build(sf.TEXT, src, roots, 3)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "fine", "text": "a good line"}\n{"id": "broken", "text": \n')
    before = {p: v for p, v in sf.tree(str(tmp_path), skip=set()).items() if "/_audit/" not in p}
    old = sf.contents(sf.TEXT, os.path.join(roots[0], "ds"))
    # One bad line beyond --max_bad_fraction 0: the run writes its shards, then
    # fails at the manifest gate (a wrong --text_field now fails earlier, before
    # anything is written: the inputs are probed first).
    argv = sf.job_argv(sf.TEXT, f"{src},{bad}", roots, 2) + ["--max_bad_fraction", "0"]
    with pytest.raises(Exception, match="not writing the manifest: 1 of 242 lines are bad"):
        prepare_corpus.run(argv)
    after = {p: v for p, v in sf.tree(str(tmp_path), skip=set()).items() if "/_audit/" not in p}
    assert after == before       # the failed run removed the (empty) shards it wrote
    for root in roots:
        assert sf.contents(sf.TEXT, os.path.join(root, "ds")) == old
    assert sf.problems(verify_store(os.path.join(roots[1], "ds"))) == []


def _audit_tree(tmp_path):
    return {p: v for p, v in sf.tree(str(tmp_path), skip=set()).items() if "/_audit/" in p}


@pytest.mark.parametrize("fault", ["bad_fraction", "truncated_gzip"])
def test_a_failed_run_keeps_the_committed_audit_files_and_leaves_its_own_aside(tmp_path,
                                                                                fault):
    """The committed generation's dead letters, input lineage and run report stay
    byte for byte (they were deleted or replaced by a failed run); the failed run's
    audit files are in ``_audit/last_run/`` (its dead letters say why), with no
    ``beam-temp-*`` anywhere; the next successful run removes that folder."""
    roots = [str(tmp_path / n) for n in ("a", "b")]
    src = sf.text_input(tmp_path / "in.jsonl")
    sf.build(sf.TEXT, src, roots, 2)
    committed = _audit_tree(tmp_path)
    audit = os.path.join(roots[0], "ds", "_audit")
    assert any(os.path.basename(p).startswith("dead_letters-") for p in committed)
    assert any(os.path.basename(p).startswith("inputs-") for p in committed)
    if fault == "bad_fraction":
        bad = tmp_path / "bad.jsonl"
        bad.write_bytes(b'{"id": "fine", "text": "a good line"}\n{"id": "broken", "text": \n')
        match = "1 of 242 lines are bad .* see the dead letters in " + \
            os.path.join(audit, "last_run")
    else:
        whole = gzip.compress(open(src, "rb").read().replace(b'"d0-', b'"g0-'))
        bad = tmp_path / "cut.jsonl.gz"
        bad.write_bytes(whole[:len(whole) // 2])
        match = "cut.jsonl.gz"
    argv = sf.job_argv(sf.TEXT, f"{src},{bad}", roots, 2) + ["--max_bad_fraction", "0"]
    with pytest.raises(Exception, match=match):
        prepare_corpus.run(argv)
    # the job called from a host program: once it failed, its commit gate is open again,
    # so the host's own pipelines of this process may commit (they were refused as
    # "the run was interrupted")
    from transforms.storage.commit import commit_gate
    with commit_gate():
        pass
    after = _audit_tree(tmp_path)
    aside = {p: v for p, v in after.items() if "/_audit/last_run/" in p}
    assert {p: v for p, v in after.items() if p not in aside} == committed
    assert not glob.glob(str(tmp_path / "**" / "beam-temp-*"), recursive=True)
    if fault == "bad_fraction":
        dead = [orjson.loads(line) for p in glob.glob(os.path.join(audit, "last_run",
                                                                  "dead_letters-*"))
                for line in zstandard.ZstdDecompressor().stream_reader(open(p, "rb")).read()
                .splitlines()]
        assert [(os.path.basename(d["file"]), d["line"]) for d in dead] == [("bad.jsonl", 2)]
    sf.build(sf.TEXT, src, roots, 2)       # a successful run: no last_run/ left
    assert not os.path.exists(os.path.join(audit, "last_run"))
    assert {os.path.basename(p) for p in _audit_tree(tmp_path)} == \
        {os.path.basename(p) for p in committed}


# ---------------------------------------------------------------- generations and globs

def test_rewrites_leave_data_globs_matching_the_current_generation_only(tmp_path):
    roots = [str(tmp_path / n) for n in ("a", "b", "c")]
    sf.build(sf.TEXT, sf.text_input(tmp_path / "in4.jsonl", n=400, seed=4), roots, 4,
             "--write_removed")
    first = load_manifest(os.path.join(roots[0], "ds"))
    src = sf.text_input(tmp_path / "in2.jsonl", n=356, seed=5)
    sf.build(sf.TEXT, src, roots, 2, "--write_removed")
    manifest = load_manifest(os.path.join(roots[0], "ds"))
    assert (manifest["generation"], manifest["previous"]) == (2, first["digest"])
    expected = sf.contents(sf.TEXT, os.path.join(roots[0], "ds"))
    assert len(expected) == manifest["records"] == 356
    paths = root_paths(manifest, os.path.join(roots[0], "ds"))
    total = 0
    for index, root in enumerate(roots):
        folder = os.path.join(root, "ds")
        mine = sorted(os.path.join(folder, s["name"]) for s in manifest["shards"]
                      if index in s["replicas"])
        for pattern in ("shard-*", "*.jsonl.zst", "*"):
            found = sorted(p for p in glob.glob(os.path.join(folder, pattern))
                           if os.path.isfile(p) and p.endswith(".zst"))
            assert found == mine, pattern
        assert sorted(os.listdir(folder)) == sorted(
            ["_audit", MANIFEST] + [os.path.basename(p) for p in mine])
        if mine:
            total += duckdb.sql(f"select count(*) from read_json_auto('{folder}/*.jsonl.zst')"
                                ).fetchall()[0][0]
            frame = pl.scan_ndjson(f"{folder}/shard-*.jsonl.zst").collect()
            stored = [orjson.loads(line)["id"] for p in mine
                      for line in zstandard.ZstdDecompressor().decompress(
                          open(p, "rb").read()).splitlines()]
            assert sorted(frame["id"].to_list()) == sorted(stored)
    assert total == 2 * 356      # R = 2: every record on two roots
    assert paths == roots
    # a rerun that produces the same dataset keeps the generation: byte-identical
    snapshot = {p: v for p, v in sf.tree(str(tmp_path), skip=set()).items()
                if "/_audit/" not in p and "/in" not in p}
    sf.build(sf.TEXT, src, roots, 2, "--write_removed")
    assert {p: v for p, v in sf.tree(str(tmp_path), skip=set()).items()
            if "/_audit/" not in p and "/in" not in p} == snapshot


# ---------------------------------------------------------------- relocation

@pytest.mark.parametrize("kind", [sf.TEXT, sf.ARRAY])
def test_a_copied_root_reads_and_verifies_where_it_is(tmp_path, kind):
    ext = "jsonl" if kind == sf.TEXT else "npy"
    src = (sf.text_input if kind == sf.TEXT else sf.array_input)(tmp_path / f"in.{ext}")
    roots = [str(tmp_path / n) for n in ("a", "b", "c")]
    sf.build(kind, src, roots, 3)
    dataset = sf.DATASET[kind]
    expected = sf.contents(kind, os.path.join(roots[0], dataset))
    moved = [str(tmp_path / "moved" / n) for n in ("a", "b", "c")]
    for old, new in zip(roots, moved):
        shutil.move(old, new)          # the original locations are gone
    copy = os.path.join(moved[0], dataset)
    rows = verify_store(copy)
    mine = [r for r in rows if r["root"] == moved[0]]
    assert mine and all(r["status"] == "ok" for r in mine)   # the copy's own files check out
    assert {r["status"] for r in rows if r["root"] != moved[0]} == {"missing"}
    root_map = f"{roots[1]}={moved[1]},{roots[2]}={moved[2]}"
    assert sf.problems(verify_store(copy, root_map)) == []
    assert sf.contents(kind, copy, root_map) == expected
    with pytest.raises(SystemExit) as exit_info:
        verify_cli.main(["--store", copy, "--root_map", root_map])
    assert exit_info.value.code == 0


def test_a_partitioned_rewrite_collects_old_partitions(tmp_path):
    roots = [str(tmp_path / n) for n in ("a", "b")]

    def write(name, langs):
        rows = [orjson.dumps({"id": f"{name}{i}", "text": f"text {name} {i}",
                              "lang": langs[i % len(langs)]}) for i in range(60)]
        (tmp_path / f"{name}.jsonl").write_bytes(b"\n".join(rows) + b"\n")
        prepare_corpus.run(["--input", str(tmp_path / f"{name}.jsonl"), "--output_roots",
                            ",".join(roots), "--dataset", "ds", "--partition_by", "lang",
                            "--no_near_dedup", "--run_config", "direct"])
    write("old", ["en", "fr", "zh"])
    write("new", ["en", "de"])
    manifest = load_manifest(os.path.join(roots[0], "ds"))
    assert manifest["generation"] == 2
    for index, root in enumerate(roots):
        folder = os.path.join(root, "ds")
        assert sorted(os.listdir(folder)) == ["_audit", "de", "en", MANIFEST]
        assert sorted(glob.glob(os.path.join(folder, "*", "shard-*"))) == sorted(
            os.path.join(folder, s["name"]) for s in manifest["shards"]
            if index in s["replicas"])
    assert sf.problems(verify_store(os.path.join(roots[1], "ds"))) == []


def test_read_store_on_a_moved_root_with_a_root_map(tmp_path, make_pipeline):
    from apache_beam.testing.util import assert_that, equal_to
    roots = [str(tmp_path / n) for n in ("a", "b", "c")]
    sf.build(sf.TEXT, sf.text_input(tmp_path / "in.jsonl"), roots, 3)
    expected = sf.contents(sf.TEXT, os.path.join(roots[0], "ds"))
    moved = [str(tmp_path / "moved" / n) for n in ("a", "b", "c")]
    for old, new in zip(roots, moved):
        shutil.move(old, new)
    root_map = f"{roots[1]}={moved[1]},{roots[2]}={moved[2]}"
    with make_pipeline() as p:
        lines = p | ReadStore(os.path.join(moved[0], "ds"), parse=False, root_map=root_map)
        assert_that(lines, equal_to(expected))


def test_an_empty_input_never_replaces_a_committed_dataset(tmp_path):
    """Empty files (or only blank lines) would commit a generation of no document over
    the dataset: the run fails and the dataset stays; --allow_empty commits it."""
    roots = [str(tmp_path / n) for n in ("a", "b")]
    sf.build(sf.TEXT, sf.text_input(tmp_path / "in.jsonl"), roots, 2)
    old = sf.contents(sf.TEXT, os.path.join(roots[0], "ds"))
    before = sf.tree(str(tmp_path / "a"), skip=set())
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    with pytest.raises(Exception, match=r"the input holds no document \(only empty files or "
                       r"blank lines\); nothing committed, dataset 'ds' stays as it was"):
        sf.build(sf.TEXT, str(empty), roots, 2)
    assert sf.contents(sf.TEXT, os.path.join(roots[0], "ds")) == old
    assert {p: v for p, v in sf.tree(str(tmp_path / "a"), skip=set()).items()
            if "/last_run/" not in p} == before
    sf.build(sf.TEXT, str(empty), roots, 2, "--allow_empty")
    manifest = load_manifest(os.path.join(roots[0], "ds"))
    assert (manifest["generation"], manifest["records"]) == (2, 0)


def test_an_input_inside_the_output_dataset_is_refused(tmp_path, capsys):
    """``--input .`` from a folder that holds an output root: the store's own files
    would be read. Refused in one line before anything runs."""
    (tmp_path / "data.jsonl").write_bytes(open(sf.text_input(tmp_path / "x.jsonl"), "rb").read())
    os.unlink(tmp_path / "x.jsonl")
    roots = [str(tmp_path / "o1"), str(tmp_path / "o2")]
    sf.build(sf.TEXT, str(tmp_path), roots, 2)      # the first run: no store there yet
    before = sf.tree(str(tmp_path), skip=set())
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        sf.build(sf.TEXT, str(tmp_path), roots, 2)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "is inside the output dataset " + \
        os.path.join(roots[0], "ds") in err
    assert sf.tree(str(tmp_path), skip=set()) == before


def test_a_root_on_a_read_only_file_system_is_named_so(tmp_path):
    """A read-only mount (root can mount a tmpfs here; the tests run as root, which
    write permissions do not stop): refused before the run, the reason in words."""
    from pipelines import cli
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], check=True)
    try:
        with pytest.raises(ValueError, match=rf"^--output_roots: cannot write to root "
                           rf"{mount}/x: {mount} is on a read-only file system$"):
            cli.check_writable_root(str(mount / "x"))
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_paths_in_the_way_are_named_exactly(tmp_path):
    """The first part of the path that is not a folder is named (a file, a link to
    nothing), and the hint's mkdir quotes its path."""
    from pipelines import cli
    (tmp_path / "afile").write_bytes(b"")
    (tmp_path / "gone").symlink_to(tmp_path / "unmounted")
    with pytest.raises(cli.BadPath, match=rf"^cannot write {tmp_path}/afile/sub/r\.html "
                       rf"\(--output\): {tmp_path}/afile is a file, not a folder$"):
        cli.check_output_folder(str(tmp_path / "afile" / "sub" / "r.html"), "--output")
    with pytest.raises(cli.BadPath, match=rf": {tmp_path}/gone is a link to "
                       rf"{tmp_path}/unmounted, which does not exist$"):
        cli.check_output_folder(str(tmp_path / "gone" / "r.html"), "--output")
    with pytest.raises(cli.BadPath) as info:
        cli.check_output_folder(str(tmp_path / "my reports" / "r.html"), "--output")
    assert info.value.hint == (f"create it first (mkdir -p '{tmp_path}/my reports'), or give "
                               "--output a path in an existing folder")
    with pytest.raises(ValueError, match=rf"^--output_roots: cannot write to root "
                       rf"{tmp_path}/gone: {tmp_path}/gone is a link to {tmp_path}/unmounted, "
                       r"which does not exist$"):
        cli.check_writable_root(str(tmp_path / "gone"))
    assert sorted(os.listdir(tmp_path)) == ["afile", "gone"]
