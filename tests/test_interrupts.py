"""Ctrl-C at every point of a run, and $TMPDIR after every kind of run.

Each job runs as a real process (``python -m pipelines.prepare_corpus``, or a
driver that runs its ``main`` as the program) with ``$TMPDIR`` pointing at a
fresh folder.  SIGINT is sent at a named point: the driver wraps the function
that runs there so that it prints ``AT <point>`` on stdout and waits, and the
test sends the signal when it reads that line.  Every Ctrl-C ends with exit
status 130, one line, no traceback, ``$TMPDIR`` as it was, and the committed
dataset either unchanged (before the commit) or the new generation whole, with
its audit files and report (after it).
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from pipelines import prepare_corpus
from tests.test_progress import big_corpus
from transforms.storage import store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANCELLED = "prepare_corpus: interrupted; the job was cancelled and its temporary files deleted"
FINISHED = ("prepare_corpus: interrupted after the job finished; its output is committed and "
            "its temporary files deleted")
TEMPORARY = ("beam-temp", ".tmp-", ".runs-", ".lock")

# point -> (module attribute wrapped, where it is looked up)
POINTS = {
    "before": "pipelines.prepare_corpus:probe_inputs",              # before the pipeline
    "failed_cleanup": "pipelines.prepare_corpus:discard_failed_run",  # a failed run cleaned up
    "promote": "pipelines.prepare_corpus:_promote_audit",           # committed: audit files
    "report": "pipelines.prepare_corpus:write_report",              # committed: the report
}

DRIVER = textwrap.dedent("""
    import atexit, importlib, sys, time
    point = sys.argv[1]
    def announce():
        print("AT", point, flush=True)
        time.sleep(30)
    if point in ("exit", "exit_dataprep"):
        # after the last line, while the interpreter shuts down (Beam's exit hooks run then)
        atexit.register(announce)
    elif point != "none":
        module, name = sys.argv[2].split(":")
        module = importlib.import_module(module)
        original = getattr(module, name)
        def wrapped(*args, **kwargs):
            announce()
            return original(*args, **kwargs)
        setattr(module, name, wrapped)
    if point == "exit_dataprep":   # the console script: dataprep prepare-corpus ...
        sys.argv = ["dataprep", "prepare-corpus"] + sys.argv[3:]
        from pipelines.__main__ import main
        main()
    else:
        sys.argv = ["prepare_corpus"] + sys.argv[3:]
        from pipelines import prepare_corpus
        prepare_corpus.main()
""")


def env(tmpdir, **extra):
    out = {**os.environ, "PYTHONPATH": ROOT, "TMPDIR": str(tmpdir),
           "DATAPREP_PROGRESS_INTERVAL": "100", **extra}
    out.pop("DATAPREP_RUN_CONFIG", None)
    return out


def flags(tmp_path, *more, run_config="direct"):
    return ["--output_roots", f"{tmp_path / 'a'},{tmp_path / 'b'}", "--run_config", run_config,
            *more]


def start(tmp_path, point, *job_flags):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    command = [sys.executable, "-c", DRIVER, point, POINTS.get(point, "-"), *job_flags]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env(tmpdir), cwd=tmp_path)


def interrupt_at(proc, point):
    """Read stdout until ``AT <point>``, send SIGINT there; -> (stdout lines, stderr lines)."""
    seen = []
    for line in iter(proc.stdout.readline, b""):
        seen.append(line.decode())
        if line.decode().strip() == f"AT {point}":
            proc.send_signal(signal.SIGINT)
            break
    else:
        proc.wait(timeout=60)
        raise AssertionError(f"the job ended before {point}: {seen}\n"
                             f"{proc.stderr.read().decode()}")
    out, err = proc.communicate(timeout=120)
    return seen + out.decode().splitlines(), err.decode().splitlines()


def files_under(*folders):
    """``{relative path: bytes}`` of every file under the folders (folders listed too)."""
    found = {}
    for folder in folders:
        for top, dirs, names in os.walk(folder):
            for name in dirs:
                found[os.path.relpath(os.path.join(top, name), folder.parent) + "/"] = None
            for name in names:
                path = os.path.join(top, name)
                with open(path, "rb") as f:
                    found[os.path.relpath(path, folder.parent)] = f.read()
    return found


def committed(tmp_path):
    """The two roots' files, without the last run's audit folder (a failed run leaves its
    dead letters there by design)."""
    return {k: v for k, v in files_under(tmp_path / "a", tmp_path / "b").items()
            if "/_audit/last_run" not in k}


def commit_once(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipelines.prepare_corpus",
                           *flags(tmp_path)], capture_output=True, timeout=600,
                          env=env(tmp_path / "tmpdir"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return committed(tmp_path)


def no_temporaries(tmp_path):
    names = [k for k in files_under(tmp_path / "a", tmp_path / "b")
             if os.path.basename(k.rstrip("/")).startswith(TEMPORARY)]
    assert names == []


@pytest.fixture
def tmpdir_folder(tmp_path):
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("point", ["before", "failed_cleanup"])
def test_ctrl_c_before_the_commit_leaves_the_committed_dataset(tmp_path, tmpdir_folder, point):
    """Before the pipeline, and while a failed run (too many bad lines) is cleaned up:
    status 130, one line, the first generation byte for byte, $TMPDIR empty."""
    before = commit_once(tmp_path)
    assert os.listdir(tmpdir_folder) == []
    more = ("--max_bad_fraction", "0") if point == "failed_cleanup" else ()
    proc = start(tmp_path, point, *flags(tmp_path, *more))
    out, err = interrupt_at(proc, point)
    assert proc.returncode == 130, err
    assert err[-1] == CANCELLED and "Traceback" not in "\n".join(err)
    assert [line for line in err if "interrupted" in line] == [CANCELLED]
    assert not [line for line in out if line.startswith("store: ")]
    assert committed(tmp_path) == before
    no_temporaries(tmp_path)
    assert os.listdir(tmpdir_folder) == []


@pytest.mark.parametrize("point", ["promote", "report", "exit", "exit_dataprep"])
def test_ctrl_c_after_the_commit_ends_with_the_new_generation_whole(tmp_path, tmpdir_folder,
                                                                    point):
    """While the audit files move, while the report is written, and after the report
    line was printed (exit hooks): status 130 (not -2), one line, no traceback; the
    generation is committed with its audit files and its report on both roots."""
    proc = start(tmp_path, point, *flags(tmp_path))
    out, err = interrupt_at(proc, point)
    assert proc.returncode == 130, err
    assert err[-1] == FINISHED and "Traceback" not in "\n".join(err)
    assert [line for line in err if "interrupted" in line] == [FINISHED]
    assert err[-2].startswith("prepare_corpus done in ")
    printed = [line for line in out if line.startswith("report: ")]
    # held steps come before the last lines
    assert bool(printed) == point.startswith("exit")
    for root in ("a", "b"):
        dataset = tmp_path / root / "corpus"
        assert store.load_manifest(str(dataset))["generation"] == 1
        report = orjson.loads((dataset / "_audit" / "run_report.json").read_bytes())
        assert report["counters"]["store/records"] == store.load_manifest(
            str(dataset))["records"]
        assert (dataset / "_audit" / "run_report.html").exists()
    audit = sorted(os.listdir(tmp_path / "a" / "corpus" / "_audit"))
    assert "last_run" not in audit and [n for n in audit if n.startswith("dead_letters")]
    rows = store.verify_store(str(tmp_path / "a" / "corpus"))
    assert rows and all(r["status"] == "ok" for r in rows)
    no_temporaries(tmp_path)
    assert os.listdir(tmpdir_folder) == []


def test_ctrl_c_while_the_job_runs_keeps_the_committed_generation(tmp_path, tmpdir_folder):
    """The pipeline cancelled mid-run (a 24k-line input): 130, the display's last line
    then the one line, the first generation byte for byte, $TMPDIR empty."""
    before = commit_once(tmp_path)
    corpus = big_corpus(tmp_path / "big.jsonl")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.prepare_corpus",
                             *flags(tmp_path, "--input", corpus)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path,
                            env=env(tmpdir_folder, DATAPREP_PROGRESS_INTERVAL="1"))
    first = proc.stderr.readline().decode()   # the display is up: the pipeline runs
    assert first.startswith("prepare_corpus 0:00:00"), first
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    lines = rest.decode().splitlines()
    assert proc.returncode == 130, lines
    assert lines[-1] == CANCELLED and lines[-2].startswith("prepare_corpus interrupted in ")
    assert committed(tmp_path) == before
    no_temporaries(tmp_path)
    assert os.listdir(tmpdir_folder) == []


@pytest.mark.parametrize("run_config", ["direct", "direct_multiprocess"])
def test_tmpdir_is_as_before_after_a_run(tmp_path, tmpdir_folder, run_config):
    proc = subprocess.run([sys.executable, "-m", "pipelines.prepare_corpus",
                           *flags(tmp_path, run_config=run_config)], capture_output=True,
                          timeout=600, env=env(tmpdir_folder), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(tmpdir_folder) == []


def test_tmpdir_after_a_failed_run_holds_only_the_log_it_names(tmp_path, tmpdir_folder):
    proc = subprocess.run([sys.executable, "-m", "pipelines.prepare_corpus",
                           *flags(tmp_path, "--max_bad_fraction", "0")], capture_output=True,
                          text=True, timeout=600, env=env(tmpdir_folder), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    log = proc.stderr.splitlines()[-1].removeprefix("  (full log: ").removesuffix(")")
    assert os.path.dirname(log) == str(tmpdir_folder)
    assert os.listdir(tmpdir_folder) == [os.path.basename(log)]
    no_temporaries(tmp_path)


def test_run_temp_dir_is_removed_however_the_block_ends(tmp_path, monkeypatch):
    import tempfile

    from pipelines import progress
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError):
        with progress.run_temp_dir() as folder:
            assert tempfile.gettempdir() == folder and os.path.dirname(folder) == str(tmp_path)
            tempfile.mkdtemp(prefix="beam-temp")
            raise RuntimeError("boom")
    assert tempfile.gettempdir() == str(tmp_path) and os.listdir(tmp_path) == []


def test_deferred_interrupts_hold_ctrl_c_until_the_step_is_done():
    from pipelines import progress
    done = []
    with pytest.raises(KeyboardInterrupt):
        with progress.deferred_interrupts():
            with progress.deferred_interrupts():   # nested: held until the outermost ends
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)
                done.append("inner")
            done.append("outer")
    assert done == ["inner", "outer"]
    # inside the handling of an interrupt, a second Ctrl-C is dropped
    try:
        raise progress.Interrupted("x")
    except progress.Interrupted:
        with progress.deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
