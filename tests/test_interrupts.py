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
import re
import signal
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from pipelines import prepare_corpus
from pipelines import run_config as run_configs
from tests.interrupting import interrupt_after
from tests.test_progress import PLAIN, big_corpus
from transforms.storage import store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the program name of the usage errors: the driver runs the job as python -m does
PROG = "python -m pipelines.prepare_corpus"
CANCELLED = f"{PROG}: interrupted; the job was cancelled and its temporary files deleted"
def finished_line(tmp_path, generation=1, prog=PROG, unchanged=False) -> str:
    """The interrupted line of a run that committed: naming the generation and store."""
    return (f"{prog}: interrupted after the job finished; its output is committed "
            f"(generation {generation} at {tmp_path / 'a' / 'corpus'}"
            f"{', unchanged' if unchanged else ''}) and its temporary files deleted")
TEMPORARY = ("beam-temp", ".tmp-", ".runs-", ".lock")

# point -> (module attribute wrapped, where it is looked up)
POINTS = {
    # in the pipeline, right after the commit (the runner still finishing): SIGINT there
    "committed": "transforms.storage.store:commit_generation",
    "committed_group": "transforms.storage.store:commit_generation",
    "before": "pipelines.prepare_corpus:probe_inputs",              # before the pipeline
    "failed_cleanup": "pipelines.prepare_corpus:discard_failed_run",  # a failed run cleaned up
    "failing": "pipelines.progress:failing",     # the run's failure just known
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
        # after the last line, while the interpreter shuts down: an exit hook registered
        # during the run, as Beam registers its job servers' (run before the job's own
        # last hook, which then ignores Ctrl-C for the teardown: pipelines.cli.run_job)
        from pipelines import progress
        run_pipeline = progress.run_pipeline
        def registering(*args, **kwargs):
            atexit.register(announce)
            return run_pipeline(*args, **kwargs)
        progress.run_pipeline = registering
    elif point == "exit_import_hook":
        # an exit hook registered at import, before the run (logging's, pyarrow's), in
        # the command's process: its SIGINT guard was registered first, when pipelines
        # was imported, so this hook runs before it (Ctrl-C: one line, 130)
        sys.argv[0] = "dataprep"
        import pipelines
        atexit.register(announce)
    elif point == "teardown":
        # registered before the job (runs after every hook of it): a Ctrl-C here, after
        # the job's last exit hook, is one while the interpreter is torn down
        import os, signal
        def last():
            handler = signal.getsignal(signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
            print("SURVIVED", handler is signal.SIG_IGN, flush=True)
        atexit.register(last)
    elif point in ("committed", "committed_group"):
        import os, signal
        module, name = sys.argv[2].split(":")
        module = importlib.import_module(module)
        original = getattr(module, name)
        def wrapped(*args, **kwargs):
            out = original(*args, **kwargs)
            if point == "committed":
                os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C now, the runner not done yet
            else:   # as a terminal sends it: to the whole group (a Prism child too)
                os.killpg(os.getpgid(0), signal.SIGINT)
            time.sleep(1.0)
            return out
        setattr(module, name, wrapped)
    elif point.startswith(("in_commit", "at_commit")):
        # N Ctrl-Cs (point "in_commit:N"), 0.3 s apart, as the commit starts: inside the
        # commit gate (the commit under way) or just before it (the gate still open)
        import os, signal
        module, name = sys.argv[2].split(":")
        module = importlib.import_module(module)
        original = getattr(module, name)
        def wrapped(*args, **kwargs):
            for _ in range(int(point.split(":")[1])):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.3)
            time.sleep(0.5)
            return original(*args, **kwargs)
        setattr(module, name, wrapped)
    elif point == "failing":   # Ctrl-C just after the run's failure is known
        module, name = sys.argv[2].split(":")
        module = importlib.import_module(module)
        original = getattr(module, name)
        def wrapped(*args, **kwargs):
            original(*args, **kwargs)
            if args and not isinstance(args[0], KeyboardInterrupt):
                announce()
        setattr(module, name, wrapped)
    elif point == "fail_after_commit":   # the run fails once its generation is committed
        module, name = sys.argv[2].split(":")
        module = importlib.import_module(module)
        original = getattr(module, name)
        def wrapped(*args, **kwargs):
            original(*args, **kwargs)
            raise RuntimeError("injected failure after the commit")
        setattr(module, name, wrapped)
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


def test_ctrl_c_before_the_commit_leaves_the_committed_dataset(tmp_path, tmpdir_folder):
    """Before the pipeline: status 130, one line, the first generation byte for byte,
    $TMPDIR empty."""
    before = commit_once(tmp_path)
    assert os.listdir(tmpdir_folder) == []
    proc = start(tmp_path, "before", *flags(tmp_path))
    out, err = interrupt_at(proc, "before")
    assert proc.returncode == 130, err
    assert err[-1] == CANCELLED and "Traceback" not in "\n".join(err)
    assert [line for line in err if "interrupted" in line] == [CANCELLED]
    assert not [line for line in out if line.startswith("store: ")]
    assert committed(tmp_path) == before
    no_temporaries(tmp_path)
    assert os.listdir(tmpdir_folder) == []


BAD_LINES = ("prepare_corpus failed: not writing the manifest: 3 of 400 lines are bad "
             "(0.75%), above --max_bad_fraction 0; see the dead letters in ")


@pytest.mark.parametrize("point", ["failing", "failed_cleanup", "exit"])
def test_ctrl_c_after_a_run_failed_shows_the_failure(tmp_path, tmpdir_folder, point):
    """A run that failed (too many bad lines), then Ctrl-C as the failure is known,
    while it is cleaned up, or while the process ends after its lines: the failure is
    what the user sees (its line and the log file's, once), status 1, not "cancelled";
    the dead letters its line names are there; the first generation byte for byte;
    $TMPDIR holds only the log file the lines name."""
    before = commit_once(tmp_path)
    proc = start(tmp_path, point, *flags(tmp_path, "--max_bad_fraction", "0"))
    out, err = interrupt_at(proc, point)
    assert proc.returncode == 1, err
    said = [line for line in err if not PLAIN.match(line)]
    assert len(said) == 2 and said[0].startswith(BAD_LINES), err
    log = said[1].removeprefix("  (full log: ").removesuffix(")")
    assert os.listdir(tmpdir_folder) == [os.path.basename(log)]
    letters = said[0].removeprefix(BAD_LINES)
    assert [n for n in os.listdir(letters) if n.startswith("dead_letters")], letters
    assert not [line for line in err if "interrupted" in line or "Traceback" in line]
    assert committed(tmp_path) == before
    no_temporaries(tmp_path)


def test_ctrl_c_while_a_failed_run_is_cleaned_up_in_this_process(tmp_path, monkeypatch, capsys):
    """The same, the job's main called in this process: SystemExit 1 and the failure's
    lines, no interrupted line."""
    original = prepare_corpus.discard_failed_run

    def discard(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C while the failed run is cleaned up
        time.sleep(0.05)
        return original(*args, **kwargs)
    monkeypatch.setattr(prepare_corpus, "discard_failed_run", discard)
    with pytest.raises(SystemExit) as exit_:
        prepare_corpus.main(["--output_roots", f"{tmp_path / 'a'}", "--run_config", "direct",
                             "--no_near_dedup", "--max_bad_fraction", "0"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "failed" in line or "interrupted" in line] == [
        BAD_LINES + str(tmp_path / "a" / "corpus" / "_audit" / "last_run")], err


@pytest.mark.parametrize("point", ["promote", "report", "exit", "exit_dataprep",
                                   "exit_import_hook"])
def test_ctrl_c_after_the_commit_ends_with_the_new_generation_whole(tmp_path, tmpdir_folder,
                                                                    point):
    """While the audit files move, while the report is written, and after the report
    line was printed (exit hooks): status 130 (not -2), one line naming the committed
    generation and store, no traceback; the summary on stdout all the same (the
    Ctrl-C waits for its last line); the generation is committed with its audit files
    and its report on both roots."""
    proc = start(tmp_path, point, *flags(tmp_path))
    out, err = interrupt_at(proc, point)
    finished = finished_line(tmp_path, prog="dataprep prepare-corpus"
                             if point == "exit_dataprep" else PROG)
    assert proc.returncode == 130, err
    assert err[-1] == finished and "Traceback" not in "\n".join(err)
    assert [line for line in err if "interrupted" in line] == [finished]
    assert err[-2].startswith("prepare_corpus done in ")
    assert [line.rstrip("\n") for line in out if line.startswith("store: ")] == [
        f"store: {tmp_path / 'a' / 'corpus'}  (replicas on 2 root(s), R=2)"]
    assert [line for line in out if line.startswith("report: ")]   # the summary's last line
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


def test_a_terminals_ctrl_c_right_after_the_commit_on_the_configured_runner(
        tmp_path, tmpdir_folder, run_config):
    """Ctrl-C to the whole process group (as a terminal sends it) right after the
    commit, the runner still finishing, with the job starting its own runner
    services (no shared job server): on Prism the Prism process, a child in the same
    group, gets it too and dies under the job (this once printed ``failed: >``).
    130, the one interrupted line naming the committed generation, no traceback, the
    generation whole on both roots, and no process of the group left."""
    config = {k: v for k, v in run_configs.load(run_config).items() if k != "job_endpoint"}
    own = run_configs.write(config, str(tmp_path / "own.yaml"))
    command = [sys.executable, "-c", DRIVER, "committed_group", POINTS["committed_group"],
               *flags(tmp_path, run_config=own)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env(tmpdir_folder), cwd=tmp_path, start_new_session=True)
    out, err = proc.communicate(timeout=600)
    err = err.decode().splitlines()
    assert proc.returncode == 130, err
    assert err[-1] == finished_line(tmp_path), err
    assert "Traceback" not in "\n".join(err) and not [e for e in err if "failed" in e]
    for root in ("a", "b"):
        assert store.load_manifest(str(tmp_path / root / "corpus"))["generation"] == 1
    rows = store.verify_store(str(tmp_path / "a" / "corpus"))
    assert rows and all(r["status"] == "ok" for r in rows)
    deadline = time.monotonic() + 30
    while True:   # the group's processes (a runner's children) end with the job
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a process of the job's group is still running"
        time.sleep(0.2)
    no_temporaries(tmp_path)


def test_ctrl_c_while_the_interpreter_is_torn_down_is_ignored(tmp_path, tmpdir_folder):
    """After the job's last exit hook Python puts SIGINT's default back while it tears
    down: a Ctrl-C there killed the process by the signal (status -2, no line; the
    sweep below saw it).  The job's last hook ignores SIGINT: the run ends as it
    was (0, its summary), the generation committed."""
    proc = subprocess.run([sys.executable, "-c", DRIVER, "teardown", "-", *flags(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env(tmpdir_folder),
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "SURVIVED True"
    assert proc.stderr.splitlines()[-1].startswith("prepare_corpus done in ")
    assert "interrupted" not in proc.stderr
    assert store.load_manifest(str(tmp_path / "a" / "corpus"))["generation"] == 1
    no_temporaries(tmp_path)


def test_ctrl_c_while_the_job_runs_keeps_the_committed_generation(tmp_path, tmpdir_folder):
    """The pipeline cancelled mid-run (a 24k-line input): 130, the display's progress
    lines then the one line (no summary), the first generation byte for byte,
    $TMPDIR empty."""
    before = commit_once(tmp_path)
    corpus = big_corpus(tmp_path / "big.jsonl")
    outcome = interrupt_after(
        [sys.executable, "-m", "pipelines.prepare_corpus", *flags(tmp_path, "--input", corpus)],
        2.0, wait_for="prepare_corpus 0:00:00", cwd=tmp_path,   # the display is up
        env=env(tmpdir_folder, DATAPREP_PROGRESS_INTERVAL="1"))
    lines = outcome.stderr.splitlines()
    assert outcome.interrupted and outcome.code == 130, lines
    assert lines[-1] == CANCELLED and all(PLAIN.match(line) for line in lines[:-1]), lines
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


# ---------------------------------------------------------------- Ctrl-C at any moment

def dataprep_command() -> list[str]:
    """The installed ``dataprep`` console script beside this interpreter."""
    return [os.path.join(os.path.dirname(sys.executable), "dataprep"), "prepare-corpus"]


def interrupt_lines(prog: str) -> dict[str, str]:
    """The one line a Ctrl-C may end with -> what it says became of the run."""
    return {f"{prog}: interrupted": "starting",   # still importing: no run yet
            f"{prog}: interrupted; the job was cancelled and its temporary files deleted":
                "cancelled"}


FINISHED_LINE = re.compile(r"(.*): interrupted after the job finished; its output is committed "
                           r"\(generation \d+ at (\S+)\) and its temporary files deleted")


def check_moment(outcome, prog, terminal, tmp_path, tmpdir, before) -> list[str]:
    """What is wrong with one interrupted (or finished) run, as the user sees it."""
    problems = []
    lines = outcome.stderr_lines()
    said = "done" if outcome.code == 0 else None
    if outcome.code == 130:
        said = interrupt_lines(prog).get(lines[-1] if lines else "")
        finished = FINISHED_LINE.fullmatch(lines[-1]) if lines else None
        if finished and finished.groups() == (prog, str(tmp_path / "a" / "corpus")):
            said = "finished"
            if "report: " not in outcome.stdout:   # the summary, the Ctrl-C waited for it
                problems.append("a finished run printed no report line")
        if said is None:
            problems.append(f"last stderr line {lines[-1:]} is not an interrupted line")
        for line in lines[:-1]:   # before it: progress only, no summary, no traceback
            progress_line = (line.startswith("prepare_corpus ") and "interrupted" not in line
                             and " done in " not in line) if terminal else PLAIN.match(line)
            if not progress_line:
                problems.append(f"stderr line before the interrupted line: {line!r}")
        if said in ("starting", "cancelled") and outcome.stdout:
            problems.append(f"stdout of a cancelled run: {outcome.stdout!r}")
    elif outcome.code == 0:
        if not lines or not lines[-1].startswith("prepare_corpus done in "):
            problems.append(f"a finished run's stderr ends {lines[-1:]}")
        if "report: " not in outcome.stdout:
            problems.append("a finished run printed no report line")
    else:
        problems.append(f"exit status {outcome.code}")
    if "Traceback" in outcome.stderr or "Error" in outcome.stderr:
        problems.append("an error or traceback on stderr")
    left = os.listdir(tmpdir)
    if left:
        problems.append(f"left in $TMPDIR: {left}")
    names = [k for k in files_under(tmp_path / "a", tmp_path / "b")
             if os.path.basename(k.rstrip("/")).startswith(TEMPORARY)]
    if names:
        problems.append(f"temporaries in the store: {names}")
    now = committed(tmp_path)
    if said in ("starting", "cancelled"):
        if now != before:
            problems.append("the committed dataset changed")
    elif said in ("finished", "done"):
        dataset = tmp_path / "a" / "corpus"
        rows = store.verify_store(str(dataset))
        if not rows or any(r["status"] != "ok" for r in rows):
            problems.append(f"the committed generation does not verify: {rows}")
        report = orjson.loads((dataset / "_audit" / "run_report.json").read_bytes())
        if report["counters"]["store/records"] != store.load_manifest(str(dataset))["records"]:
            problems.append("the run report is not the committed generation's")
        audit = os.listdir(dataset / "_audit")
        if "last_run" in audit or not [n for n in audit if n.startswith("dead_letters")]:
            problems.append(f"the generation's audit files are not in place: {audit}")
    return problems


def started_late(outcome) -> bool:
    """Was the Ctrl-C before any code of ours ran (the interpreter's own start-up:
    Python reports it, or SIGINT's default action ends the process)?"""
    return (outcome.code == -signal.SIGINT and not outcome.stderr.strip()) or (
        outcome.code == 1 and "Fatal Python error: init_import_site" in outcome.stderr)


def test_ctrl_c_at_any_moment_of_a_run(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) at a sweep of
    moments from 0.05 s after the start to after the end of a run, alternately with
    stderr on a terminal and on a pipe, as ``dataprep prepare-corpus`` and as
    ``python -m pipelines.prepare_corpus``, on direct and direct_multiprocess.  At
    every moment: status 130 with exactly one interrupted line on stderr after
    nothing but progress (no summary, no traceback), or 0 and the normal output;
    $TMPDIR empty; no temporary file or lock in the store; the committed dataset
    byte for byte as it was (Ctrl-C before the commit) or a generation that
    verifies, with its audit files and report (after it).  A Ctrl-C so early that
    the interpreter is still starting (before any code of ours) ends as Python
    ends it; that moment must still leave nothing behind."""
    (tmp_path / "tmpdir").mkdir()
    started = time.monotonic()
    commit_once(tmp_path)
    length = time.monotonic() - started   # a whole run here: the sweep reaches past it
    # two inputs in turn (the sample with other ids and texts, of its size): every
    # commit changes the committed dataset
    corpora = [big_corpus(tmp_path / "one.jsonl", copies=1),
               big_corpus(tmp_path / "two.jsonl", copies=1)]
    with open(corpora[1], "rb") as f:
        data = f.read().replace(b" copy 0", b" copy two")
    with open(corpora[1], "wb") as f:
        f.write(data)
    commands = [(dataprep_command(), "dataprep prepare-corpus"),
                ([sys.executable, "-m", "pipelines.prepare_corpus"],
                 "python -m pipelines.prepare_corpus")]
    moments = [(d, "direct") for d in (0.05, 0.3, 1.0)]
    moments += [(length * f, "direct") for f in (0.4, 0.75, 0.95, 1.1)]
    # mid-run (its workers start warm: a run as quick as in-process direct's)
    moments += [(length * 0.4, "direct_multiprocess")]
    problems = {}
    for i, (delay, run_config) in enumerate(moments):
        terminal = i % 2 == 0
        command, prog = commands[(i // 2) % 2]
        tmpdir = tmp_path / f"tmp{i}"
        tmpdir.mkdir()
        before = committed(tmp_path)
        outcome = interrupt_after(
            [*command, *flags(tmp_path, "--input", corpora[i % 2], run_config=run_config)],
            delay, env=env(tmpdir), cwd=tmp_path, terminal=terminal)
        if started_late(outcome):
            found = [p for p in check_moment(outcome, prog, terminal, tmp_path, tmpdir, before)
                     if p.startswith(("left in", "temporaries", "the committed dataset"))]
            found += [] if delay < 1.0 else ["the interpreter was still starting"]
        else:
            found = check_moment(outcome, prog, terminal, tmp_path, tmpdir, before)
        if found:
            problems[f"{delay:.2f}s {run_config} {prog} "
                     f"{'terminal' if terminal else 'pipe'} -> {outcome.code}"] = \
                found + [f"stderr: {outcome.stderr[-3000:]!r}"]
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in problems.items())


# ---------------------------------------------------------------- the reviewer's cases

@pytest.mark.parametrize("where,n", [("in_commit", 1), ("in_commit", 3), ("in_commit", 5),
                                     ("at_commit", 2)])
def test_ctrl_c_pressed_n_times_as_the_commit_runs(tmp_path, tmpdir_folder, where, n):
    """N Ctrl-Cs while a (slowed) commit is under way inside the commit gate, or as it
    is about to take the gate: the first is handled, the others are held until the
    cleanup ended (none cuts short closing the gate, ending the processes or
    discarding the failed run).  Inside the gate: the commit ends, the job is finished
    (the "after the job finished" line, the new generation verifies, its shards all
    there); before it: the commit is refused and the store is byte for byte as it was."""
    before = commit_once(tmp_path)
    corpus = big_corpus(tmp_path / "two.jsonl", copies=1)
    target = ("transforms.storage.commit:_commit_generation" if where == "in_commit"
              else "transforms.storage.commit:commit_generation")
    proc = subprocess.run([sys.executable, "-c", DRIVER, f"{where}:{n}", target,
                           *flags(tmp_path, "--input", corpus)], capture_output=True,
                          text=True, timeout=600, env=env(tmpdir_folder), cwd=tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    dataset = tmp_path / "a" / "corpus"
    if where == "in_commit":
        finished = FINISHED_LINE.fullmatch(proc.stderr.splitlines()[-1])
        assert finished and finished.groups() == (PROG, str(dataset)), proc.stderr
        assert store.load_manifest(str(dataset))["generation"] == 2
        for root in ("a", "b"):
            results = store.verify_store(str(tmp_path / root / "corpus"))
            assert results and all(r["status"] == "ok" for r in results), results
        assert "last_run" not in os.listdir(dataset / "_audit")
    else:
        assert proc.stderr.splitlines()[-1] == CANCELLED, proc.stderr
        assert committed(tmp_path) == before
    no_temporaries(tmp_path)
    assert os.listdir(tmpdir_folder) == []


def test_ctrl_c_after_the_commit_inside_the_pipeline_finishes_the_job(tmp_path, tmpdir_folder):
    """SIGINT right after the pipeline committed, while the runner is still finishing
    (before run_pipeline returns): the job is finished, not cancelled: 130 with the
    "after the job finished" line, the generation's audit files promoted and its
    report written; the next run keeps them until it commits."""
    proc = subprocess.run([sys.executable, "-c", DRIVER, "committed", POINTS["committed"],
                           *flags(tmp_path)], capture_output=True, text=True, timeout=600,
                          env=env(tmpdir_folder), cwd=tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines()[-1] == finished_line(tmp_path), proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("report: ")   # the summary is printed
    dataset = tmp_path / "a" / "corpus"
    manifest = store.load_manifest(str(dataset))
    assert manifest["generation"] == 1
    audit = sorted(os.listdir(dataset / "_audit"))
    assert "last_run" not in audit, audit
    assert [n for n in audit if n.startswith("dead_letters")] and "run_report.json" in audit
    report = orjson.loads((dataset / "_audit" / "run_report.json").read_bytes())
    assert report["counters"]["store/records"] == manifest["records"]
    assert all(r["status"] == "ok" for r in store.verify_store(str(dataset)))
    no_temporaries(tmp_path)
    assert os.listdir(tmpdir_folder) == []


def test_ctrl_c_after_a_rerun_rewrote_the_same_manifest_says_it_is_committed(tmp_path,
                                                                              tmpdir_folder):
    """A rerun of the same inputs commits the same bytes (the generation and digest
    unchanged); a Ctrl-C right after that commit finishes the job as any commit does:
    130, the line naming the generation as unchanged, the summary printed, the
    dataset byte for byte as the first run left it (its report aside)."""
    before = commit_once(tmp_path)
    proc = subprocess.run([sys.executable, "-c", DRIVER, "committed", POINTS["committed"],
                           *flags(tmp_path)], capture_output=True, text=True, timeout=600,
                          env=env(tmpdir_folder), cwd=tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines()[-1] == finished_line(tmp_path, unchanged=True)
    assert proc.stdout.splitlines()[-1].startswith("report: ")
    report = "/_audit/run_report."
    assert {k: v for k, v in committed(tmp_path).items() if report not in k} == \
        {k: v for k, v in before.items() if report not in k}
    no_temporaries(tmp_path)
    assert os.listdir(tmpdir_folder) == []


@pytest.mark.parametrize("ending", ["failed", "cancelled", "failed_with_dead_letters",
                                    "failed_with_no_dead_letter", "failed_with_removed"])
def test_a_first_run_that_commits_nothing_leaves_no_folder(tmp_path, monkeypatch, capsys,
                                                           ending):
    """A first run that fails or is cancelled after it made its folders (the dataset
    folders, ``_audit/last_run/``, a partition folder): none stays, nor the root it
    created, nor the folder above it that it created (``out`` of ``out/a``); a root
    that was there before stays as it was; a failed run's dead letters stay, with the
    folders that hold them (an empty dead-letters file and the inputs list do not)."""
    import zstandard

    from pipelines import progress
    (tmp_path / "b").mkdir()   # a root made by the user: kept

    def run_pipeline(pipeline, **kwargs):
        last_run = tmp_path / "out" / "a" / "corpus" / "_audit" / "last_run"
        last_run.mkdir(parents=True)
        (tmp_path / "b" / "corpus" / "lang=en").mkdir(parents=True)
        letters = last_run / "dead_letters-00000-of-00001.jsonl.zst"
        if ending == "failed_with_dead_letters":
            letters.write_bytes(zstandard.compress(b'{"reason": "bad_json"}\n'))
        elif ending == "failed_with_removed":   # no dead letter, but removed records
            letters.write_bytes(zstandard.compress(b""))
            (last_run / "removed-00000-of-00001.jsonl.zst").write_bytes(
                zstandard.compress(b'{"removed": 1, "kept": 2}\n'))
        elif ending == "failed_with_no_dead_letter":
            letters.write_bytes(zstandard.compress(b""))
            (last_run / "inputs-00000-of-00001.jsonl.zst").write_bytes(
                zstandard.compress(b'{"path": "x"}\n'))
        raise KeyboardInterrupt if ending == "cancelled" else RuntimeError("boom")
    monkeypatch.setattr(progress, "run_pipeline", run_pipeline)
    with pytest.raises(SystemExit) as exit_:
        prepare_corpus.main(["--output_roots", f"{tmp_path / 'out' / 'a'},{tmp_path / 'b'}",
                             "--run_config", "direct", "--no_near_dedup"])
    assert exit_.value.code == (130 if ending == "cancelled" else 1)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    kept = ["b", "out", "out/a", "out/a/corpus", "out/a/corpus/_audit",
            "out/a/corpus/_audit/last_run",
            "out/a/corpus/_audit/last_run/dead_letters-00000-of-00001.jsonl.zst"]
    if ending == "failed_with_dead_letters":
        assert left == kept
    elif ending == "failed_with_removed":
        assert left == kept + ["out/a/corpus/_audit/last_run/removed-00000-of-00001.jsonl.zst"]
    else:
        assert left == ["b"]


@pytest.mark.parametrize("job", ["prepare_corpus", "compress_arrays"])
def test_ctrl_c_while_the_lock_is_taken_releases_it(tmp_path, monkeypatch, capsys, job):
    """A Ctrl-C that comes while the dataset's lock is being taken (held until it is
    taken): the run ends with 130 and one line, and no lock stays behind (the next
    run is not refused as "lock is held")."""
    import numpy as np

    from pipelines import compress_arrays
    from transforms.storage import commit
    original = commit.DatasetLock._create

    def create(directory, path, info):
        original(directory, path, info)
        os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C while the lock is being taken
        time.sleep(0.05)
    monkeypatch.setattr(commit.DatasetLock, "_create", staticmethod(create))
    roots = f"{tmp_path / 'a'},{tmp_path / 'b'}"
    if job == "prepare_corpus":
        main, argv = prepare_corpus.main, ["--output_roots", roots, "--run_config", "direct",
                                           "--no_near_dedup"]
    else:
        np.save(tmp_path / "x.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
        main, argv = compress_arrays.main, ["--input", str(tmp_path / "x.npy"),
                                            "--output_roots", roots, "--run_config", "direct"]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"python -m pipelines.{job}: interrupted")
    assert "Traceback" not in err
    locks = [p for p in files_under(tmp_path / "a", tmp_path / "b") if p.endswith(".lock")]
    assert locks == []
    monkeypatch.setattr(commit.DatasetLock, "_create", staticmethod(original))
    main(argv)   # not refused: the lock is gone
    assert store.load_manifest(str(tmp_path / "a" / ("corpus" if job == "prepare_corpus"
                                                     else "arrays")))["generation"] == 1


def test_dataset_lock_as_a_context_is_released_when_taking_it_is_interrupted(tmp_path,
                                                                            monkeypatch):
    from transforms.storage import commit
    original = commit.DatasetLock._create

    def create(directory, path, info):
        original(directory, path, info)
        raise KeyboardInterrupt
    monkeypatch.setattr(commit.DatasetLock, "_create", staticmethod(create))
    with pytest.raises(KeyboardInterrupt):
        with commit.DatasetLock([str(tmp_path / "d")]):
            pass
    assert os.listdir(tmp_path) == []   # no lock, nor the folder the lock made


def test_a_job_run_from_another_thread_returns(tmp_path):
    """prepare_corpus.main called from a thread that is not the main one (a service, a
    task runner): it runs and returns; no signal handler is touched (ValueError)."""
    import threading
    outcome = {}

    def call():
        try:
            prepare_corpus.main(["--output_roots", f"{tmp_path / 't1'},{tmp_path / 't2'}",
                                 "--run_config", "direct", "--no_near_dedup"])
            outcome["result"] = "returned"
        except BaseException as err:  # noqa: BLE001 - what the thread ended with
            outcome["result"] = f"{type(err).__name__}: {err}"
    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert outcome == {"result": "returned"}
    assert store.load_manifest(str(tmp_path / "t1" / "corpus"))["generation"] == 1
    assert signal.getsignal(signal.SIGINT) is before


def test_runs_from_threads_leave_the_process_temp_settings_alone(tmp_path, monkeypatch):
    """Two runs from threads of a host, overlapping: neither points tempfile or $TMPDIR
    at its folder (the host's own temporary files, made meanwhile, are not in a run's
    folder and outlive both runs); each run's folder is gone once it ended."""
    import tempfile
    import threading

    from pipelines import progress
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    a_in, a_out, b_in = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def job_a():
        with progress.run_temp_dir() as folder:
            seen["a"] = folder
            a_in.set()
            b_in.wait()
        a_out.set()

    def job_b():
        a_in.wait()
        with progress.run_temp_dir() as folder:
            seen["b"] = folder
            b_in.set()
            a_out.wait()
            seen["b_after_a"] = os.path.isdir(folder)
            seen["during"] = (tempfile.gettempdir(), os.environ.get("TMPDIR"))
    threads = [threading.Thread(target=job_a), threading.Thread(target=job_b)]
    for t in threads:
        t.start()
    a_in.wait()
    fd, hosts = tempfile.mkstemp(prefix="hosts-own-")   # the host's main thread
    os.close(fd)
    for t in threads:
        t.join()
    assert seen["a"] != seen["b"] and seen["b_after_a"]
    assert seen["during"] == (str(tmp_path), str(tmp_path))
    assert os.path.dirname(hosts) == str(tmp_path) and os.path.exists(hosts)
    assert tempfile.tempdir == str(tmp_path) and os.environ["TMPDIR"] == str(tmp_path)
    assert os.listdir(tmp_path) == [os.path.basename(hosts)]


SILENCED = textwrap.dedent("""
    import logging, os, sys, threading, time
    from pipelines import progress
    logging.basicConfig()
    go = threading.Event()
    def noisy():
        go.wait()
        while True:
            print("thread print", file=sys.stderr, flush=True)
            logging.getLogger("x").error("thread log")
            os.write(2, b"thread fd 2\\n")
            time.sleep(0.001)
    def failing():
        go.wait()
        raise FileNotFoundError(".runs-x/run-0")    # threading.excepthook
    class Noisy:
        def __del__(self):
            raise RuntimeError("ignored")             # "Exception ignored in"
    def dropping():
        go.wait()
        while True:
            Noisy()
            time.sleep(0.001)
    for target in (noisy, noisy, failing, dropping):
        threading.Thread(target=target, daemon=True).start()
    def cleanup():   # the run's files go while its threads still run
        go.set()
        time.sleep(0.2)
    progress._RUN["cleanups"].append(cleanup)
    print("stdout kept", flush=True)
    print("before", file=sys.stderr, flush=True)
    progress.exit_interrupted("prog")
""")


def test_exit_interrupted_prints_only_its_line_whatever_threads_do(tmp_path):
    """Threads printing, logging, writing to fd 2, dying of an exception and dropping
    objects whose __del__ raises, all while the run's files are deleted: stderr gets
    the one line after what came before, and stdout stays."""
    proc = subprocess.run([sys.executable, "-c", SILENCED], capture_output=True, text=True,
                          timeout=120, env=env(tmp_path))
    assert proc.returncode == 130
    assert proc.stdout == "stdout kept\n"
    assert proc.stderr == ("before\nprog: interrupted; the job was cancelled and its "
                           "temporary files deleted\n")


ARRAYS_COMMITTED = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    from transforms.storage import array_store
    work = sys.argv[1]
    np.save(os.path.join(work, "x.npy"), np.arange(4000, dtype=np.float32).reshape(1000, 4))
    original = array_store.commit_generation
    def wrapped(*args, **kwargs):
        out = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C now, the runner not done yet
        time.sleep(1.0)
        return out
    array_store.commit_generation = wrapped
    sys.argv = ["compress_arrays", "--input", os.path.join(work, "x.npy"),
                "--output_roots", f"{work}/a,{work}/b", "--run_config", "direct"]
    from pipelines import compress_arrays
    compress_arrays.main()
""")


def test_compress_arrays_ctrl_c_after_its_commit_finishes_the_job(tmp_path, tmpdir_folder):
    """compress_arrays, SIGINT right after its commit (the runner still finishing): the
    job is finished, not cancelled (as prepare_corpus): 130 with the "after the job
    finished" line, generation 1 whole on both roots and its report written."""
    proc = subprocess.run([sys.executable, "-c", ARRAYS_COMMITTED, str(tmp_path)],
                          capture_output=True, text=True, timeout=600,
                          env=env(tmpdir_folder), cwd=tmp_path)
    assert proc.returncode == 130, proc.stderr
    # compress_arrays's line names no generation (only prepare_corpus records it)
    assert proc.stderr.splitlines()[-1] == (
        "python -m pipelines.compress_arrays: interrupted after the job finished; its "
        "output is committed and its temporary files deleted"), proc.stderr
    for root in ("a", "b"):
        dataset = tmp_path / root / "arrays"
        assert store.load_manifest(str(dataset))["generation"] == 1
        assert "run_report.json" in os.listdir(dataset / "_audit")
    assert os.listdir(tmpdir_folder) == []


def test_a_failure_after_the_commit_promotes_the_generations_audit_files(tmp_path,
                                                                           tmpdir_folder):
    """The run fails (exit 1) after its generation was committed: that generation is the
    committed one, so its audit files replace the previous generation's (none left in
    ``last_run/``), and its shards all verify."""
    commit_once(tmp_path)
    dataset = tmp_path / "a" / "corpus"
    old_audit = {n: (dataset / "_audit" / n).read_bytes()
                 for n in os.listdir(dataset / "_audit") if n.startswith("dead_letters")}
    corpus = big_corpus(tmp_path / "two.jsonl", copies=1)
    proc = subprocess.run([sys.executable, "-c", DRIVER, "fail_after_commit",
                           "transforms.storage.commit:commit_generation",
                           *flags(tmp_path, "--input", corpus)], capture_output=True,
                          text=True, timeout=600, env=env(tmpdir_folder), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "injected failure after the commit" in proc.stderr, proc.stderr
    assert store.load_manifest(str(dataset))["generation"] == 2
    audit = sorted(os.listdir(dataset / "_audit"))
    assert "last_run" not in audit, audit
    new_audit = {n: (dataset / "_audit" / n).read_bytes()
                 for n in audit if n.startswith("dead_letters")}
    assert new_audit and new_audit != old_audit
    assert all(r["status"] == "ok" for r in store.verify_store(str(dataset)))
    no_temporaries(tmp_path)


def test_a_failed_held_step_leaves_no_ctrl_c_for_the_next_run():
    """A Ctrl-C held for after a committed run's last steps (``late``) whose held step
    then failed: the error ends that run, and the next run's first held step (taking
    its lock) raises nothing."""
    from pipelines import progress
    progress._HOLD["late"] = True   # what _finish_committed leaves for the held steps
    with pytest.raises(OSError):
        with progress.deferred_interrupts():
            raise OSError("promoting the audit files failed")
    with progress.deferred_interrupts():
        pass
    assert progress._HOLD["late"] is False and progress._HOLD["pending"] is False


SECOND_RUN = textwrap.dedent("""
    import logging, os, signal, sys, tempfile
    from pipelines import progress
    from transforms.storage import commit
    before = signal.getsignal(signal.SIGINT)
    with progress.run_temp_dir():
        # the first run is interrupted and its caller goes on (no exit_interrupted)
        progress.hold_interrupts()
        progress.silence()
        commit.close_commit_gate()
        print("first run: hidden", file=sys.stderr, flush=True)
    with progress.run_temp_dir() as folder:   # the second run behaves as a first
        print("handler restored", signal.getsignal(signal.SIGINT) is before, flush=True)
        with commit.commit_gate():
            print("gate open", flush=True)
        print("second run: stderr", file=sys.stderr, flush=True)
        os.write(2, b"second run: fd 2\\n")
        logging.getLogger("x").warning("second run: logging")
        print("temp in the run's folder", tempfile.mkdtemp().startswith(folder), flush=True)
        os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C acts again
""")


def test_a_second_run_in_one_process_behaves_as_a_first(tmp_path):
    """A run interrupted whose process goes on (its caller caught the interruption):
    the next run in the process gets SIGINT's handler, stderr, logging, the commit
    gate and tempfile as a first run does."""
    proc = subprocess.run([sys.executable, "-c", SECOND_RUN], capture_output=True, text=True,
                          timeout=120, env=env(tmp_path))
    assert proc.stdout.splitlines() == ["handler restored True", "gate open",
                                        "temp in the run's folder True"], proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[:2] == ["second run: stderr", "second run: fd 2"], lines
    assert lines[2].endswith("second run: logging"), lines
    assert lines[-1] == "KeyboardInterrupt" and "first run: hidden" not in proc.stderr
    assert proc.returncode == -signal.SIGINT   # Python's own end on a KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def _in_session(sid: int) -> list[str]:
    """Command lines of the live processes of session ``sid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            if int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    found.append(f.read().replace(b"\0", b" ").decode("utf-8", "replace"))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_run_leaves_no_process_and_no_traceback(tmp_path, tmpdir_folder, run_config):
    """A successful CLI run on the configured runner (Prism's job server is started by
    Beam in the run's temporary folder): it ends with status 0, no traceback on stderr
    (Beam's exit hook of the job server once raised on its deleted folder), no process
    of the run left alive, and $TMPDIR as it was."""
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.prepare_corpus",
                             *flags(tmp_path, run_config=run_config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(tmpdir_folder),
                            cwd=tmp_path, start_new_session=True)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    assert _in_session(proc.pid) == []
    assert os.listdir(tmpdir_folder) == []
