import pytest

from pipelines import prepare_corpus, run_config


def test_shipped_configs_load():
    assert run_config.flags_from("direct") == [
        "--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
    assert "--direct_running_mode=multi_processing" in run_config.flags_from(
        "run_configs/direct_multiprocess.yaml")


def test_unknown_key_and_missing_file_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runner: DirectRunner\ndirect_num_wrokers: 2\n")
    with pytest.raises(run_config.RunConfigError, match="direct_num_wrokers"):
        run_config.load(str(bad))
    with pytest.raises(run_config.RunConfigError, match="no/such.yaml"):
        run_config.load("no/such.yaml")


def test_command_line_overrides_run_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("runner: DirectRunner\ndirect_num_workers: 3\n")
    _, options = prepare_corpus.build_parser().parse(
        ["--run_config", str(cfg), "--direct_num_workers=1"])
    assert options.get_all_options()["direct_num_workers"] == 1


def test_cli_rejects_unknown_flag_and_names_it(capsys):
    with pytest.raises(SystemExit):
        prepare_corpus.build_parser().parse(["--run_config", "direct", "--replicaton", "2"])
    assert "--replicaton" in capsys.readouterr().err


def test_cli_missing_run_config_is_clear(capsys):
    with pytest.raises(SystemExit):
        prepare_corpus.build_parser().parse(["--run_config", "nope.yaml"])
    assert "run config not found: nope.yaml" in capsys.readouterr().err


def _prism_argv(location):
    return ["--run_config", "prism", f"--prism_location={location}"]


def test_a_missing_prism_binary_is_one_line_naming_where_it_was_looked_for(tmp_path, capsys):
    missing = tmp_path / "bin" / "prism"
    with pytest.raises(SystemExit) as exit_:
        prepare_corpus.build_parser().parse(_prism_argv(missing))
    err = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2
    assert err == [f"python -m pipelines.prepare_corpus: error: Prism not found at {missing} (--prism_location)",
                   '(see README "Runners": scripts/build_prism.sh builds Prism from the Go '
                   "module proxy)"]


@pytest.mark.parametrize("stamp", [None, "v2.77.0", "v2.77.0+dataprep.0123456789ab"])
def test_a_prism_not_built_with_our_patches_is_warned_about(tmp_path, capsys, stamp):
    """scripts/build_prism.sh stamps the binary with Beam's version + a digest of
    scripts/prism_patches/; a stock Prism (Beam's download, an older build) can drop
    counters (the metrics short-id race), so the run warns, once, and goes on."""
    binary = tmp_path / "prism"
    binary.write_bytes(b"#!/bin/sh\n")
    if stamp:
        (tmp_path / "prism.version").write_text(stamp + "\n")
    _, options = prepare_corpus.build_parser().parse(_prism_argv(binary))
    assert options.get_all_options()["prism_location"] == str(binary)
    err = capsys.readouterr().err
    if stamp and "+dataprep." in stamp:
        assert err == ""
    else:
        assert err == (f"python -m pipelines.prepare_corpus: warning: Prism at {binary} is not built by "
                       f"scripts/build_prism.sh (stamp {stamp or 'missing'}): stock Prism can "
                       "drop a bundle's counters from the run report (Beam's metrics short-id "
                       "race; the store is not affected); rebuild with scripts/build_prism.sh "
                       "--force\n")

