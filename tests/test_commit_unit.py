"""Commit by generation, strays, locks and root checks: pure functions, no pipeline."""
import json
import os
import pathlib

import orjson
import pytest

from transforms.storage.commit import (
    MANIFEST, ConcurrentWriteError, DatasetLock, DatasetLocked, commit_generation,
    committed_digest, find_strays, manifest_digest, manifest_problem, read_manifest_copy,
    write_atomically)
from transforms.core.hashing import checksum
from transforms.storage.store import build_manifest, check_roots, shard_name


def _shard(roots, name_index, data: bytes, replicas):
    name = shard_name(name_index, 2, ".jsonl", checksum(data))
    for i in replicas:
        write_atomically(os.path.join(roots[i], "ds", name), data)
    return {"name": name, "index": name_index, "records": data.count(b"\n"),
            "raw_bytes": len(data), "stored_bytes": len(data), "checksum": checksum(data),
            "replicas": list(replicas)}


def _body(roots, shards):
    return build_manifest("ds", roots, 2, {"name": "none"}, shards, {"kind": "text"})


def _on_disk(root):
    return orjson.loads(open(os.path.join(root, "ds", MANIFEST), "rb").read())


def test_generations_chain_and_collect_only_after_the_commit(tmp_path):
    roots = [str(tmp_path / n) for n in "abc"]
    first = [_shard(roots, 0, b'{"id":1}\n', [0, 1]), _shard(roots, 1, b'{"id":2}\n', [1, 2])]
    one = commit_generation(_body(roots, first), "ds", roots, None)
    assert (one["generation"], one["previous"]) == (1, None)
    assert one["digest"] == manifest_digest(one) and manifest_problem(one) is None
    assert [_on_disk(r)["root_index"] for r in roots] == [0, 1, 2]
    # the same dataset again: same generation, same bytes
    before = [open(os.path.join(r, "ds", MANIFEST), "rb").read() for r in roots]
    assert commit_generation(_body(roots, first), "ds", roots, one["digest"]) == one
    assert [open(os.path.join(r, "ds", MANIFEST), "rb").read() for r in roots] == before
    # another dataset: generation 2 points at 1; old files go, new ones stay
    second = [_shard(roots, 0, b'{"id":3}\n', [2, 0])]
    two = commit_generation(_body(roots, second), "ds", roots, one["digest"])
    assert (two["generation"], two["previous"]) == (2, one["digest"])
    for i, root in enumerate(roots):
        names = sorted(os.listdir(os.path.join(root, "ds")))
        assert names == sorted([MANIFEST] + ([second[0]["name"]] if i in (0, 2) else []))
    # a writer that started from generation 1 cannot commit over generation 2
    with pytest.raises(ConcurrentWriteError, match="committed by another writer"):
        commit_generation(_body(roots, first), "ds", roots, one["digest"])
    assert committed_digest(roots, "ds") == two["digest"]


def test_a_manifest_fails_its_own_checks_on_any_change(tmp_path):
    roots = [str(tmp_path / "a")]
    sealed = commit_generation(_body(roots, [_shard(roots, 0, b"x\n", [0])]), "ds", roots,
                               None)
    assert manifest_problem(sealed) is None
    assert manifest_problem({**sealed, "records": 2}) == \
        "digest does not match its content (changed or damaged)"
    changed = orjson.loads(orjson.dumps(sealed))
    changed["shards"][0]["checksum"] = "0" + changed["shards"][0]["checksum"][1:]
    assert "digest" in manifest_problem(changed)
    assert manifest_problem({**sealed, "root_index": 5}) == "root_index 5 outside the roots"
    path = os.path.join(roots[0], "ds", MANIFEST)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:40])
    copy = read_manifest_copy(path)
    assert copy.status == "invalid" and "not valid JSON (truncated?)" in copy.detail


def test_strays_are_classified_and_only_ours_are_collectable(tmp_path):
    roots = [str(tmp_path / "a")]
    sealed = commit_generation(_body(roots, [_shard(roots, 0, b"x\n", [0])]), "ds", roots,
                               None)
    folder = tmp_path / "a" / "ds"
    (folder / "shard-00001-of-00002-0123456789abcdef.jsonl.zst").write_bytes(b"old")
    (folder / ".tmp-shard-00000-of-00002.jsonl.abc.tmp").write_bytes(b"partial")
    (folder / ".runs-42").mkdir()
    (folder / "notes.txt").write_bytes(b"mine")
    os.symlink("/etc/hostname", folder / "link")
    os.mkfifo(folder / "pipe")
    os.symlink("/etc/hostname", folder / "shard-00003-of-00004-0123456789abcdef.jsonl.zst")
    os.mkfifo(folder / "shard-00002-of-00004-0123456789abcdef.jsonl.zst")
    (folder / "emptied").mkdir()
    (folder / "_audit").mkdir()
    (folder / "_audit" / "dead_letters-0.jsonl.zst").write_bytes(b"audit")
    (folder / ".lock").write_bytes(b"{}")
    got = {(s.name, s.kind, s.collectable)
           for s in find_strays(roots[0], str(folder), sealed, 0)}
    assert got == {
        ("shard-00001-of-00002-0123456789abcdef.jsonl.zst", "stale", True),
        (".tmp-shard-00000-of-00002.jsonl.abc.tmp", "temp", True),
        (".runs-42", "temp", True), ("notes.txt", "unknown", False),
        # a link or FIFO is ours to delete only under a shard's name
        ("link", "symlink", False), ("pipe", "special", False),
        ("shard-00003-of-00004-0123456789abcdef.jsonl.zst", "symlink", True),
        ("shard-00002-of-00004-0123456789abcdef.jsonl.zst", "special", True),
        ("emptied", "empty_directory", True)}


def test_roots_must_be_distinct_folders(tmp_path):
    a = str(tmp_path / "a")
    os.makedirs(a)
    os.symlink(a, tmp_path / "alias")
    check_roots([a, str(tmp_path / "b")], "ds")
    for other in (a, f"{tmp_path}/x/../a", str(tmp_path / "alias"), str(tmp_path / "A")):
        with pytest.raises(ValueError, match="same folder"):
            check_roots([a, other], "ds")
    with pytest.raises(ValueError, match="inside the dataset folder"):
        check_roots([a, f"{a}/ds/inner"], "ds")
    with pytest.raises(ValueError, match="same folder"):
        check_roots(["gs://Bucket/x/", "gs://bucket//x"], "ds")


def test_one_lock_holder_and_break_lock(tmp_path):
    dirs = [str(tmp_path / "a" / "ds"), str(tmp_path / "b" / "ds")]
    with DatasetLock(dirs, job="first"):
        with pytest.raises(DatasetLocked, match=r"held by first pid \d+ .*still running"
                                                r"\); one writer per dataset$") as info:
            DatasetLock(dirs, job="second").acquire()
        assert info.value.hint == "wait for that run to end, then run again"
        assert all(os.path.exists(os.path.join(d, ".lock")) for d in dirs)
        # --break_lock never takes the lock of a holder that still runs here
        with pytest.raises(DatasetLocked, match=r"held by first pid \d+ .*\(that process is "
                           r"still running\): --break_lock removes only the lock of a run "
                           r"that has ended$"):
            DatasetLock(dirs, job="third", break_lock=True).acquire()
        assert all(os.path.exists(os.path.join(d, ".lock")) for d in dirs)
    assert not any(os.path.exists(os.path.join(d, ".lock")) for d in dirs)


def test_break_lock_says_which_stale_locks_it_removed(tmp_path):
    """DatasetLock.broken: every lock --break_lock removed, with its holder and why it
    counted as stale (the jobs print one line each; a free root adds nothing)."""
    dirs = [str(tmp_path / "a" / "ds"), str(tmp_path / "b" / "ds")]
    _lock_file(tmp_path / "a" / "ds", pid=4194311)   # beyond pid_max: a process that is gone
    with DatasetLock(dirs, job="next", break_lock=True) as lock:
        host = __import__("platform").node()
        assert lock.broken == [(os.path.join(dirs[0], ".lock"),
                                f"prepare_corpus pid 4194311 on {host} since then; that process is gone")]
    with DatasetLock(dirs, job="again", break_lock=True) as lock:
        assert lock.broken == []


@pytest.mark.parametrize("holder, said, hint", [
    ("alive", "(that process is still running); one writer per dataset",
     "wait for that run to end, then run again"),
    ("gone", "(that process is gone: the lock is stale)", "rerun with --break_lock to remove it"),
    ("elsewhere", "(another host: whether that process still runs cannot be told from here); "
     "one writer per dataset", "if that run is not running any more, rerun with --break_lock"),
    ("unreadable", None, "if no other run is writing this dataset, rerun with --break_lock"),
])
def test_the_lock_message_suggests_break_lock_only_when_the_holder_is_gone(tmp_path, holder,
                                                                           said, hint):
    """--break_lock is suggested (in the hint) when the holder's process is gone or
    cannot be seen from here (another host, an unreadable lock), never while it runs;
    the lock is left as it was."""
    import platform
    folder = tmp_path / "a" / "ds"
    folder.mkdir(parents=True)
    content = {"alive": {"pid": os.getpid(), "host": platform.node()},
               "gone": {"pid": 2 ** 22 + 7, "host": platform.node()},
               "elsewhere": {"pid": 12, "host": platform.node() + "-other"}}.get(holder)
    data = (b"{half" if content is None else
            json.dumps({**content, "job": "prepare_corpus", "since": "then"}).encode())
    (folder / ".lock").write_bytes(data)
    with pytest.raises(DatasetLocked) as info:
        DatasetLock([str(folder)], job="second").acquire()
    path = str(folder / ".lock")
    if said is None:
        assert str(info.value) == (f"{path} is held by a writer that cannot be told (the "
                                   "lock cannot be read); one writer per dataset")
    else:
        who = f"prepare_corpus pid {content['pid']} on {content['host']} since then"
        assert str(info.value) == f"{path} is held by {who} {said}"
    assert info.value.hint == hint
    assert (folder / ".lock").read_bytes() == data


# ---------------------------------------------------------------- properties

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from transforms.storage import commit  # noqa: E402
from transforms.storage.store import read_shard_verified, repair_store, verify_store  # noqa: E402
from transforms.storage.store import load_manifest  # noqa: E402


class _Crash(BaseException):
    pass


def _read_all(store):
    manifest = load_manifest(store)
    return sorted(read_shard_verified(manifest, store, s) for s in manifest["shards"])


_datasets = st.lists(st.tuples(st.binary(min_size=1, max_size=40),
                               st.sampled_from([(0, 1), (1, 2), (2, 0), (0, 2)])),
                     min_size=1, max_size=3)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=_datasets, new=_datasets, crash_at=st.integers(1, 30))
def test_a_crash_at_any_commit_step_leaves_old_or_new_on_every_root(
        tmp_path_factory, monkeypatch, old, new, crash_at):
    """In-process model of kill -9 (the subprocess sweeps in test_store_faults do
    the real thing): stop the commit of ``new`` over ``old`` at step ``crash_at``."""
    base = tmp_path_factory.mktemp("crash")
    roots = [str(base / n) for n in "abc"]

    def shards(spec, salt):
        return [_shard(roots, i, salt + data + b"\n", reps) for i, (data, reps) in
                enumerate(spec)]
    one = commit_generation(_body(roots, shards(old, b"old")), "ds", roots, None)
    old_content = _read_all(os.path.join(roots[0], "ds"))
    new_shards = shards(new, b"new")
    steps = {"n": 0}

    def fault_point(what, name=""):
        steps["n"] += 1
        if steps["n"] == crash_at:
            raise _Crash(what)
    monkeypatch.setenv(commit.KILL_ENV, "1000000")
    monkeypatch.setattr(commit, "fault_point", fault_point)
    try:
        commit_generation(_body(roots, new_shards), "ds", roots, one["digest"])
        crashed = False
    except _Crash:
        crashed = True
    monkeypatch.undo()
    new_content = sorted(b"new" + data + b"\n" for data, _ in new)
    seen = {tuple(_read_all(os.path.join(r, "ds"))) for r in roots}
    assert seen <= {tuple(old_content), tuple(new_content)}
    if not crashed:
        assert seen == {tuple(new_content)}
    repair_store(os.path.join(roots[1], "ds"))
    assert [r for r in verify_store(os.path.join(roots[2], "ds")) if r["status"] != "ok"] == []
    after = {tuple(_read_all(os.path.join(r, "ds"))) for r in roots}
    assert len(after) == 1
    if tuple(new_content) in seen:    # never rolled back
        assert after == {tuple(new_content)}


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10 ** 6), bit=st.integers(0, 7))
def test_any_bit_flip_in_a_manifest_is_caught_or_harmless(tmp_path_factory, position, bit):
    roots = [str(tmp_path_factory.mktemp("flip") / "a")]
    sealed = commit_generation(_body(roots, [_shard(roots, 0, b"x\n", [0])]), "ds", roots,
                               None)
    path = os.path.join(roots[0], "ds", MANIFEST)
    data = bytearray(open(path, "rb").read())
    data[position % len(data)] ^= 1 << bit
    open(path, "wb").write(bytes(data))
    copy = read_manifest_copy(path)
    if copy.status == "ok":   # e.g. a space became another space-like byte JSON ignores
        assert {k: v for k, v in copy.manifest.items() if k != "root_index"} == sealed
    else:
        assert copy.status == "invalid" and copy.detail


def test_folders_to_make_are_every_missing_folder_deepest_first(tmp_path):
    """What a run creates for its roots (and removes again if it commits nothing)."""
    from transforms.storage.commit import folders_to_make
    (tmp_path / "have").mkdir()
    roots = [str(tmp_path / "out" / "a"), str(tmp_path / "out" / "b"),
             str(tmp_path / "have"), str(tmp_path / "have" / "x" / "y"), "s3://bucket/r"]
    assert folders_to_make(roots) == [
        str(tmp_path / "have" / "x" / "y"), str(tmp_path / "have" / "x"),
        str(tmp_path / "out" / "a"), str(tmp_path / "out" / "b"), str(tmp_path / "out")]


def test_a_failed_first_run_leaves_none_of_its_shard_files(tmp_path):
    """No root holds a manifest (nothing ever committed): every shard and temporary
    file the run wrote goes; a file under another name is not ours and stays.  With
    a manifest on one root but not the other (a crash between manifest copies),
    nothing is deleted."""
    from transforms.storage.commit import discard_failed_run
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    names = ["shard-00000-of-00002-0123456789abcdef.jsonl.zst",
             "lang=en/shard-00001-of-00002-0123456789abcdef.jsonl.zst",
             ".tmp-shard-00001-x", "notes.txt"]
    for root in roots:
        for name in names:
            path = os.path.join(root, "ds", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(b"x")
    (tmp_path / "a" / "ds" / "manifest.json").write_bytes(b'{"shards": []}')
    assert discard_failed_run(roots, "ds") == []   # the roots disagree: nothing goes
    (tmp_path / "a" / "ds" / "manifest.json").unlink()
    removed = discard_failed_run(roots, "ds")
    assert sorted((s.root, s.name) for s in removed) == sorted(
        (root, name) for root in roots for name in names[:3])
    for root in roots:
        left = sorted(str(p.relative_to(root)) for p in pathlib.Path(root).rglob("*"))
        assert left == ["ds", "ds/notes.txt"], left


# ---------------------------------------------------------------- locks: the holder, races

def _lock_file(folder, **fields):
    import platform
    folder.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"host": platform.node(), "job": "prepare_corpus", "since": "then",
                       "token": "t", **fields}).encode()
    (folder / ".lock").write_bytes(data)
    return data


def test_the_holder_is_told_by_boot_id_and_start_ticks_not_by_the_clock(tmp_path):
    """A lock names its process exactly (boot id and start time in ticks): the same pid
    started at another tick (reused) or in another boot is gone, whatever the clock
    says; the same process is alive."""
    from transforms.storage.commit import _process_identity, read_lock
    me = _process_identity(os.getpid())
    assert me["state"] in "RS" and me["start_ticks"] > 0 and len(me["boot_id"]) == 36
    path = str(tmp_path / "ds" / ".lock")
    cases = {"alive": (me["boot_id"], me["start_ticks"], True),
             "pid reused": (me["boot_id"], me["start_ticks"] + 1, False),
             "another boot": ("0" * 36, me["start_ticks"], False)}
    for name, (boot_id, ticks, alive) in cases.items():
        # `since` far in the future: the clock alone would call every one of them alive
        _lock_file(tmp_path / "ds", pid=os.getpid(), boot_id=boot_id, start_ticks=ticks,
                   since="2999-01-01T00:00:00+00:00")
        assert read_lock(path).alive is alive, name


def test_a_zombie_holder_is_gone_and_its_lock_can_be_broken(tmp_path):
    """A holder that exited but is not reaped yet (a zombie) does not run: the lock is
    stale, --break_lock takes it."""
    import subprocess
    import time

    from transforms.storage.commit import read_lock
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        _lock_file(tmp_path / "ds", pid=child.pid)
        assert read_lock(str(tmp_path / "ds" / ".lock")).alive is False
        with DatasetLock([str(tmp_path / "ds")], job="next", break_lock=True) as lock:
            assert json.loads((tmp_path / "ds" / ".lock").read_bytes())["token"] == lock.token
    finally:
        child.wait()


def test_break_lock_puts_back_a_lock_taken_while_it_judged_another(tmp_path, monkeypatch):
    """--break_lock judges the lock's bytes; if the lock it moves aside is not those
    bytes (another run took it meanwhile), it is put back and this run refused."""
    from transforms.storage import commit
    judged = _lock_file(tmp_path / "ds", pid=2 ** 22 + 7)   # a killed run's: stale
    newer = json.dumps({"pid": os.getpid(), "host": "h", "job": "racer", "since": "now",
                        "token": "r"}).encode()
    real_rename = os.rename

    def rename(src, dst):   # another run breaks the stale lock and takes it, just before
        if src.endswith(".lock"):
            (tmp_path / "ds" / ".lock").write_bytes(newer)
        real_rename(src, dst)
    monkeypatch.setattr(commit.os, "rename", rename)
    with pytest.raises(DatasetLocked, match="is held by racer"):
        DatasetLock([str(tmp_path / "ds")], job="next", break_lock=True).acquire()
    assert (tmp_path / "ds" / ".lock").read_bytes() == newer
    assert judged != newer and sorted(os.listdir(tmp_path / "ds")) == [".lock"]


def test_a_lock_is_never_left_empty_by_a_failed_write(tmp_path, monkeypatch):
    """A full disk while the lock is written: no lock stays (an empty one made every
    later run say 'held by a writer that cannot be told'), nor a temporary file."""
    import errno as errno_

    from transforms.storage import commit
    from transforms.storage.commit import RootNotWritable
    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        if "x" in mode or "w" in mode:
            def write(data):
                raise OSError(errno_.ENOSPC, "No space left on device")
            f.write = write
        return f
    monkeypatch.setattr("builtins.open", full_disk)
    with pytest.raises(RootNotWritable, match=r"cannot write the dataset's lock .*/ds/\.lock: "
                       r"no space left on device$"):
        DatasetLock([str(tmp_path / "ds")], job="x").acquire()
    monkeypatch.undo()
    assert not (tmp_path / "ds").exists()   # the folder it made goes too
    # no hard links on this file system: the in-place write cleans up the same way
    monkeypatch.setattr(commit.os, "link", lambda a, b: (_ for _ in ()).throw(
        OSError(errno_.EPERM, "Operation not permitted")))
    monkeypatch.setattr(commit.os, "fdopen", lambda fd, mode: full_disk(fd, mode, closefd=True))
    with pytest.raises(RootNotWritable, match="no space left on device$"):
        DatasetLock([str(tmp_path / "ds")], job="x").acquire()
    assert not (tmp_path / "ds").exists()


def test_a_refused_lock_leaves_no_folder_it_made(tmp_path):
    """The second root's lock is held: the first root's folders, made by this try,
    are removed again; the holder's are untouched."""
    held = DatasetLock([str(tmp_path / "zzz" / "ds")], job="holder")
    held.acquire()
    try:
        with pytest.raises(DatasetLocked):
            DatasetLock([str(tmp_path / "aaa" / "new" / "ds"), str(tmp_path / "zzz" / "ds")],
                        job="second").acquire()
        assert sorted(os.listdir(tmp_path)) == ["zzz"]
        assert os.listdir(tmp_path / "zzz" / "ds") == [".lock"]
    finally:
        held.release()


def test_a_dataset_path_that_is_a_file_is_named_so(tmp_path):
    from transforms.storage.commit import RootNotWritable
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "corpus").write_bytes(b"")
    with pytest.raises(RootNotWritable, match=rf"cannot write the dataset's lock "
                       rf"{tmp_path}/a/corpus/\.lock: {tmp_path}/a/corpus is a file, not a "
                       rf"folder$"):
        DatasetLock([str(tmp_path / "a" / "corpus")], job="x").acquire()
    (tmp_path / "b").symlink_to(tmp_path / "nowhere")
    with pytest.raises(RootNotWritable, match=rf"{tmp_path}/b is a link to {tmp_path}/nowhere, "
                       r"which does not exist$"):
        DatasetLock([str(tmp_path / "b" / "corpus")], job="x").acquire()


def test_a_generation_whose_replicas_are_gone_is_not_committed(tmp_path):
    """Two runs holding the lock at once (a store whose lock is not atomic): one's clean-up
    deleted the other's shard files.  The other's commit must fail, not write a manifest
    naming files that are not there."""
    from transforms.storage.commit import StoreError
    roots = [str(tmp_path / n) for n in "ab"]
    shards = [_shard(roots, 0, b'{"id": 1}\n', [0, 1]), _shard(roots, 1, b'{"id": 2}\n', [0, 1])]
    os.remove(os.path.join(roots[1], "ds", shards[1]["name"]))
    with pytest.raises(StoreError, match=rf"not committing: 1 replica\(s\) the new generation "
                       rf"names are not there \(e\.g\. {roots[1]}/ds/{shards[1]['name']}\)"):
        commit_generation(_body(roots, shards), "ds", roots, None)
    assert not any(os.path.exists(os.path.join(r, "ds", MANIFEST)) for r in roots)
