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
