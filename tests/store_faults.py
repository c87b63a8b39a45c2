"""Fault injection over text and array stores: the machinery behind
tests/test_store_faults.py and the figures in RELIABILITY.md.

    python -m tests.store_faults            # prints the figures (about 6 min)

Every trial starts from a pristine copy of a store (3 roots, R=2), injects
one fault, then checks: verify reports it; every record reads back exactly
(through a root whose manifest is intact); ``repair_store`` fixes it and a
second verify finds nothing; nothing outside the roots changed.  The kill
sweep runs a job in a subprocess that SIGKILLs itself at the Nth write step
(``$DATAPREP_KILL_AT``: a partial temp file, each rename, each deletion after
the commit), for every N until the job finishes, and checks that each root
reads the old or the new dataset completely, and that repair then leaves a
clean store.
"""
import errno
import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import orjson

from pipelines import compress_arrays, prepare_corpus
from transforms.storage.array_store import load_array
from transforms.storage.commit import KILL_ENV, StoreError
from transforms.storage.store import (
    MANIFEST, load_manifest, manifest_bytes, read_shard_verified, repair_store, verify_store)

TEXT, ARRAY = "text", "array"
DATASET = {TEXT: "ds", ARRAY: "emb"}


# ---------------------------------------------------------------- stores

def text_input(path, n=240, seed=0) -> str:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    lines = [orjson.dumps({"id": f"d{seed}-{i:04d}",
                           "text": " ".join(rng.choice(words, 12)) + f" {seed} {i}"})
             for i in range(n)]
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return str(path)


def array_input(path, rows=150, seed=0) -> str:
    np.save(path, np.random.default_rng(seed).normal(size=(rows, 8)).astype(np.float32))
    return str(path)


def job_argv(kind, source, roots, shards=3) -> list[str]:
    common = ["--output_roots", ",".join(map(str, roots)), "--replication", "2",
              "--dataset", DATASET[kind], "--run_config", "direct"]
    if kind == TEXT:
        return ["--input", source, "--num_shards", str(shards), "--no_near_dedup",
                "--max_bad_fraction", "0", *common]
    return ["--input", source, "--block_rows", str(-(-150 // shards)), *common]


def build(kind, source, roots, shards=3, *extra):
    job = prepare_corpus if kind == TEXT else compress_arrays
    return job.run(job_argv(kind, source, roots, shards) + list(extra))


def contents(kind, store, root_map=None):
    """What a reader gets from ``store``: sorted record lines, or the array's bytes."""
    if kind == ARRAY:
        return load_array(store, root_map).tobytes()
    manifest = load_manifest(store, root_map)
    lines = []
    for shard in manifest["shards"]:
        lines += read_shard_verified(manifest, store, shard, root_map=root_map).split(b"\n")[:-1]
    return sorted(lines)


def tree(base, skip=()) -> dict[str, str]:
    """Every path under ``base`` (not following links) -> a digest of what it is."""
    out = {}
    for dirpath, dirnames, names in os.walk(base):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in names + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                out[path] = "link:" + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[path] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[path] = "special"
    return out


# ---------------------------------------------------------------- faults

def _replica(roots, manifest, dataset, shard=0, copy=0):
    """Path of a replica in the copied ``roots`` (same order as the recorded ones)."""
    s = manifest["shards"][shard]
    return os.path.join(str(roots[s["replicas"][copy]]), dataset, s["name"])


def _flip(path, offset_fraction=0.5):
    data = bytearray(open(path, "rb").read())
    data[int(len(data) * offset_fraction)] ^= 0x10
    open(path, "wb").write(bytes(data))


REPLICA_FAULTS = ["bit_flip", "truncated", "zeroed_range", "deleted", "other_shards_bytes",
                  "symlink_out_of_root", "directory_in_place", "fifo_in_place", "eio"]
MANIFEST_FAULTS = ["manifest_truncated", "manifest_one_digit_changed", "manifest_deleted",
                   "manifest_directory", "manifest_dataset_escapes",
                   "manifest_forged_escape"]
STRAY_FAULTS = ["stale_shard", "temp_file", "unknown_file"]


def inject(fault, roots, dataset, manifest, outside, monkeypatch=None):
    """Apply ``fault`` to the store -> (path damaged, root index to open the store at)."""
    if fault in REPLICA_FAULTS:
        path = _replica(roots, manifest, dataset, shard=1, copy=1)
        if fault == "bit_flip":
            _flip(path)
        elif fault == "truncated":
            data = open(path, "rb").read()
            open(path, "wb").write(data[: len(data) // 2])
        elif fault == "zeroed_range":
            data = bytearray(open(path, "rb").read())
            data[4:36] = bytes(32)
            open(path, "wb").write(bytes(data))
        elif fault == "deleted":
            os.remove(path)
        elif fault == "other_shards_bytes":
            shutil.copyfile(_replica(roots, manifest, dataset, shard=0, copy=0), path)
        elif fault == "symlink_out_of_root":
            target = os.path.join(outside, "evil-" + os.path.basename(path))
            shutil.copyfile(path, target)      # identical bytes, but outside the root
            os.remove(path)
            os.symlink(target, path)
        elif fault == "directory_in_place":
            os.remove(path)
            os.makedirs(os.path.join(path, "sub"))
            open(os.path.join(path, "sub", "x"), "wb").write(b"x")
        elif fault == "fifo_in_place":
            os.remove(path)
            os.mkfifo(path)
        elif fault == "eio":
            _make_unreadable(path, monkeypatch)
        return path, 0
    if fault in MANIFEST_FAULTS:
        path = os.path.join(str(roots[1]), dataset, MANIFEST)
        data = open(path, "rb").read()
        if fault == "manifest_truncated":
            open(path, "wb").write(data[: len(data) // 2])
        elif fault == "manifest_one_digit_changed":
            m = orjson.loads(data)
            c = m["shards"][0]["checksum"]
            m["shards"][0]["checksum"] = ("1" if c[0] != "1" else "2") + c[1:]
            open(path, "wb").write(manifest_bytes(m))
        elif fault == "manifest_deleted":
            os.remove(path)
        elif fault == "manifest_directory":
            os.remove(path)
            os.makedirs(path)
        elif fault in ("manifest_dataset_escapes", "manifest_forged_escape"):
            from transforms.storage.commit import seal
            m = orjson.loads(data)
            m["dataset"] = "../escaped"
            if fault == "manifest_forged_escape":   # a digest that matches the forgery
                m = {**seal(m, m["generation"] + 1, m["digest"]), "root_index": 1}
            open(path, "wb").write(manifest_bytes(m))
        # repair is run through the damaged root itself: the hard case
        return path, 1
    directory = os.path.join(str(roots[2]), dataset)
    if fault == "stale_shard":
        path = os.path.join(directory, "shard-00000-of-00009-0123456789abcdef"
                            + (".bdparr" if dataset == "emb" else ".jsonl.zst"))
    elif fault == "temp_file":
        path = os.path.join(directory, ".tmp-shard-00001-of-00003.jsonl.zst.deadbeef.tmp")
    else:
        path = os.path.join(directory, "notes.txt")
    open(path, "wb").write(b"left over")
    return path, 0


def _make_unreadable(path, monkeypatch):
    """EIO on one replica (simulated: reading that path raises OSError(EIO))."""
    import transforms.storage.store as store
    real = store.read_bytes

    def read_bytes(p):
        if os.path.realpath(p) == os.path.realpath(path):
            raise OSError(errno.EIO, "Input/output error", p)
        return real(p)
    monkeypatch.setattr(store, "read_bytes", read_bytes)


def problems(rows) -> list[dict]:
    return [r for r in rows if r["status"] != "ok"]


def run_trial(kind, fault, pristine_roots, work, monkeypatch):
    """One fault on a fresh copy of the pristine store -> a result dict."""
    if os.path.exists(work):
        shutil.rmtree(work)
    base = os.path.join(work, "base")
    roots = [os.path.join(base, os.path.basename(str(r))) for r in pristine_roots]
    for src, dst in zip(pristine_roots, roots):
        shutil.copytree(str(src), dst, symlinks=True)
    outside = os.path.join(base, "outside")
    os.makedirs(outside)
    open(os.path.join(outside, "keep.txt"), "wb").write(b"not the store's")
    # the copied roots are new locations: map the recorded ones onto them
    root_map = {str(old): new for old, new in zip(pristine_roots, roots)}
    dataset = DATASET[kind]
    store0 = os.path.join(roots[0], dataset)
    expected = contents(kind, store0, root_map)
    manifest = load_manifest(store0, root_map)
    path, opened = inject(fault, roots, dataset, manifest, outside, monkeypatch)
    store = os.path.join(roots[opened], dataset)
    before_outside = tree(base, skip=set(roots))
    result = {"kind": kind, "fault": fault}
    rows = verify_store(store, root_map)
    result["detected"] = any(os.path.realpath(r["path"]) == os.path.realpath(path)
                             or r["path"] == path for r in problems(rows))
    result["read_ok"] = contents(kind, store0, root_map) == expected
    actions = repair_store(store, root_map)
    after = verify_store(store, root_map)
    if fault == "eio":      # the simulated EIO stays after a rewrite: judge repair without it
        monkeypatch.undo()
        after = verify_store(store, root_map)
    result["repaired"] = not problems(after) or (
        fault == "unknown_file" and [r["status"] for r in problems(after)] == ["stray:unknown"])
    result["read_after_repair"] = all(
        contents(kind, os.path.join(r, dataset), root_map) == expected for r in roots)
    # outside the roots: the planted file (and the symlink's target) untouched, nothing new
    result["outside_untouched"] = tree(base, skip=set(roots)) == before_outside
    result["actions"] = [f"{a['status']} -> {a['action']}" for a in actions]
    return result


# ---------------------------------------------------------------- kill sweep

def _subprocess_job(kind, argv, env_kill):
    module = "pipelines.prepare_corpus" if kind == TEXT else "pipelines.compress_arrays"
    env = {**os.environ, KILL_ENV: str(env_kill), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", module, *argv], env=env,
                          capture_output=True, text=True, timeout=600)


def kill_sweep(kind, work, rewrite=True, points=None):
    """Kill a (re)write at write step N, for N in ``points`` (default 1, 2, ...)
    until a run finishes -> list of per-point results.

    With ``rewrite`` the roots first hold an old dataset (3 shards); the new
    run writes other data (2 shards).  After each kill: every root must read
    the old or the new dataset completely (or, for a first write, nothing or
    the new one); then repair (breaking the killed run's lock) and a verify
    must be clean.
    """
    results = []
    os.makedirs(work, exist_ok=True)
    ext = "jsonl" if kind == TEXT else "npy"
    make = text_input if kind == TEXT else array_input
    old_src = make(os.path.join(work, f"old.{ext}"), seed=1)
    new_src = make(os.path.join(work, f"new.{ext}"), seed=2)
    dataset = DATASET[kind]
    live = os.path.join(work, "live")
    roots = [os.path.join(live, n) for n in ("a", "b", "c")]
    backup = os.path.join(work, "backup")
    old = None
    if rewrite:
        build(kind, old_src, roots, 3)
        old = contents(kind, os.path.join(roots[0], dataset))
        shutil.copytree(live, backup, symlinks=True)
    ref = os.path.join(work, "reference")
    build(kind, new_src, [os.path.join(ref, n) for n in ("a", "b", "c")], 2)
    new = contents(kind, os.path.join(ref, "a", dataset))
    for point in points or range(1, 1000):
        shutil.rmtree(live, ignore_errors=True)
        if rewrite:
            shutil.copytree(backup, live, symlinks=True)
        proc = _subprocess_job(kind, job_argv(kind, new_src, roots, 2), point)
        killed = proc.returncode == -9
        states = []
        for root in roots:
            try:
                got = contents(kind, os.path.join(root, dataset))
                states.append("new" if got == new else "old" if got == old else "WRONG")
            except (StoreError, OSError) as err:
                states.append("none" if not rewrite else f"ERROR {err}")
        store = os.path.join(roots[0], dataset)
        repaired = None
        if states.count("none") < len(roots):
            repair_store(store, break_lock=True)
            rows = verify_store(store)
            finals = {("new" if contents(kind, os.path.join(r, dataset)) == new else
                       "old" if contents(kind, os.path.join(r, dataset)) == old else "WRONG")
                      for r in roots}
            repaired = (not problems(rows), finals.pop() if len(finals) == 1 else "mixed")
        results.append({"point": point, "killed": killed, "rc": proc.returncode,
                        "states": states, "repaired": repaired,
                        "stderr": proc.stderr.strip().splitlines()[-1:] if not killed else []})
        if not killed:
            break
    shutil.rmtree(work, ignore_errors=True)
    return results


def survived(result, rewrite=True) -> bool:
    """Every root read a complete dataset (old or new; nothing for a first write),
    and repair left a clean store holding one of them."""
    allowed = {"old", "new"} if rewrite else {"none", "new"}
    if not set(result["states"]) <= allowed:
        return False
    if result["repaired"] is None:
        return not rewrite
    clean, final = result["repaired"]
    # repair never rolls back: if any root read the new dataset, all do after repair
    return clean and final in ("old", "new") and ("new" not in result["states"]
                                                  or final == "new")


# ---------------------------------------------------------------- figures

class _Patch:
    """A minimal monkeypatch for running trials outside pytest."""

    def __init__(self):
        self.saved = []

    def setattr(self, obj, name, value):
        self.saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def undo(self):
        for obj, name, value in reversed(self.saved):
            setattr(obj, name, value)
        self.saved = []


def main():
    import tempfile
    work = tempfile.mkdtemp(prefix="store-faults-")
    rows = []
    for kind in (TEXT, ARRAY):
        src = (text_input if kind == TEXT else array_input)(
            os.path.join(work, f"in-{kind}.{'jsonl' if kind == TEXT else 'npy'}"))
        pristine = [os.path.join(work, kind, n) for n in ("r0", "r1", "r2")]
        build(kind, src, pristine, 3)
        for fault in REPLICA_FAULTS + MANIFEST_FAULTS + STRAY_FAULTS:
            patch = _Patch()
            try:
                rows.append(run_trial(kind, fault, pristine, os.path.join(work, "t"), patch))
            finally:
                patch.undo()
    print("| store | fault | detected | read correctly | repaired | outside untouched |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['kind']} | {r['fault']} | {r['detected']} | {r['read_ok']} | "
              f"{r['repaired'] and r['read_after_repair']} | {r['outside_untouched']} |")
    n = len(rows)
    print(f"\nfaults injected {n}; detected {sum(r['detected'] for r in rows)}; read "
          f"correctly {sum(r['read_ok'] for r in rows)}; repaired "
          f"{sum(r['repaired'] and r['read_after_repair'] for r in rows)}; nothing outside "
          f"the roots touched in {sum(r['outside_untouched'] for r in rows)}")
    for kind in (TEXT, ARRAY):
        for rewrite in (False, True):
            sweep = kill_sweep(kind, os.path.join(work, f"kill-{kind}-{rewrite}"), rewrite)
            kills = [r for r in sweep if r["killed"]]
            ok = sum(survived(r, rewrite) for r in kills)
            patterns = {}
            for r in kills:
                key = ",".join(r["states"])
                patterns[key] = patterns.get(key, 0) + 1
            finals = {}
            for r in kills:
                key = "n/a" if r["repaired"] is None else \
                    f"{'clean' if r['repaired'][0] else 'PROBLEMS'} {r['repaired'][1]}"
                finals[key] = finals.get(key, 0) + 1
            print(f"kill -9 sweep, {kind} {'rewrite' if rewrite else 'first write'}: "
                  f"{len(kills)} kill points, {ok} survived; the run after the last point "
                  f"exited {sweep[-1]['rc']}")
            print(f"   what roots a,b,c read after the kill: {patterns}")
            print(f"   after repair: {finals}")
            for r in kills:
                if not survived(r, rewrite):
                    print("   NOT SURVIVED", r)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
