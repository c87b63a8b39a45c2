"""Warm SDK workers of the multi-process DirectRunner (pipelines/warm_workers.py).

The pure parts (which command lines ask for them, which environments a worker
refuses) are checked here; the pool itself is checked by running pipelines in a
fresh interpreter (a fork of the test process would copy pytest's threads): which
processes ran the bundles (their pids, recorded by the pipeline), what was written,
and that every process started is gone at the end.
"""
import json
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from pipelines import warm_workers
from pipelines.warm_workers import foreign_keys, prestart_count

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("argv, env, expected", [
    (["--run_config", "direct_multiprocess"], {}, os.cpu_count()),
    (["--run_config=direct_multiprocess", "--direct_num_workers", "3"], {}, 3),
    (["--input", "x", "--direct_num_workers=5"], {"DATAPREP_RUN_CONFIG": "direct_multiprocess"}, 5),
    (["--run_config", "direct"], {}, 0),
    ([], {}, 0),
    (["--run_config", "direct", "--direct_running_mode", "multi_processing",
      "--direct_num_workers", "2"], {}, 2),
    (["--run_config", "direct_multiprocess", "--direct_running_mode=in_memory"], {}, 0),
    (["--run_config", "direct_multiprocess", "--runner", "PrismRunner"], {}, 0),
    (["--run_config", "flink_local"], {}, 0),
    (["--run_config", "direct_multiprocess", "--help"], {}, 0),
    (["--run_config", "direct_multiprocess", "--direct_num_workers", "two"], {}, 0),
    (["--run_config", "no_such_config"], {}, 0),
])
def test_prestart_count_reads_the_command_line_as_the_job_does(argv, env, expected):
    assert prestart_count(argv, env) == expected


def test_prestart_count_reads_a_run_config_file(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("# mine\nrunner: DirectRunner\ndirect_running_mode: 'multi_processing'\n"
                      "direct_num_workers: 4   # four\n")
    assert prestart_count(["--run_config", str(config)], {}) == 4
    assert prestart_count(["--run_config", str(config), "--direct_num_workers", "0"], {}) \
        == os.cpu_count()


def test_a_worker_takes_only_what_the_runner_and_the_run_set_after_it_started():
    started = {"PATH": "/bin", "HOME": "/root", "TMPDIR": "/tmp"}
    handed = dict(started, TMPDIR="/tmp/run", WORKER_ID="worker_3",
                  CONTROL_API_SERVICE_DESCRIPTOR="url: x", PIPELINE_OPTIONS="{}",
                  LOGGING_API_SERVICE_DESCRIPTOR="url: y", DATAPREP_COMMIT_GATE="/g")
    assert foreign_keys(started, handed) == []
    assert foreign_keys(started, dict(handed, PATH="/usr/bin")) == ["PATH"]
    assert foreign_keys(started, dict(handed, PYTHONHASHSEED="1")) == ["PYTHONHASHSEED"]
    without_home = {k: v for k, v in handed.items() if k != "HOME"}
    assert foreign_keys(started, without_home) == ["HOME"]


SCRIPT = textwrap.dedent('''
    import json, os, sys
    from pipelines import warm_workers
    count, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    started = warm_workers.prestart(count)
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from transforms import keep_direct_runner_local
    from transforms.processing.runner_guards import guard_pipeline
    if mode == "foreign":
        os.environ["DATAPREP_TEST_SET_AFTER_THE_START"] = "1"
    options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                               "--direct_num_workers=2"])
    guard_pipeline(options)

    def where(x):
        import os
        os.write(2, f"worker says {x}\\n".encode())   # one write: bundles run on threads
        return json.dumps([x, os.getpid(), os.getppid(),
                           os.environ.get("DATAPREP_TEST_SET_AFTER_THE_START")])

    # the run's stderr is a file (as progress.quiet_stderr makes it): the workers' too
    log = os.open(out + ".stderr", os.O_WRONLY | os.O_CREAT)
    real_stderr = os.dup(2)
    os.dup2(log, 2)
    with warm_workers.handed_over():
        pipeline = beam.Pipeline(options=options)
        keep_direct_runner_local(pipeline)
        (pipeline | beam.Create(list(range(40))) | beam.Reshuffle()
         | beam.Map(where) | beam.io.WriteToText(out, shard_name_template=""))
        pipeline.run().wait_until_finish()
    os.dup2(real_stderr, 2)
    print(json.dumps({"forked": started, "driver": os.getpid(), **warm_workers.last_report()}))
''')


def _run_script(tmp_path, count, mode="plain", temp=None):
    out = tmp_path / "out.txt"
    env = dict(os.environ, PYTHONPATH=ROOT)
    if temp is not None:
        env["TMPDIR"] = str(temp)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(count), mode, str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # what the workers wrote went where the runner's stderr pointed, not the terminal's
    said = sorted(int(n) for n in re.findall(r"worker says (\d+)\n",
                                              (tmp_path / "out.txt.stderr").read_text()))
    assert said == list(range(40))
    assert "worker says" not in done.stderr
    return report, rows


def _gone(pids):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_the_runner_s_workers_are_the_warm_ones(tmp_path):
    # a $TMPDIR past the 107 bytes of an AF_UNIX path (bound through /proc/self/fd)
    temp = tmp_path / ("t" * 60) / ("u" * 60)
    temp.mkdir(parents=True)
    report, rows = _run_script(tmp_path, 2, temp=temp)
    assert list(temp.iterdir()) == []
    assert report["forked"] == 2 and len(report["started"]) == 2
    assert sorted(report["taken"]) == sorted(report["started"]) and report["unused"] == []
    assert sorted(row[0] for row in rows) == list(range(40))
    # every bundle ran in a warm worker: a child of the driver (Beam's own workers are
    # children of the shell the runner starts)
    assert {row[1] for row in rows} <= set(report["started"])
    assert {row[2] for row in rows} == {report["driver"]}
    assert _gone(report["started"])


def test_a_worker_the_pool_lacks_starts_cold(tmp_path):
    report, rows = _run_script(tmp_path, 1)
    assert len(report["taken"]) == 1 and report["unused"] == []
    assert sorted(row[0] for row in rows) == list(range(40))
    cold = {row[1] for row in rows} - set(report["started"])
    assert all(row[2] != report["driver"] for row in rows if row[1] in cold)
    assert _gone(report["started"])


def test_an_environment_changed_after_the_start_is_refused(tmp_path):
    report, rows = _run_script(tmp_path, 2, "foreign")
    # both refused what they could not have seen at import: the runner's workers are
    # Beam's own, with the variable set; the warm ones were ended unused
    assert report["taken"] == [] and sorted(report["unused"]) == sorted(report["started"])
    assert sorted(row[0] for row in rows) == list(range(40))
    assert not {row[1] for row in rows} & set(report["started"])
    assert {row[3] for row in rows} == {"1"}
    assert _gone(report["started"])


def test_warm_workers_end_with_a_driver_that_dies(tmp_path):
    code = ("import os, sys, json; from pipelines import warm_workers; "
            "warm_workers.prestart(2); "
            "print(json.dumps([p for p, _ in warm_workers._POOL['workers']]), flush=True); "
            "os._exit(0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    pids = json.loads(done.stdout)
    assert len(pids) == 2
    assert _gone(pids)


def test_the_launcher_without_a_pool_runs_beam_s_command(tmp_path):
    done = subprocess.run(
        [sys.executable, "-I", "-S", warm_workers.LAUNCHER, "dataprep-warm-none", "2",
         "echo cold $WORKER_ID"], capture_output=True, text=True, timeout=60,
        env={"WORKER_ID": "worker_7", "PATH": os.environ.get("PATH", "")})
    assert done.returncode == 0 and done.stdout == "cold worker_7\n"


def test_prestart_refuses_a_second_pool_and_a_threaded_process(tmp_path):
    code = textwrap.dedent('''
        import json, threading, time
        from pipelines import warm_workers
        threading.Thread(target=time.sleep, args=(1,)).start()
        threaded = warm_workers.prestart(2)
        time.sleep(1.2)
        import os
        first = warm_workers.prestart(1)
        second = warm_workers.prestart(1)
        warm_workers.close_pool()
        print(json.dumps([threaded, first, second, warm_workers.last_report()]))
    ''')
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    threaded, first, second, report = json.loads(done.stdout)
    assert (threaded, first, second) == (0, 1, 0)
    assert report["taken"] == [] and len(report["unused"]) == 1
    assert _gone(report["unused"])


def test_a_shell_s_own_variables_are_not_refused():
    started = {"PATH": "/bin", "PS1": "$ ", "SHLVL": "1"}
    handed = {"PATH": "/bin", "_": "/usr/bin/python", "SHLVL": "2", "PWD": "/x"}
    assert foreign_keys(started, handed) == []


def _job(tmp_path, *flags):
    return [sys.executable, "-m", "pipelines.prepare_corpus", "--run_config",
            "direct_multiprocess", "--output_roots", f"{tmp_path / 'a'},{tmp_path / 'b'}",
            "--replication", "2", *flags]


def _job_env(tmp_path):
    temp = tmp_path / "tmpdir"
    temp.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=ROOT, TMPDIR=str(temp))
    env.pop("DATAPREP_RUN_CONFIG", None)
    return env, temp


def test_a_failing_run_s_warm_workers_write_to_its_log_not_the_terminal(tmp_path):
    """A worker's traceback goes where Beam's own worker's would: the run's log file,
    while stderr says the one failure line (and where the log is)."""
    import zstandard
    from pipelines import prepare_corpus
    whole = zstandard.ZstdCompressor().compress(open(prepare_corpus.SAMPLE, "rb").read())
    bad = tmp_path / "bad.jsonl.zst"
    bad.write_bytes(whole[: len(whole) // 2])
    env, temp = _job_env(tmp_path)
    done = subprocess.run(_job(tmp_path, "--input", str(bad)), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "sdk_worker" not in done.stderr, done.stderr
    said = [line for line in done.stderr.splitlines()
            if not line.startswith("prepare_corpus 0:")]   # the progress lines
    assert said[0].startswith("prepare_corpus failed: ") and "bad.jsonl.zst" in said[0], said
    assert len(said) <= 3, said
    log = re.search(r"full log: ([^\s)]+)", done.stderr).group(1)
    assert "Traceback" in open(log, encoding="utf-8").read()
    assert [p.name for p in temp.iterdir()] == [os.path.basename(log)]


def test_ctrl_c_before_the_run_leaves_nothing(tmp_path):
    """SIGINT to the process group while the warm workers wait for the pipeline (the job
    leaves with os._exit: no exit hook runs): status 130, $TMPDIR empty, none left."""
    import signal
    proc, temp, workers = _job_waiting_to_run(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last in ("python -m pipelines.prepare_corpus: interrupted",
                    "python -m pipelines.prepare_corpus: interrupted; the job was cancelled "
                    "and its temporary files deleted"), err
    # the pool leaves nothing anywhere (abstract sockets); a Ctrl-C that lands while
    # progress.run_temp_dir is making the run's folder, before its cleanup is armed,
    # can leave that folder (a window of the run's, not the pool's: see the closing note)
    assert [p.name for p in temp.iterdir() if not p.name.startswith("dataprep-run-")] == []
    assert _gone(workers)


def _job_waiting_to_run(tmp_path):
    """The job on the sample, in a session of its own, once its 2 warm workers exist
    -> (process, its $TMPDIR, the workers' pids)."""
    from pipelines import prepare_corpus
    env, temp = _job_env(tmp_path)
    proc = subprocess.Popen(_job(tmp_path, "--input", prepare_corpus.SAMPLE), cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    return proc, temp, _wait_for_workers(proc)


def _wait_for_workers(proc, count=2):
    """The warm workers of a job just started (children of its driver, forked once
    its modules are imported)."""
    deadline = time.monotonic() + 60
    while True:
        workers = [int(p) for p in os.listdir("/proc")
                   if p.isdigit() and _parent(int(p)) == proc.pid]
        if len(workers) == count:
            return workers
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.002)


def _parent(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


HANDSHAKE = textwrap.dedent("""
    import json, os, socket, subprocess, sys, time
    from pipelines import warm_workers
    assert warm_workers.prestart(1) == 1
    name = warm_workers._POOL["name"]
    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(f"\\0{name}-0")
        return s
    silent = connect()                          # sends nothing
    gone = connect()                            # sends its descriptors and request, then goes
    socket.send_fds(gone, [b"F"], [0, 1, 2])
    body = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode()
    gone.sendall(len(body).to_bytes(8, "big") + body)
    gone.close()
    started = time.monotonic()
    launched = subprocess.run(
        [sys.executable, "-I", "-S", warm_workers.LAUNCHER, name, "1", "echo cold"],
        capture_output=True, text=True, timeout=120)
    # taken by the warm worker, whose Beam worker main fails at once here (no control
    # address): its status, not the cold command's output
    took = round(time.monotonic() - started, 1)
    warm_workers.close_pool()
    print(json.dumps([launched.returncode, launched.stdout, took,
                      warm_workers.last_report()["taken"]]))
""")


def test_a_silent_or_vanished_connection_does_not_take_a_worker(tmp_path):
    done = subprocess.run([sys.executable, "-c", HANDSHAKE], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    status, out, took, taken = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 1 and out == "" and len(taken) == 1
    assert took < 15   # the silent one was dropped after its short timeout, not 30 s


def test_the_group_s_sigterm_before_the_run_leaves_nothing(tmp_path):
    """A closed terminal or a service manager's stop: SIGTERM to the whole group."""
    import signal
    proc, temp, workers = _job_waiting_to_run(tmp_path)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=60)
    assert _gone(workers)
    assert not [p.name for p in temp.iterdir() if "warm" in p.name]
