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


def _prism_argv(location, *more):
    return ["--run_config", "prism", f"--prism_location={location}", *more]


def test_a_missing_prism_binary_is_one_line_naming_where_it_was_looked_for(tmp_path, capsys):
    missing = tmp_path / "bin" / "prism"
    for where, what in ((missing, "not found"), (tmp_path, "is a folder")):
        with pytest.raises(SystemExit) as exit_:
            prepare_corpus.build_parser().parse(_prism_argv(where))
        err = capsys.readouterr().err.splitlines()
        assert exit_.value.code == 2
        assert err == [f"python -m pipelines.prepare_corpus: error: Prism {what} at {where} "
                       "(--prism_location)",
                       '(see README "Runners": scripts/build_prism.sh builds Prism from the '
                       "Go module proxy)"]


def test_prism_is_not_checked_when_no_job_starts_it(tmp_path, capsys):
    """A job server already running (--job_endpoint: Beam never starts the binary) and a
    command that runs no pipeline (verify-store) do not look for it."""
    missing = tmp_path / "prism"
    prepare_corpus.build_parser().parse(_prism_argv(missing, "--job_endpoint=localhost:8099"))
    assert capsys.readouterr().err == ""
    from pipelines import verify_store
    with pytest.raises(Exception) as failed:   # no store there: that is the only complaint
        verify_store.run(_prism_argv(missing, "--store", str(tmp_path / "none")))
    assert "no store" in str(failed.value) and "Prism" not in capsys.readouterr().err


def test_a_prism_location_under_home_is_expanded_for_beam(tmp_path, monkeypatch, capsys):
    """``--prism_location=~/...`` (the shell leaves ``~`` after ``=``): Beam would take the
    ``~`` literally and fail later; the job gives Beam the expanded path."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "prism").write_bytes(b"#!/bin/sh\n")
    _, options = prepare_corpus.build_parser().parse(_prism_argv("~/prism"))
    assert options.get_all_options()["prism_location"] == str(tmp_path / "prism")


def _beam_version():
    import apache_beam
    return apache_beam.__version__


@pytest.mark.parametrize("stamp, ours", [
    (None, False), ("v2.77.0", False), ("", False), ("\xff\xfe", False),
    ("v0.0.1+dataprep.0123456789ab", False),                    # built for another Beam
    ("{beam}+dataprep.0123456789ab\nmore", True)])
def test_a_prism_not_built_with_our_patches_is_warned_about(tmp_path, capsys, stamp, ours):
    """scripts/build_prism.sh stamps the binary with Beam's version + a digest of
    scripts/prism_patches/; a stock Prism (Beam's download, an older build, one for
    another Beam version) can drop counters (the metrics short-id race), so the run
    warns, in one line, and goes on.  The stamp is looked for beside the binary a
    link points to."""
    real = tmp_path / "bin"
    real.mkdir()
    (real / "prism").write_bytes(b"#!/bin/sh\n")
    binary = tmp_path / "prism"
    binary.symlink_to(real / "prism")
    if stamp is not None:
        text = stamp.replace("{beam}", f"v{_beam_version()}")
        (real / "prism.version").write_bytes(text.encode("latin-1"))
    _, options = prepare_corpus.build_parser().parse(_prism_argv(binary))
    assert options.get_all_options()["prism_location"] == str(binary)
    err = capsys.readouterr().err
    if ours:
        assert err == ""
        return
    shown = {None: "missing", "": "empty", "\xff\xfe": "missing"}.get(stamp, stamp)
    assert err == (f"python -m pipelines.prepare_corpus: warning: Prism at {binary} is not "
                   f"built by scripts/build_prism.sh for Beam {_beam_version()} (stamp "
                   f"{shown}): stock Prism can drop a bundle's counters from the run report "
                   "(Beam's metrics short-id race; the store is not affected); rebuild with "
                   "scripts/build_prism.sh --force\n")
