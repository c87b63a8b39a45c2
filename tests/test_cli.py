"""The command line as a new user meets it: flag errors with the nearest valid flag,
Beam option errors in one or two lines, one table of exit statuses for every
subcommand (README, "Exit statuses"), output into a closed pipe, and what
verify-store says about bytes read, stray files and a run in progress.
"""
import importlib
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import __main__ as dataprep
from pipelines import (cli, codec_report, compress_arrays, prepare_corpus, progress, report,
                       stage_jars, verify_store)
from pipelines.exit_codes import BROKEN_PIPE, INTERRUPTED, PROBLEM, USAGE
from tests import store_faults as sf
from transforms.storage.commit import SPILL_PREFIX, DatasetLock, temp_name
from transforms.storage.store import load_manifest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARSERS = {"prepare-corpus": prepare_corpus.build_parser,
           "compress-arrays": compress_arrays.build_parser,
           "codec-report": codec_report.build_parser, "report": report.build_parser,
           "stage-jars": stage_jars.build_parser, "verify-store": verify_store.build_parser}
SUBCOMMANDS = sorted(PARSERS)


@pytest.fixture(autouse=True)
def _as_dataprep(monkeypatch):
    """Every call below goes through ``dataprep`` (which sets how jobs name themselves);
    put the name back afterwards for the other tests."""
    monkeypatch.setattr(cli, "INVOKED_AS", None)
    monkeypatch.setenv("DATAPREP_PROGRESS_INTERVAL", "1000")
    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 1e9)


def dataprep_exit(capsys, argv) -> tuple[int, str, str]:
    """Run ``dataprep ARGV`` in this process -> (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        dataprep.main(argv)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else 1
        if isinstance(exit_info.code, str):
            print(exit_info.code, file=sys.stderr)
    out, err = capsys.readouterr()
    return code, out, err


def env():
    out = dict(os.environ, PYTHONPATH=ROOT, DATAPREP_PROGRESS_INTERVAL="1000")
    out.pop("DATAPREP_RUN_CONFIG", None)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A text store on 3 roots (R=2, 4 shards), built once; tests copy it."""
    base = tmp_path_factory.mktemp("store")
    roots = [str(base / n) for n in ("a", "b", "c")]
    sf.build(sf.TEXT, sf.text_input(base / "in.jsonl"), roots, 4)
    return roots


@pytest.fixture
def copied(store, tmp_path):
    """A fresh copy of the store (the recorded roots mapped onto the copies)."""
    import shutil
    roots = [str(tmp_path / os.path.basename(r)) for r in store]
    for src, dst in zip(store, roots):
        shutil.copytree(src, dst)
    root_map = ",".join(f"{old}={new}" for old, new in zip(store, roots))
    return roots, root_map


# ---------------------------------------------------------------- 4. flag errors

@pytest.mark.parametrize("sub, argv, said", [
    ("verify-store", ["--stor", "x"], "--stor (did you mean --store?)"),
    ("verify-store", ["--store", "x", "--repiar"], "--repiar (did you mean --repair?)"),
    ("prepare-corpus", ["--repl", "3"], "--repl (did you mean --replication?)"),
    ("prepare-corpus", ["--num_shard", "3"], "--num_shard (did you mean --num_shards?)"),
    ("prepare-corpus", ["--runer", "DirectRunner"], "--runer (did you mean --runner?)"),
    ("compress-arrays", ["--input", "x.npy", "--block_row", "5"],
     "--block_row (did you mean --block_rows?)"),
    ("codec-report", ["--inpt", "x"], "--inpt (did you mean --input?)"),
    ("report", ["x", "--outpu", "y"], "--outpu (did you mean --output?)"),
    ("stage-jars", ["--onl", "flink"], "--onl (did you mean --only?)"),
])
def test_an_unknown_flag_names_the_nearest_valid_one(capsys, sub, argv, said):
    """Reported before a missing required flag, in two lines, exit 2."""
    code, out, err = dataprep_exit(capsys, [sub, *argv])
    assert (code, out) == (USAGE, "")
    assert err == (f"dataprep {sub}: error: unrecognized argument {said}\n"
                   f"(see dataprep {sub} --help)\n")


def test_several_unknown_flags_and_a_stray_word(capsys):
    code, _, err = dataprep_exit(capsys, ["verify-store", "--stor", "x", "--zzzzzz"])
    assert code == USAGE and err.splitlines()[0] == (
        "dataprep verify-store: error: unrecognized arguments --stor (did you mean --store?), "
        "--zzzzzz")
    code, _, err = dataprep_exit(capsys, ["verify-store", "--store", "x", "extra"])
    assert code == USAGE and err.splitlines()[0] == (
        "dataprep verify-store: error: unrecognized argument extra")
    code, _, err = dataprep_exit(capsys, ["report", "x", "extra"])
    assert code == USAGE and err.splitlines()[0] == (
        "dataprep report: error: unrecognized argument extra")


def _long_flags(parser) -> list[str]:
    return sorted(o for o in parser._option_string_actions if o.startswith("--"))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_no_abbreviation_is_ever_taken_and_the_hint_completes_it(data):
    """Property: for every subcommand and every flag, any strict prefix of it (3+
    characters after ``--``) that is not itself a flag is refused (exit 2), and
    the hint names a flag of that subcommand that the prefix abbreviates."""
    sub = data.draw(st.sampled_from(SUBCOMMANDS))
    parser = PARSERS[sub]()
    flags = _long_flags(parser)
    flag = data.draw(st.sampled_from(flags))
    if len(flag) < 6:
        return
    cut = data.draw(st.integers(5, len(flag) - 1))
    prefix = flag[:cut]
    if prefix in flags:
        return
    errors = []
    parser.error = lambda message, hint=None: (errors.append(message), sys.exit(USAGE))
    with pytest.raises(SystemExit) as exit_info:
        (parser.parse if hasattr(parser, "parse") else parser.parse_args)([prefix, "1"])
    assert exit_info.value.code == USAGE
    hint = re.fullmatch(rf"unrecognized argument {re.escape(prefix)} \(did you mean (\S+)\?\)",
                        errors[0]).group(1)
    assert hint in flags and hint.startswith(prefix)


def test_nearest_flag_prefers_ours_then_beams():
    ours = ["--store", "--repair", "--root_map", "--strict"]
    beams = ["--runner", "--region", "--streaming"]
    assert cli.nearest_flag("--stor", ours, beams) == "--store"
    assert cli.nearest_flag("--stri", ours, beams) == "--strict"
    assert cli.nearest_flag("--runer", ours, beams) == "--runner"
    assert cli.nearest_flag("--streamin", ours, beams) == "--streaming"
    assert cli.nearest_flag("--qqqqqq", ours, beams) is None


ALL_SUBCOMMANDS = ("codec-report, compress-arrays, prepare-corpus, report, stage-jars, "
                   "verify-store, list, beam-options")


def test_an_unknown_subcommand_names_the_nearest(capsys):
    code, _, err = dataprep_exit(capsys, ["verfy-store"])
    assert code == USAGE and err == (
        "dataprep: error: unknown subcommand 'verfy-store' (did you mean verify-store?); "
        f"subcommands: {ALL_SUBCOMMANDS}\n")


def test_an_unknown_subcommand_lists_every_subcommand_help_shows(capsys):
    """``list`` and ``beam-options`` are subcommands too: the error lists exactly the
    subcommands ``dataprep --help`` shows, in its order (one source: ``subcommands()``)."""
    code, _, err = dataprep_exit(capsys, ["nope"])
    assert code == USAGE and err == (
        f"dataprep: error: unknown subcommand 'nope'; subcommands: {ALL_SUBCOMMANDS}\n")
    code, _, err = dataprep_exit(capsys, ["lst"])
    assert code == USAGE and err == (
        f"dataprep: error: unknown subcommand 'lst' (did you mean list?); subcommands: "
        f"{ALL_SUBCOMMANDS}\n")
    code, out, _ = dataprep_exit(capsys, ["--help"])
    listing = out.split("subcommands (", 1)[1].splitlines()[1:]
    shown = [line.split()[0] for line in listing if line.startswith("  ")]
    assert code == 0 and ", ".join(shown) == ALL_SUBCOMMANDS
    assert "usage: dataprep {list,beam-options,<job>}" in out
    code, out, _ = dataprep_exit(capsys, ["list"])
    assert [line.split()[0] for line in out.splitlines()[1:]] == shown


def test_an_unknown_recipe_names_the_shipped_ones(capsys, tmp_path, monkeypatch):
    """``--recipe NAME`` that is no shipped recipe: one line naming it, the shipped
    names and the nearest one (no path inside the installed package), exit 2; a recipe
    path that names no file is named as typed (relative, not made absolute)."""
    monkeypatch.chdir(tmp_path)
    help_line = "(see dataprep prepare-corpus --help)\n"
    code, _, err = dataprep_exit(capsys, ["prepare-corpus", "--recipe", "nope"])
    assert code == USAGE and err == (
        "dataprep prepare-corpus: error: unknown recipe 'nope'; known: minimal, web "
        "(or a recipe file's path)\n" + help_line)
    code, _, err = dataprep_exit(capsys, ["prepare-corpus", "--recipe", "wbe"])
    assert code == USAGE and err == (
        "dataprep prepare-corpus: error: unknown recipe 'wbe' (did you mean web?); known: "
        "minimal, web (or a recipe file's path)\n" + help_line)
    code, _, err = dataprep_exit(capsys, ["prepare-corpus", "--recipe", "min"])
    assert code == USAGE and "(did you mean minimal?)" in err
    for typed in ("recipes/mine.yaml", "mine.yml", "./mine"):
        code, _, err = dataprep_exit(capsys, ["prepare-corpus", "--recipe", typed])
        assert code == USAGE and err == (
            f"dataprep prepare-corpus: error: {typed}: no such recipe file (shipped "
            "recipes: minimal, web)\n" + help_line), typed
    (tmp_path / "folder.yaml").mkdir()
    code, _, err = dataprep_exit(capsys, ["prepare-corpus", "--recipe", "folder.yaml"])
    assert code == USAGE and err == (
        "dataprep prepare-corpus: error: folder.yaml: a folder, not a recipe file\n" + help_line)


def test_a_missing_store_or_file_is_one_line_naming_it(tmp_path, capsys):
    """Every subcommand given a store or file that is not there (or not readable as
    one): ``<prog>: error: <what> at <path as given> (<why in words>)``, exit 2, no
    exception class name, one line."""
    nowhere = str(tmp_path / "nowhere")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    folder_report = tmp_path / "folder_report"
    (folder_report / "_audit" / "run_report.json").mkdir(parents=True)
    cases = [
        (["report", nowhere], f"dataprep report: error: no store at {nowhere} (not found)"),
        (["report", str(a_file)], f"dataprep report: error: no store at {a_file} "
         "(not a folder)"),
        (["report", str(empty)], f"dataprep report: error: no run report at {empty}/_audit/"
         "run_report.json (not found)"),
        (["report", str(folder_report)], f"dataprep report: error: no run report at "
         f"{folder_report}/_audit/run_report.json (a folder, not a file)"),
        (["verify-store", "--store", nowhere],
         f"dataprep verify-store: error: no store at {nowhere} (not found)"),
        (["verify-store", "--store", str(a_file)],
         f"dataprep verify-store: error: no store at {a_file} (not a folder)"),
        (["verify-store", "--store", str(empty)],
         f"dataprep verify-store: error: no store at {empty} (no manifest.json in it)"),
        (["codec-report", "--input", nowhere],
         f"dataprep codec-report: error: input pattern matches no file: {nowhere}"),
        (["codec-report", "--input", str(a_file), "--report", f"{nowhere}/r.json"],
         f"dataprep codec-report: error: cannot write {nowhere}/r.json (--report): folder "
         f"{nowhere} not found\nhint: create it first (mkdir -p {nowhere}), or give --report "
         "a path in an existing folder"),
        (["compress-arrays", "--input", nowhere + ".npy"],
         f"dataprep compress-arrays: error: input pattern matches no file: {nowhere}.npy"),
        (["prepare-corpus", "--input", nowhere],
         f"dataprep prepare-corpus: error: input pattern matches no file: {nowhere}"),
    ]
    for argv, line in cases:
        code, _, err = dataprep_exit(capsys, argv)
        assert (code, err) == (USAGE, line + "\n"), argv


def test_a_path_near_a_store_gets_a_hint_naming_the_dataset(copied, capsys):
    """A store path that holds no store but is near one (the root given for its
    dataset, a folder of roots, a path inside a dataset folder, a misspelt dataset
    name): the one error line, then ``hint: <where the datasets are>: try <the
    subcommand's flag or argument>``, exit 2; in every subcommand taking a store."""
    roots, _ = copied
    root, base = roots[0], os.path.dirname(roots[0])
    ds = os.path.join(root, "ds")
    holds = f"hint: {root} holds the dataset(s) ds: try"
    cases = [
        (["verify-store", "--store", root],
         f"dataprep verify-store: error: no store at {root} (no manifest.json in it)",
         f"{holds} --store {ds}"),
        (["verify-store", "--store", root + "/"],
         f"dataprep verify-store: error: no store at {root}/ (no manifest.json in it)",
         f"{holds} --store {ds}"),
        (["verify-store", "--store", base],
         f"dataprep verify-store: error: no store at {base} (no manifest.json in it)",
         f"hint: {base} holds the dataset(s) a/ds, b/ds, c/ds: try --store {base}/a/ds"),
        (["verify-store", "--store", f"{ds}/_audit"],
         f"dataprep verify-store: error: no store at {ds}/_audit (no manifest.json in it)",
         f"hint: {ds}/_audit is inside the dataset {ds}: try --store {ds}"),
        (["verify-store", "--store", f"{root}/sd"],
         f"dataprep verify-store: error: no store at {root}/sd (not found)",
         f"{holds} --store {ds}"),
        (["report", root],
         f"dataprep report: error: no run report at {root}/_audit/run_report.json "
         "(not found)", f"{holds} dataprep report {ds}"),
        (["report", f"{root}/dss"],
         f"dataprep report: error: no store at {root}/dss (not found)",
         f"{holds} dataprep report {ds}"),
        (["codec-report", "--input", root],
         f"dataprep codec-report: error: no store at {root} (no manifest.json in it)",
         f"{holds} --input {ds}"),
    ]
    for argv, line, hint in cases:
        code, out, err = dataprep_exit(capsys, argv)
        assert (code, out, err) == (USAGE, "", f"{line}\n{hint}\n"), argv


# ---------------------------------------------------------------- 7. Beam option values

BEAM_HINT = "(a Beam option; dataprep beam-options lists them all, with help)\n"


@pytest.mark.parametrize("sub, required", [
    ("prepare-corpus", []), ("compress-arrays", ["--input", "x.npy"]),
    ("verify-store", ["--store", "x"])])
def test_a_bad_beam_value_is_two_lines_naming_it(capsys, sub, required):
    code, out, err = dataprep_exit(capsys, [sub, *required, "--direct_num_workers=abc"])
    assert (code, out) == (USAGE, "")
    assert err == (f"dataprep {sub}: error: argument --direct_num_workers: invalid int "
                   f"value: 'abc'\n" + BEAM_HINT)
    code, _, err = dataprep_exit(capsys, [sub, *required, "--direct_running_mode", "fast"])
    assert code == USAGE and err == (
        f"dataprep {sub}: error: argument --direct_running_mode: invalid choice: 'fast' "
        "(choose from 'in_memory', 'multi_threading', 'multi_processing')\n" + BEAM_HINT)


def test_an_unknown_runner_lists_the_known_ones(capsys):
    from apache_beam.options.pipeline_options import StandardOptions
    known = ", ".join(StandardOptions.KNOWN_RUNNER_NAMES)
    assert "DirectRunner" in known and "FlinkRunner" in known and "PrismRunner" in known
    code, out, err = dataprep_exit(capsys, ["prepare-corpus", "--runner", "Nope"])
    assert (code, out) == (USAGE, "")
    assert err == ("dataprep prepare-corpus: error: argument --runner: unknown runner 'Nope'; "
                   f"known runners: {known}, or a PipelineRunner subclass's dotted name\n"
                   + BEAM_HINT)
    code, _, err = dataprep_exit(capsys, ["verify-store", "--store", "x", "--runner=DirectRunnr"])
    assert code == USAGE and err.startswith(
        "dataprep verify-store: error: argument --runner: unknown runner 'DirectRunnr' (did you "
        "mean DirectRunner?); known runners: ")
    code, _, err = dataprep_exit(capsys, ["verify-store", "--store", "x",
                                          "--runner", "no_such_module.Runner"])
    assert code == USAGE and err.startswith(
        "dataprep verify-store: error: argument --runner: cannot import no_such_module.Runner "
        "(No module named 'no_such_module')\n")


def test_runner_names_beam_accepts_are_accepted():
    for name in ("DirectRunner", "directrunner", "direct", "PrismRunner", "FlinkRunner",
                 "apache_beam.runners.direct.direct_runner.DirectRunner"):
        cli.check_runner(name)
        _, options = prepare_corpus.build_parser().parse(["--runner", name])
        assert options.get_all_options()["runner"] == name


def test_a_bad_value_in_a_run_config_names_the_file(tmp_path, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text("runner: DirectRunner\ndirect_num_workers: many\n")
    code, _, err = dataprep_exit(capsys, ["prepare-corpus", "--run_config", str(config)])
    assert code == USAGE and err == (
        f"dataprep prepare-corpus: error: run config {config}: argument --direct_num_workers: "
        "invalid int value: 'many'\n" + BEAM_HINT)
    config.write_text("runner: Nope\n")
    code, _, err = dataprep_exit(capsys, ["verify-store", "--store", "x", "--run_config",
                                          str(config)])
    assert code == USAGE and err.startswith(
        f"dataprep verify-store: error: run config {config}: argument --runner: unknown "
        "runner 'Nope'; known runners: ")
    # the command line overrides the file, and is what gets checked
    config.write_text("runner: DirectRunner\ndirect_num_workers: 2\n")
    _, options = prepare_corpus.build_parser().parse(["--run_config", str(config),
                                                      "--direct_num_workers=3"])
    assert options.get_all_options()["direct_num_workers"] == 3


def test_a_bad_beam_value_as_a_subprocess_is_two_lines_and_no_usage():
    proc = subprocess.run([sys.executable, "-m", "pipelines", "prepare-corpus",
                           "--direct_num_workers=abc"], capture_output=True, text=True,
                          cwd=ROOT, env=env(), timeout=120)
    assert (proc.returncode, proc.stdout) == (USAGE, "")
    assert proc.stderr == ("python -m pipelines prepare-corpus: error: argument "
                           "--direct_num_workers: invalid int value: 'abc'\n"
                           + BEAM_HINT.replace("dataprep", "python -m pipelines"))


@pytest.mark.parametrize("argv, code, err", [
    ([], USAGE, "usage: python -m pipelines {list,beam-options,<job>} [FLAGS]   "
     "(python -m pipelines list shows the subcommands; python -m pipelines --version)"),
    (["nope"], USAGE, "python -m pipelines: error: unknown subcommand 'nope'"),
    (["list", "x"], USAGE, "python -m pipelines list: error: unrecognized argument x "
     "(python -m pipelines list takes none)"),
    (["verify-store"], USAGE, "python -m pipelines verify-store: error: the following "
     "arguments are required: --store"),
])
def test_python_m_pipelines_names_itself_so(argv, code, err):
    """``python -m pipelines`` says ``python -m pipelines`` in its usage, errors and
    listing (as ``python -m pipelines.<job>`` names itself), never ``dataprep``."""
    proc = subprocess.run([sys.executable, "-m", "pipelines", *argv], capture_output=True,
                          text=True, cwd=ROOT, env=env(), timeout=120)
    assert proc.returncode == code
    assert err in proc.stderr.splitlines() or proc.stderr.startswith(err), proc.stderr
    assert "dataprep" not in proc.stderr.replace("beam-dataprep", ""), proc.stderr
    listing = subprocess.run([sys.executable, "-m", "pipelines", "list"], capture_output=True,
                             text=True, cwd=ROOT, env=env(), timeout=120)
    assert listing.stdout.splitlines()[0] == (
        "subcommands (run a job with: python -m pipelines <job> --help, or python -m "
        "pipelines.<job> --help):")


def test_the_start_up_program_name_follows_the_command_line():
    import pipelines
    python = sys.executable
    cases = [([python, "-m", "pipelines"], "python -m pipelines"),
             ([python, "-m", "pipelines", "list"], "python -m pipelines list"),
             ([python, "-m", "pipelines", "prepare_corpus"], "python -m pipelines prepare-corpus"),
             ([python, "-m", "pipelines.__main__", "report"], "python -m pipelines report"),
             ([python, "-m", "pipelines.verify_store"], "python -m pipelines.verify_store"),
             (["/venv/bin/dataprep", "prepare-corpus"], "dataprep prepare-corpus"),
             (["/venv/bin/dataprep"], "dataprep")]
    for orig, prog in cases:
        argv = [orig[0]] + orig[3:] if "-m" in orig else orig
        assert pipelines.startup_prog(argv, orig) == prog, orig


# ---------------------------------------------------------------- 5. exit statuses

def _npy(path, truncate=False):
    np.save(path, np.arange(64, dtype=np.float32).reshape(8, 8))
    if truncate:
        path.write_bytes(path.read_bytes()[:-40])
    return str(path)


def test_exit_statuses_of_every_subcommand(tmp_path, copied, capsys, monkeypatch):
    """The README's table, subcommand by subcommand: 0 done, 1 a problem found,
    2 usage or a path that names nothing (130 and 141: the tests below)."""
    roots, root_map = copied
    store = os.path.join(roots[0], "ds")
    nowhere = str(tmp_path / "nowhere")
    good_npy, bad_npy = _npy(tmp_path / "e.npy"), _npy(tmp_path / "t.npy", truncate=True)
    bad_report = tmp_path / "bad"
    (bad_report / "_audit").mkdir(parents=True)
    (bad_report / "_audit" / "run_report.json").write_bytes(b'{"no": "counters"}')
    monkeypatch.setattr(stage_jars.shutil, "which", lambda name: None)
    cases = [
        (["list"], 0, ""), (["list", "--help"], 0, ""), (["beam-options", "-h"], 0, ""),
        (["list", "x"], USAGE, "dataprep list: error: unrecognized "
                            "argument x (dataprep list takes none)\n"),
        (["beam-options"], 0, ""), (["beam-options", "--runner"], USAGE, "dataprep beam-options"
                                    ": error: unrecognized argument --runner (dataprep "
                                    "beam-options takes none)\n"),
        (["--version"], 0, ""), ([], USAGE, None), (["nope"], USAGE, None),
        (["prepare-corpus", "--input", nowhere], USAGE,
         f"dataprep prepare-corpus: error: input pattern matches no file: {nowhere}\n"),
        (["prepare-corpus", "--replication", "0"], USAGE, None),
        (["compress-arrays", "--input", nowhere + ".npy"], USAGE,
         f"dataprep compress-arrays: error: input pattern matches no file: {nowhere}.npy\n"),
        (["compress-arrays", "--input", bad_npy, "--output_roots", str(tmp_path / "o")],
         PROBLEM, None),
        (["compress-arrays", "--input", good_npy, "--map", "no_such_module:f"], USAGE,
         "dataprep compress-arrays: error: --map no_such_module:f: cannot import (No module "
         "named 'no_such_module')\n(see dataprep compress-arrays --help)\n"),
        (["codec-report", "--input", good_npy, "--repeats", "1"], 0, ""),
        (["codec-report", "--input", nowhere], USAGE,
         f"dataprep codec-report: error: input pattern matches no file: {nowhere}\n"),
        (["codec-report", "--input", bad_npy], PROBLEM, None),
        (["codec-report", "--input", good_npy, "--report", nowhere + "/r.json"], USAGE,
         f"dataprep codec-report: error: cannot write {nowhere}/r.json (--report): folder "
         f"{nowhere} not found\nhint: create it first (mkdir -p {nowhere}), or give "
         "--report a path in an existing folder\n"),
        (["verify-store", "--store", store, "--root_map", root_map], 0, None),
        (["verify-store", "--store", nowhere], USAGE,
         f"dataprep verify-store: error: no store at {nowhere} (not found)\n"),
        (["verify-store", "--store", store, "--root_map", "nonsense"], USAGE,
         "dataprep verify-store: error: --root_map wants OLD=NEW, got 'nonsense'\n"
         "(see dataprep verify-store --help)\n"),
        (["report", nowhere], USAGE, f"dataprep report: error: no store at {nowhere} "
         "(not found)\n"),
        (["report", str(bad_report)], PROBLEM, f"report failed: {bad_report}/_audit/"
         "run_report.json is not a run report (no 'counters')\n"),
        (["stage-jars", "--only", "flinkk"], USAGE, None),
        (["stage-jars", "--only", "flink"], PROBLEM,
         "stage_jars: needs java (17) and mvn on PATH\n"),
    ]
    for argv, expected, message in cases:
        code, out, err = dataprep_exit(capsys, argv)
        assert code == expected, (argv, code, err)
        if message is not None:
            assert err == message, argv
        if code and argv:   # bare `dataprep`: the summary and the subcommands
            assert "Traceback" not in err and 1 <= err.count("\n") <= 2, (argv, err)
    # verify-store: damage -> 1; the store itself is read through root 0
    victim = sorted(p for p in os.listdir(os.path.join(roots[1], "ds")) if p.startswith("shard-"))
    with open(os.path.join(roots[1], "ds", victim[0]), "r+b") as f:
        f.write(b"x")
    code, out, _ = dataprep_exit(capsys, ["verify-store", "--store", store, "--root_map",
                                          root_map])
    assert code == PROBLEM and out.rstrip().endswith("; 1 problem(s)")


def test_jobs_exit_0_when_done_and_1_with_one_line_when_the_run_fails(tmp_path, capsys):
    """prepare-corpus and compress-arrays: done -> 0; the run found a problem (here:
    bad lines beyond --max_bad_fraction) -> 1 and one line."""
    code, out, err = dataprep_exit(capsys, ["compress-arrays", "--input", _npy(tmp_path / "e.npy"),
                                            "--output_roots", str(tmp_path / "arrays"),
                                            "--run_config", "direct"])
    assert code == 0 and out.rstrip().endswith("R=1)"), err
    code, out, err = dataprep_exit(capsys, ["prepare-corpus", "--output_roots",
                                            str(tmp_path / "ok"), "--run_config", "direct",
                                            "--no_near_dedup"])
    assert code == 0 and "re-renders it" in out.splitlines()[-1], err
    code, _, err = dataprep_exit(capsys, ["prepare-corpus", "--output_roots",
                                          str(tmp_path / "a"), "--max_bad_fraction", "0",
                                          "--run_config", "direct"])
    assert code == PROBLEM
    assert [line for line in err.splitlines() if "failed: " in line] == [
        "prepare_corpus failed: not writing the manifest: 3 of 400 lines are bad (0.75%), "
        "above --max_bad_fraction 0; see the dead letters in "
        f"{tmp_path / 'a' / 'corpus' / '_audit' / 'last_run'}"]


PROGRESS_LINE = re.compile(r"^prepare_corpus \d+:\d\d:\d\d stage=")


@pytest.mark.parametrize("kind", ["bad_input_file", "bad_lines", "empty_result", "lock_held",
                                  "unwritable_root", "other_inputs"])
def test_every_failure_is_one_line_and_at_most_one_more(tmp_path, capfd, monkeypatch, kind):
    """Each kind of failure of a run (a file of the wrong kind, a gate refusing bad
    lines or an empty result, the dataset's lock held, a root that cannot be
    written, the default roots holding another dataset): after the progress lines,
    exactly the failure's line and at most one hint or note line on stderr (the
    README's "one line, two with a hint"), nothing on stdout, the exit status of
    its kind, and nothing committed."""
    monkeypatch.chdir(tmp_path)
    good = b'{"id": "1", "text": "one two three"}\n{"id": "2", "text": "four five six"}\n'
    (tmp_path / "in.jsonl").write_bytes(good + b'{"id": 3, "text": \n')
    roots = f"{tmp_path / 'a'},{tmp_path / 'b'}"
    argv = ["prepare-corpus", "--input", "in.jsonl", "--output_roots", roots,
            "--run_config", "direct", "--no_near_dedup"]
    code, first, second = PROBLEM, None, None
    if kind == "bad_input_file":
        (tmp_path / "in.csv").write_text("id,text\n1,one\n")
        argv[2] = "in.csv"
        first = f"prepare_corpus failed: {tmp_path / 'in.csv'}: looks like CSV/TSV, not JSON Lines"
    elif kind == "bad_lines":
        argv += ["--max_bad_fraction", "0"]
        first = "prepare_corpus failed: not writing the manifest: 1 of 3 lines are bad"
        second = "  (full log: "
    elif kind == "empty_result":
        (tmp_path / "in.jsonl").write_bytes(b'{"id": "1", "text": " "}\n')
        first = "prepare_corpus failed: not writing the manifest: "
        second = "  (full log: "
    elif kind == "lock_held":
        DatasetLock([str(tmp_path / r / "corpus") for r in "ab"], job="other").acquire()
        first = f"prepare_corpus failed: {tmp_path / 'a' / 'corpus' / '.lock'} is held by other"
        second = "hint: "
    elif kind == "unwritable_root":   # refused before the run: a usage error
        (tmp_path / "a_file").write_text("x")
        argv[4] = f"{tmp_path / 'a_file' / 'a'},{tmp_path / 'b'}"
        code = USAGE
        first = (f"dataprep prepare-corpus: error: --output_roots: cannot write to root "
                 f"{tmp_path / 'a_file' / 'a'}: {tmp_path / 'a_file'} is a file, not a folder")
        second = "(see dataprep prepare-corpus --help)"
    else:   # the default roots hold the dataset made from other inputs: a usage error
        (tmp_path / "in.jsonl").write_bytes(good)
        assert dataprep_exit(capfd, argv[:3] + argv[5:])[0] == 0
        (tmp_path / "other.jsonl").write_bytes(good)
        argv = ["prepare-corpus", "--input", "other.jsonl", "--run_config", "direct",
                "--no_near_dedup"]
        code = USAGE
        first = ("dataprep prepare-corpus: error: out/a,out/b hold a dataset 'corpus' made "
                 "from other inputs")
        second = "(pass --output_roots"
    def manifests():
        return {str(p): p.read_bytes() for p in tmp_path.rglob("manifest.json")}
    before = manifests()
    got, out, err = dataprep_exit(capfd, argv)
    said = [line for line in err.splitlines() if not PROGRESS_LINE.match(line)]
    assert got == code and out == "", err
    assert 1 <= len(said) <= 2 and said[0].startswith(first), said
    assert "Traceback" not in err and " in 0." not in err   # no "failed in 0.4s" summary
    if second is None:
        assert len(said) == 1, said
    else:
        assert len(said) == 2 and said[1].startswith(second), said
    assert manifests() == before


@pytest.mark.parametrize("argv, target, job", [
    (["list"], (dataprep, "print_jobs"), "dataprep"),
    (["prepare-corpus"], (prepare_corpus, "probe_inputs"), "prepare_corpus"),
    (["compress-arrays", "--input", "{npy}", "--output_roots", "{tmp}/o"],
     (compress_arrays, "inspect_npy"), "compress_arrays"),
    (["codec-report", "--input", "{npy}"], (codec_report, "gather"), "codec_report"),
    (["verify-store", "--store", "{store}"], (verify_store, "verify_store"), "verify_store"),
    (["verify-store", "--store", "{store}", "--repair"], (verify_store, "repair_store"),
     "verify_store"),
    (["report", "{tmp}"], (report, "render_html"), "report"),
    (["stage-jars"], (stage_jars, "stage_dists"), "stage_jars"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_ctrl_c_is_one_line_and_130_in_every_subcommand(tmp_path, copied, capsys, monkeypatch,
                                                         argv, target, job):
    """Ctrl-C at work (a KeyboardInterrupt raised where each subcommand does its work)."""
    roots, root_map = copied
    fill = {"npy": _npy(tmp_path / "e.npy"), "tmp": str(tmp_path),
            "store": os.path.join(roots[0], "ds")}
    argv = [a.format(**fill) for a in argv]
    if argv[0] == "verify-store":
        argv += ["--root_map", root_map]
    if argv[0] == "report":
        from transforms.storage.report import write_report
        write_report({"counters": {}}, [str(tmp_path)])
    if argv[0] == "stage-jars":
        monkeypatch.setattr(stage_jars.shutil, "which", lambda name: "/bin/true")

    def pressed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(*target, pressed)
    code, _, err = dataprep_exit(capsys, argv)
    assert code == INTERRUPTED
    # one program name, the usage errors' (dataprep list, dataprep verify-store, ...);
    # a job (cli.run_job) says what became of the run: "...: interrupted; the job was
    # cancelled and its temporary files deleted"
    assert err.splitlines() == [f"dataprep {argv[0]}: interrupted" + (
        "" if argv[0] == "list" else
        "; the job was cancelled and its temporary files deleted")], err
    if argv[0] != "list":   # the same job as python -m pipelines.<job> names itself so
        monkeypatch.setattr(cli, "INVOKED_AS", None)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            importlib.import_module(f"pipelines.{job}").main(argv[1:])
        assert exit_info.value.code == INTERRUPTED
        assert capsys.readouterr().err.splitlines() == [
            f"python -m pipelines.{job}: interrupted; the job was cancelled and its "
            "temporary files deleted"]


# ---------------------------------------------------------------- 6. a closed stdout

def closed_pipe_run(argv, **kwargs):
    """Run ``python -m ARGV`` with stdout a pipe whose reader has already gone (what
    ``| head -1`` becomes once head has its line) -> (status, stderr)."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", *argv], stdout=write,
                              stderr=subprocess.PIPE, text=True, env=env(), timeout=300,
                              **kwargs)
    finally:
        os.close(write)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("argv", [
    ["pipelines", "list"], ["pipelines", "--version"], ["pipelines", "--help"],
    ["pipelines", "beam-options"], ["pipelines.prepare_corpus", "--help"],
    *[["pipelines", sub, "--help"] for sub in SUBCOMMANDS],
], ids=" ".join)
def test_output_into_a_closed_pipe_exits_141_without_a_traceback(argv):
    code, err = closed_pipe_run(argv, cwd=ROOT)
    assert (code, err) == (BROKEN_PIPE, "")


def test_jobs_into_a_closed_pipe_exit_141_without_a_traceback(tmp_path, copied):
    roots, root_map = copied
    store = os.path.join(roots[0], "ds")
    code, err = closed_pipe_run(["pipelines", "verify-store", "--store", store, "--root_map",
                                 root_map])
    assert code == BROKEN_PIPE and "Traceback" not in err and "Error" not in err
    assert err.splitlines()[-1].startswith("verify_store done in ")   # it ran, then stopped
    code, err = closed_pipe_run(["pipelines", "prepare-corpus", "--output_roots",
                                 str(tmp_path / "o"), "--run_config", "direct"], cwd=tmp_path)
    assert code == BROKEN_PIPE and "Traceback" not in err and "failed" not in err
    assert load_manifest(str(tmp_path / "o" / "corpus"))["records"] == 356  # committed first
    code, err = closed_pipe_run(["pipelines", "report", str(tmp_path / "o" / "corpus")])
    assert (code, err) == (BROKEN_PIPE, "")
    npy = _npy(tmp_path / "e.npy")
    code, err = closed_pipe_run(["pipelines", "codec-report", "--input", npy, "--repeats", "1"])
    assert (code, err) == (BROKEN_PIPE, "")


def test_a_broken_pipe_that_is_not_stdout_is_a_failure(capsys):
    """A BrokenPipeError from another pipe (a job server's socket) is not a closed
    stdout: the job fails with its one line and 1."""
    def run(argv):
        raise BrokenPipeError(32, "Broken pipe")
    with pytest.raises(SystemExit) as exit_info:
        cli.run_job("prepare_corpus", run, [])
    assert exit_info.value.code == PROBLEM
    assert capsys.readouterr().err == "prepare_corpus failed: [Errno 32] Broken pipe\n"


# ---------------------------------------------------------------- 1. bytes read

def test_a_missing_replica_is_counted_missing_not_read(copied, capsys, monkeypatch):
    roots, root_map = copied
    store = os.path.join(roots[0], "ds")
    manifest = load_manifest(store, root_map)
    total = sum(s["stored_bytes"] * len(s["replicas"]) for s in manifest["shards"])
    first, second = manifest["shards"][0], manifest["shards"][1]
    os.remove(os.path.join(roots[first["replicas"][0]], "ds", first["name"]))
    link = os.path.join(roots[second["replicas"][1]], "ds", second["name"])
    os.remove(link)
    os.symlink("/etc/hostname", link)
    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 0.0)
    monkeypatch.setattr(progress, "TTY_INTERVAL", 0.0)
    code, out, err = dataprep_exit(capsys, ["verify-store", "--store", store, "--root_map",
                                            root_map])
    assert code == PROBLEM and out.rstrip().endswith("; 2 problem(s)")
    read = total - first["stored_bytes"] - second["stored_bytes"]
    lines = err.splitlines()
    assert lines[-1].split(" done in ")[0] == "verify_store"
    assert lines[-1].split(": ", 1)[1] == (f"8 replicas, {progress._human(read)} read, "
                                           "1 missing, 1 unread")
    # the running display: the total becomes the bytes there are to read (so the
    # share and the ETA stay true), what was not read is counted apart
    import io
    from transforms.storage.store import verify_store as verify_rows
    with progress.Track("verify_store", total, "replicas", "verify", stream=io.StringIO()) as t:
        verify_rows(store, root_map, progress=t.advance)
    assert (t.items, t.bytes, t.total, t.missing, t.unread) == (8, read, read, 1, 1)
    line = progress.plain_line("verify_store", t.snapshot(), 1.0, t.total, "replicas")
    assert line.startswith(f"verify_store 0:00:01 stage=verify replicas=8 read="
                           f"{progress._human(read)}/{progress._human(read)} (100%) rate=")
    assert line.endswith(" missing=1 unread=1") and " eta=" not in line


def test_track_counts_bytes_read_and_what_was_not_read():
    import io
    stream = io.StringIO()
    with progress.Track("verify_store", 300, "replicas", "verify", stream=stream) as track:
        for nbytes, status in [(100, "ok"), (0, "missing"), (7, "size_mismatch"),
                               (0, "not_a_file"), (0, "missing"), (0, "unreadable")]:
            track.advance(nbytes, status)
    assert track.snapshot() == progress.Snapshot(6, 107, "verify", 2, 2)
    assert track.total == 300    # no expected sizes given: the total stays
    assert stream.getvalue().splitlines()[-1].endswith(": 6 replicas, 107 B read, 2 missing, "
                                                       "2 unread")


# ---------------------------------------------------------------- 3. stray files

def test_a_stray_file_is_a_warning_strict_makes_it_fail_and_repair_keeps_it(copied, capsys):
    roots, root_map = copied
    store = os.path.join(roots[0], "ds")
    stray = os.path.join(roots[2], "ds", "notes.txt")
    link = os.path.join(roots[1], "ds", "latest")
    with open(stray, "wb") as f:
        f.write(b"mine")
    os.symlink("/etc/hostname", link)
    argv = ["verify-store", "--store", store, "--root_map", root_map]
    code, out, _ = dataprep_exit(capsys, argv)
    assert code == 0
    assert out.splitlines()[-4:] == [
        f"warning: stray file, not in the manifest: {link}",
        f"warning: stray file, not in the manifest: {stray}", "",
        "generation 1: 11 of 11 files ok (4 shards); 2 stray file(s); 0 problem(s); "
        "2 warning(s)"]
    code, _, _ = dataprep_exit(capsys, argv + ["--strict"])
    assert code == PROBLEM
    for extra in ([], ["--strict"]):
        code, out, _ = dataprep_exit(capsys, argv + ["--repair", *extra])
        assert code == (PROBLEM if extra else 0)
        assert f"repair notes.txt on {roots[2]}: stray:unknown -> left in place (not ours to " \
               "delete)" in out
        assert f"repair latest on {roots[1]}: stray:symlink -> left in place (not ours to " \
               "delete)" in out
        assert open(stray, "rb").read() == b"mine" and os.readlink(link) == "/etc/hostname"


def test_leftovers_of_an_interrupted_run_are_warnings_that_repair_deletes(copied, capsys):
    roots, root_map = copied
    store = os.path.join(roots[0], "ds")
    folder = os.path.join(roots[0], "ds")
    temp = os.path.join(folder, temp_name("shard-00000-of-00004.jsonl.zst"))
    stale = os.path.join(folder, "shard-00000-of-00009-0123456789abcdef.jsonl.zst")
    spill = os.path.join(folder, f"{SPILL_PREFIX}0123")
    for path in (temp, stale):
        with open(path, "wb") as f:
            f.write(b"left over")
    os.makedirs(spill)
    argv = ["verify-store", "--store", store, "--root_map", root_map]
    code, out, _ = dataprep_exit(capsys, argv)
    assert code == 0
    warnings = sorted(line for line in out.splitlines() if line.startswith("warning: "))
    assert warnings == sorted(f"warning: stray file, not in the manifest: {p} (--repair "
                              "deletes it)" for p in (temp, stale, spill))
    code, out, _ = dataprep_exit(capsys, argv + ["--repair", "--strict"])
    assert code == 0 and out.rstrip().endswith("0 stray file(s); 0 problem(s)")
    assert not any(os.path.lexists(p) for p in (temp, stale, spill))


# ---------------------------------------------------------------- 2. a run in progress

def test_a_run_in_progress_is_information_and_exit_0(copied, capsys):
    """The lock held by a live process (this one) and that run's working files: a
    spill folder, a temporary file, a shard written but not committed."""
    roots, root_map = copied
    store = os.path.join(roots[0], "ds")
    folders = [os.path.join(r, "ds") for r in roots]
    spill = f"{SPILL_PREFIX}9f8e7d"
    temp = temp_name("shard-00001-of-00002.jsonl.zst")
    new = "shard-00000-of-00002-fedcba9876543210.jsonl.zst"
    argv = ["verify-store", "--store", store, "--root_map", root_map]
    with DatasetLock(folders, job="prepare_corpus") as lock:
        os.makedirs(os.path.join(folders[0], spill, "bucket-0"))
        for name in (temp, new):
            with open(os.path.join(folders[0], name), "wb") as f:
                f.write(b"being written")
        code, out, err = dataprep_exit(capsys, argv)
        assert code == 0, out
        holder = lock.held and __import__("json").loads(open(lock.held[0]).read())
        who = (f"prepare_corpus pid {os.getpid()} on {holder['host']} since "
               f"{holder['since']}")
        info = [line for line in out.splitlines() if line.startswith("info: ")]
        lock_line = f"info: run in progress (.lock): {who}"
        assert info == [lock_line] + [
            f"info: run in progress ({name}): a working file of that run, not checked"
            for name in (spill, temp, new)] + [lock_line] * 2
        assert out.rstrip().endswith(
            "generation 1: 11 of 11 files ok (4 shards); 0 stray file(s); 0 problem(s); "
            "a run is in progress (3 working file(s) not checked)")
        assert not [line for line in out.splitlines() if line.startswith("warning")]
        code, _, _ = dataprep_exit(capsys, argv + ["--strict"])
        assert code == 0
        # repair waits for no one: it needs the lock, and says who holds it
        code, _, err = dataprep_exit(capsys, argv + ["--repair"])
        assert code == PROBLEM
        assert err.splitlines()[-2].startswith(f"verify_store failed: {sorted(folders)[0]}/"
                                               f".lock is held by {who} (that process is "
                                               "still running)")
        assert err.splitlines()[-1] == "hint: wait for that run to end, then run again"
    # the same files once the lock's process is gone: a stale lock and leftovers
    for folder in folders:
        with open(os.path.join(folder, ".lock"), "w") as f:
            f.write('{"pid": 4194311, "host": "%s", "job": "prepare_corpus", "token": "t", '
                    '"since": "then"}' % os.uname().nodename)
    code, out, _ = dataprep_exit(capsys, argv)
    assert code == 0
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    stale = [f"warning: stale lock: {folder}/.lock (left by prepare_corpus pid 4194311 on "
             f"{os.uname().nodename} since then, a process that is gone; --repair "
             "--break_lock removes it)" for folder in folders]
    assert warnings == stale[:1] + [
        f"warning: stray file, not in the manifest: {folders[0]}/{name} (--repair deletes it)"
        for name in (spill, temp, new)] + stale[1:]
    code, _, _ = dataprep_exit(capsys, argv + ["--strict"])
    assert code == PROBLEM
    code, out, _ = dataprep_exit(capsys, argv + ["--repair", "--break_lock", "--strict"])
    assert code == 0 and out.rstrip().endswith("0 stray file(s); 0 problem(s)")
    # each stale lock removed is said, with whose it was and why it counted as stale
    host = os.uname().nodename
    assert [line for line in out.splitlines() if line.startswith("repair .lock")] == [
        f"repair .lock on {os.path.dirname(folder)}: stale lock (prepare_corpus pid 4194311 "
        f"on {host} since then; that process is gone) -> removed (--break_lock)"
        for folder in sorted(folders)]
    assert not any(os.path.lexists(os.path.join(f, ".lock")) for f in folders)


def test_verify_store_while_prepare_corpus_runs(tmp_path, capsys):
    """A real run: prepare-corpus rewrites a committed dataset in another process,
    frozen (SIGSTOP) once its .runs-* folder exists; verify-store then reports the
    run in progress and exits 0 on the committed generation; the run, resumed,
    commits, and verify-store finds the new generation clean."""
    from tests.test_progress import big_corpus
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    argv = ["--output_roots", ",".join(roots), "--run_config", "direct", "--no_near_dedup"]
    prepare_corpus.run(argv)
    capsys.readouterr()
    folder = os.path.join(roots[0], "corpus")
    corpus = big_corpus(tmp_path / "big.jsonl", copies=40)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.prepare_corpus", "--input", corpus,
                             *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env(), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not [n for n in os.listdir(folder) if n.startswith(SPILL_PREFIX)]:
            assert proc.poll() is None and time.monotonic() < deadline, "no .runs-* seen"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            code, out, _ = dataprep_exit(capsys, ["verify-store", "--store", folder])
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert code == 0, out
        lines = out.splitlines()
        assert [line for line in lines if line.startswith("warning")] == []
        assert sum(line.startswith(f"info: run in progress (.lock): prepare_corpus pid "
                                   f"{proc.pid} ") for line in lines) == 2
        assert any(re.fullmatch(r"info: run in progress \(\.runs-[0-9a-f]+\): a working file "
                                r"of that run, not checked", line) for line in lines)
        assert re.fullmatch(r"generation 1: 4 of 4 files ok \(1 shard\); 0 stray file\(s\); "
                            r"0 problem\(s\); a run is in progress \(\d+ working file\(s\) not "
                            r"checked\)", lines[-1])
        assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    code, out, _ = dataprep_exit(capsys, ["verify-store", "--store", folder, "--strict"])
    assert code == 0 and out.splitlines()[-1].startswith("generation 2: ")
    assert out.rstrip().endswith("; 0 stray file(s); 0 problem(s)")


def test_a_generation_committed_during_the_check_is_checked_again(copied, capsys, monkeypatch):
    """A run in progress commits while verify-store reads (its collection would make
    the old generation's replicas read as missing): the check starts again on the
    new generation; a store that changes under every check fails after 3, in one line."""
    roots, root_map = copied
    store = os.path.join(roots[0], "ds")
    real = load_manifest(store, root_map)
    # the total to read, then before and after each check
    digests = iter(["old", "old", "new", "new", "new"])
    monkeypatch.setattr(verify_store, "load_manifest",
                        lambda *a: {**real, "digest": next(digests, "new")})
    checks = []
    real_verify = verify_store.verify_store
    monkeypatch.setattr(verify_store, "verify_store",
                        lambda *a, **k: checks.append(1) or real_verify(*a, **k))
    argv = ["verify-store", "--store", store, "--root_map", root_map]
    code, out, _ = dataprep_exit(capsys, argv)
    assert (code, len(checks)) == (0, 2) and out.rstrip().endswith("0 problem(s)")
    counter = iter(range(100))
    monkeypatch.setattr(verify_store, "load_manifest",
                        lambda *a: {**real, "digest": str(next(counter))})
    checks.clear()
    code, out, err = dataprep_exit(capsys, argv)
    assert (code, len(checks), out) == (PROBLEM, 3, "")
    assert err.splitlines()[-1] == (
        f"verify_store failed: {store}: a new generation was committed during each of 3 "
        "checks (a run in progress); verify again once it has finished")


def test_root_cause_of_a_grpc_error_is_its_status_and_details():
    """A gRPC error's text ends with a lone '>' (its repr's last line): the failure line
    gives its status and details; any text's last line with no word in it is passed over."""
    import grpc

    from pipelines.cli import root_cause

    class Rendezvous(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "failed to connect to all addresses"

        def __str__(self):
            return "<_MultiThreadedRendezvous of RPC that terminated with:\n\tstatus = ...\n>"
    assert root_cause(Rendezvous()) == "UNAVAILABLE: failed to connect to all addresses"
    assert root_cause(RuntimeError("it broke here\n  >\n")) == "it broke here"


def test_break_lock_says_each_stale_lock_it_removed(tmp_path, capsys):
    """prepare-corpus --break_lock on a dataset whose lock was left by a killed run: one
    stderr line per lock removed (whose, why stale), the run commits; without a stale
    lock, no such line."""
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    host = os.uname().nodename
    for root in roots:
        os.makedirs(os.path.join(root, "corpus"))
        with open(os.path.join(root, "corpus", ".lock"), "w") as f:
            f.write('{"pid": 4194311, "host": "%s", "job": "prepare_corpus", "token": "t", '
                    '"since": "then"}' % host)
    argv = ["prepare-corpus", "--output_roots", ",".join(roots), "--run_config", "direct",
            "--no_near_dedup", "--break_lock"]
    code, _, err = dataprep_exit(capsys, argv)
    assert code == 0, err
    said = [line for line in err.splitlines() if "--break_lock removed" in line]
    assert said == [f"dataprep prepare-corpus: --break_lock removed the lock {root}/corpus/.lock "
                    f"(prepare_corpus pid 4194311 on {host} since then; that process is gone)"
                    for root in roots]
    assert all(os.path.exists(os.path.join(r, "corpus", "manifest.json")) for r in roots)
    code, _, err = dataprep_exit(capsys, argv)
    assert code == 0 and "--break_lock removed" not in err


def test_break_lock_says_what_it_removed_also_when_another_lock_is_live(tmp_path, capsys):
    """Root a's lock is stale, root b's is held by a running process: --break_lock removes
    a's, is refused at b (the run does not start), and still says it removed a's."""
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    host = os.uname().nodename
    for root, pid in zip(roots, (4194311, os.getpid())):
        os.makedirs(os.path.join(root, "corpus"))
        with open(os.path.join(root, "corpus", ".lock"), "w") as f:
            f.write('{"pid": %d, "host": "%s", "job": "prepare_corpus", "token": "t", '
                    '"since": "then"}' % (pid, host))
    code, _, err = dataprep_exit(capsys, [
        "prepare-corpus", "--output_roots", ",".join(roots), "--run_config", "direct",
        "--no_near_dedup", "--break_lock"])
    assert code != 0
    assert [line for line in err.splitlines() if "--break_lock removed" in line] == [
        f"dataprep prepare-corpus: --break_lock removed the lock {roots[0]}/corpus/.lock "
        f"(prepare_corpus pid 4194311 on {host} since then; that process is gone)"]
    assert "that process is still running" in err
    assert not os.path.exists(os.path.join(roots[0], "corpus", ".lock"))
    assert os.path.exists(os.path.join(roots[1], "corpus", ".lock"))
