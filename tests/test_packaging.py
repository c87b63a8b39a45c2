"""Packaging and the command line: the wheel's contents, `dataprep`, and argument errors.

The full install-and-run check (a fresh venv outside the checkout, the main job
and verify_store from an empty folder) is scripts/check_wheel.sh, run by .ci/run.
"""
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

import pipelines
from pipelines import __main__ as dataprep
from pipelines import prepare_corpus, verify_store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), ROOT],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (path,) = out.glob("beam_dataprep-*.whl")
    return path


def test_the_wheel_carries_run_configs_sample_data_licence_and_the_command(wheel):
    # platform-specific: it carries the compiled filters (transforms/reduction/filters/native.py)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name.startswith(f"beam_dataprep-{pipelines.__version__}-{tag}-{tag}-"), wheel.name
    assert sysconfig.get_platform().replace("-", "_").replace(".", "_") in wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        assert f"transforms/reduction/filters/_fastfilters{suffix}" in names
        assert f"transforms/core/_fastcore{suffix}" in names
        assert "transforms/reduction/filters/native.py" in names
        shipped = sorted(os.listdir(os.path.join(ROOT, "pipelines", "run_configs")))
        assert {f"pipelines/run_configs/{n}" for n in shipped} <= names
        assert "direct.yaml" in shipped and "flink_local.yaml" in shipped
        assert "pipelines/sample_data/sample.jsonl" in names
        recipes = sorted(os.listdir(os.path.join(ROOT, "transforms", "reduction", "filters", "recipes")))
        assert recipes == ["minimal.yaml", "web.yaml"]
        assert {f"transforms/reduction/filters/recipes/{n}" for n in recipes} <= names
        assert "transforms/storage/templates/run_report.html.j2" in names
        dist_info = f"beam_dataprep-{pipelines.__version__}.dist-info"
        with open(os.path.join(ROOT, "LICENSE"), "rb") as f:
            assert z.read(f"{dist_info}/licenses/LICENSE") == f.read()
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
        assert "dataprep = pipelines.__main__:main" in entry_points
        metadata = z.read(f"{dist_info}/METADATA").decode()
        assert f"Version: {pipelines.__version__}" in metadata
        assert "License-Expression: Apache-2.0" in metadata
        # Only our two top-level packages are installed.
        assert {n.split("/")[0] for n in names if not n.startswith(dist_info)} == {
            "pipelines", "transforms"}


def test_version_comes_from_one_place(capsys):
    dataprep.main(["--version"])
    assert capsys.readouterr().out == f"beam-dataprep {pipelines.__version__}\n"
    with pytest.raises(SystemExit) as exit_info:
        prepare_corpus.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"beam-dataprep {pipelines.__version__}\n"
    with open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8") as f:
        assert f"## {pipelines.__version__}" in f.read()


def test_list_names_every_job_as_a_subcommand(capsys):
    dataprep.main(["list"])
    out = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in out[1:]]
    assert listed == ["codec-report", "compress-arrays", "prepare-corpus", "report", "stage-jars", "verify-store",
                      "list", "beam-options"]


def test_help_and_no_argument(capsys):
    """``dataprep --help`` (exit 0, stdout) and bare ``dataprep`` (exit 2, stderr) give a
    plain summary, the usage and the subcommands."""
    dataprep.main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("dataprep: prepare training data with Apache Beam")
    assert "``" not in out and "\nusage: dataprep {list,beam-options,<job>}" in out
    assert "  prepare-corpus " in out and "  beam-options " in out
    with pytest.raises(SystemExit) as exit_info:
        dataprep.main([])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == out


def test_an_unknown_run_config_names_the_shipped_ones(capsys, monkeypatch):
    monkeypatch.setattr("pipelines.cli.INVOKED_AS", "dataprep prepare-corpus")
    with pytest.raises(SystemExit) as exit_info:
        prepare_corpus.run(["--run_config", "flink"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "dataprep prepare-corpus: error: run config not found: flink (a YAML file, or one of "
        "the shipped dataflow, direct, direct_multiprocess, flink_cluster, flink_local, prism, "
        "spark_cluster, spark_local)\n(see dataprep prepare-corpus --help)\n")


def test_an_unknown_job_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        dataprep.main(["prepare"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "dataprep: error: unknown subcommand 'prepare' (did you mean prepare-corpus?); "
        "subcommands: codec-report, compress-arrays, "
        "prepare-corpus, report, stage-jars, verify-store, list, beam-options\n")


@pytest.mark.parametrize("argv, message", [
    (["--repl", "3"], "unrecognized argument --repl (did you mean --replication?)"),
    (["--replication", "3"], "--replication 3 is more than the 2 root(s) in --output_roots"),
    (["--num_shards", "0"], "argument --num_shards: must be >= 1, got 0"),
])
def test_argument_errors_are_one_line_and_a_hint(argv, message, capsys, monkeypatch):
    monkeypatch.setattr("pipelines.cli.INVOKED_AS", "dataprep prepare-corpus")
    with pytest.raises(SystemExit) as exit_info:
        prepare_corpus.run(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"dataprep prepare-corpus: error: {message}\n"
                                       "(see dataprep prepare-corpus --help)\n")


def test_verify_store_takes_no_abbreviations(capsys):
    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--sto", "x"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "python -m pipelines.verify_store: error: unrecognized argument --sto (did you mean "
        "--store?)", "(see python -m pipelines.verify_store --help)"]


def test_beam_options_are_listed_with_help(capsys):
    dataprep.main(["beam-options"])
    out = capsys.readouterr().out
    for flag in ("--runner", "--direct_num_workers", "--flink_master", "--job_endpoint",
                 "--environment_type"):
        assert flag in out
    assert "usage: dataprep beam-options" in out


def test_help_points_at_a_command_that_works(capsys):
    with pytest.raises(SystemExit):
        prepare_corpus.main(["--help"])
    assert "dataprep beam-options" in capsys.readouterr().out


def test_the_command_runs_as_an_installed_script():
    """`python -m pipelines` is the dataprep command (naming itself as typed), without
    Beam's import warning."""
    proc = subprocess.run([sys.executable, "-m", "pipelines", "prepare-corpus", "--repl", "3"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr == ("python -m pipelines prepare-corpus: error: unrecognized argument "
                           "--repl (did you mean --replication?)\n"
                           "(see python -m pipelines prepare-corpus --help)\n")


def test_importing_the_transforms_logs_no_beam_import_warning():
    """A user's own pipeline importing our transforms sees no apitools warning."""
    proc = subprocess.run([sys.executable, "-c", "from transforms import DedupRecords, ReadStore"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_verify_store_of_no_store_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("pipelines.cli.INVOKED_AS", "dataprep verify-store")
    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"dataprep verify-store: error: no store at {tmp_path / 'nowhere'} (not found)\n")
