"""Run report: pure views and rendering (no pipeline), gathering helpers, ``dataprep report``."""
import os
import types

import orjson
import pytest
import zstandard

from pipelines import report as report_job
from tests import browser
from transforms.storage import report as rep


def synthetic_report():
    return {
        "job": "prepare_corpus", "runner": "DirectRunner",
        "versions": {"beam_dataprep": "9.9.9", "apache_beam": "2.77.0", "python": "3.11.0"},
        "started_utc": "2026-01-01T00:00:00+00:00", "finished_utc": "2026-01-01T00:01:00+00:00",
        "wall_seconds": 60.0, "cpu_seconds": 42.5,
        "counters": {"read/lines": 1000, "read/records": 990, "read/bytes": 123456,
                     "read/bad.invalid_json": 7, "read/bad.missing_text": 3,
                     "dedup/duplicates_removed": 100, "near_dedup/near_duplicates_removed": 20,
                     "quality/dropped_too_short": 5, "store/records": 865,
                     "store/raw_bytes": 100000, "store/stored_bytes": 25000, "store/shards": 5},
        "near_dedup_cluster_sizes": [{"min_size": 2, "max_size": 2, "clusters": 12},
                                     {"min_size": 3, "max_size": 4, "clusters": 4}],
        "shard_sizes": [{"partition": "en", "raw_bytes": [10000, 20000, 30000]},
                        {"partition": "zh", "raw_bytes": [15000, 25000]}],
        "codec": "zstd:level=3",
        "dead_letters": {"examples": [{"reason": "invalid_json", "file": "in.jsonl", "line": 4,
                                       "detail": "bad <b>", "raw": "{<script>"}]},
        "inputs": [{"path": "in.jsonl", "bytes": 123456, "digest": "abc123"}],
        "stages": {"source": rep.EXECUTION_TIME, "note": "busy time",
                   "rows": [{"stage": "Read", "busy_seconds": 3.5}]},
        "config": {"dataset": "corpus"}, "beam_options": {"runner": "DirectRunner"},
    }


def test_removal_reasons_take_every_dropping_counter():
    rows = rep.removal_reasons(synthetic_report()["counters"])
    assert [(r["reason"], r["documents"]) for r in rows] == [
        ("dedup.exact_duplicate", 100), ("near_dedup.near_duplicate", 20),
        ("bad line: invalid_json", 7),
        ("quality: too_short", 5), ("bad line: missing_text", 3)]
    assert rep.removal_reasons({"read/bad.x": 0, "dedup/kept": 5}) == []


def test_view_numbers():
    view = rep.view(synthetic_report())
    summary = dict(view["summary"])
    assert summary["bad lines"] == "10" and summary["compression ratio"] == "4.000"
    assert summary["CPU seconds"] == "42.500" and summary["beam-dataprep"] == "9.9.9"
    assert [(b["label"], b["value"]) for b in view["cluster_chart"]["bars"]] == [
        ("2", 12), ("3-4", 4)]
    chart = view["shard_chart"]
    assert [(r["partition"], r["shards"], r["min"], r["max"], r["mean"])
            for r in chart["rows"]] == [("en", 3, 10000, 30000, 20000.0),
                                        ("zh", 2, 15000, 25000, 20000.0)]
    xs = [t["x"] for t in chart["rows"][0]["ticks"]]
    assert xs[0] < xs[1] < xs[2] == chart["axis"][-1]["x"]  # the largest shard ends the axis
    assert view["codec_rows"] == [{"codec": "zstd:level=3", "chosen": True,
                                   "cells": ["100,000", "25,000", "4.000"]}]


def test_bar_chart_is_proportional():
    chart = rep.bar_chart([("a", 10), ("b", 5), ("c", 0)])
    widths = [b["w"] for b in chart["bars"]]
    assert widths[0] == pytest.approx(2 * widths[1]) and widths[2] == 0
    assert rep.bar_chart([])["bars"] == []


def test_rendered_page_is_self_contained_and_escaped():
    page = rep.render_html(synthetic_report())
    doc = browser.parse(page)
    assert doc.find_all("script") == [] and doc.find_all("link") == []
    assert not [e for e in doc.iter() if "src" in e.attrs or "href" in e.attrs]
    assert "{<script>" not in page and "{&lt;script&gt;" in page
    bars = doc.by_id("removal-chart").find_all("g", class_="bar")
    assert [int(b.attrs["data-value"]) for b in bars] == [100, 20, 7, 5, 3]
    assert doc.by_id("lineage-table").rows()[1] == ["in.jsonl", "123,456", "abc123"]
    assert [r[:5] for r in doc.by_id("shard-table").rows()[1:]] == [
        ["en", "3", "10,000", "20,000.0", "30,000"], ["zh", "2", "15,000", "20,000.0", "25,000"]]
    assert doc.by_id("dead-letter-examples").rows()[1][:3] == ["invalid_json", "in.jsonl", "4"]


def test_an_old_report_of_counters_only_renders():
    page = rep.render_html({"job": "prepare_corpus", "counters": {"read/lines": 3}})
    doc = browser.parse(page)
    for ident in ("removal-none", "clusters-none", "shards-none", "codec-none",
                  "dead-letters-none", "lineage-none"):
        doc.by_id(ident)
    assert doc.by_id("stages-note").text() == "No per-stage times in this report."


def test_input_lineage_fills_sizes_and_keeps_digests(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 3)
    rows = rep.input_lineage([str(b), {"path": str(a), "digest": "d1"}])
    assert rows == [{"path": str(a), "bytes": 10, "digest": "d1"},
                    {"path": str(b), "bytes": 3, "digest": None}]
    assert rep.input_lineage([{"path": "gone", "bytes": 5}]) == [
        {"path": "gone", "bytes": 5, "digest": None}]


def _counter(step, namespace, name, value):
    metric = types.SimpleNamespace(namespace=namespace, name=name)
    return types.SimpleNamespace(key=types.SimpleNamespace(step=step, metric=metric),
                                 committed=value, attempted=value)


def test_stage_times_sum_execution_time_per_top_level_step():
    namespace, name = rep.EXECUTION_TIME.split(":", 1)
    result = types.SimpleNamespace(monitoring_metrics=lambda: types.SimpleNamespace(
        query=lambda: {"counters": [
            _counter("Read/Parse", namespace, name, 1500),
            _counter("Read/Split", namespace, name, 500),
            _counter("Store/Write", namespace, name, 3000),
            _counter("Idle", namespace, name, 0),
            _counter("ref_PCollection_PCollection_12", namespace, name, 0),
            _counter("ref_PCollection_PCollection_13", namespace, name, 7),
            _counter("Store/Write", "beam", "metric:element_count:v1", 99)]}))
    times = rep.stage_times(result)   # no pipeline: the steps with time, as reported
    assert times["rows"] == [{"stage": "Read", "busy_seconds": 2.0},
                             {"stage": "Store", "busy_seconds": 3.0}]
    assert times["source"] == rep.EXECUTION_TIME
    none = rep.stage_times(types.SimpleNamespace())  # a runner without monitoring metrics
    assert none["rows"] == [] and "no per-stage times" in none["note"]


class _Job(__import__("apache_beam").PTransform):
    """A whole-job composite of three steps (applied as ``PrepareCorpus``)."""

    def expand(self, pbegin):
        import apache_beam as beam
        numbers = pbegin | "Read" >> beam.Create([1, 2])
        numbers | "Store" >> beam.Map(str)
        return numbers | "Count" >> beam.combiners.Count.Globally()


def test_stage_rows_are_the_jobs_steps_in_job_order_without_pcollections():
    """Every step of the job composite in the order the job applies it (time 0.0 when
    none was sampled), then another step with time; PCollection-keyed metrics never."""
    import apache_beam as beam
    pipeline = beam.Pipeline()
    pipeline | "PrepareCorpus" >> _Job()
    assert rep.job_stages(pipeline) == ["Read", "Store", "Count"]
    namespace, name = rep.EXECUTION_TIME.split(":", 1)
    result = types.SimpleNamespace(monitoring_metrics=lambda: types.SimpleNamespace(
        query=lambda: {"counters": [
            _counter("ref_AppliedPTransform_PrepareCorpus-Store-Map-str-_5", namespace, name,
                     1250),
            _counter("PrepareCorpus/Count/CombineGlobally", namespace, name, 250),
            _counter("ref_PCollection_PCollection_3", namespace, name, 40),
            _counter("Extra", namespace, name, 10),
            _counter("Zero", namespace, name, 0)]}))
    assert rep.stage_times(result, pipeline)["rows"] == [
        {"stage": "Read", "busy_seconds": 0.0}, {"stage": "Store", "busy_seconds": 1.25},
        {"stage": "Count", "busy_seconds": 0.25}, {"stage": "Extra", "busy_seconds": 0.01}]


def test_stage_of_step_names():
    assert rep.stage_of("PrepareCorpus/Read/ScanFiles") == "Read"
    assert rep.stage_of("ref_AppliedPTransform_PrepareCorpus-NearDedup-Lsh_41") == "NearDedup"
    assert rep.stage_of("Store/Write") == "Store"
    assert rep.stage_of("ref_PCollection_PCollection_12") is None
    assert rep.stage_of("") is None


def test_an_old_reports_pcollection_rows_are_not_rendered():
    report = synthetic_report()
    report["stages"]["rows"] = [{"stage": "Read", "busy_seconds": 3.5},
                                {"stage": "ref_PCollection_PCollection_12", "busy_seconds": 0.0},
                                {"stage": "Store", "busy_seconds": 0.0}]
    doc = browser.parse(rep.render_html(report))
    assert doc.by_id("stage-table").rows() == [["stage", "busy seconds"], ["Read", "3.500"],
                                               ["Store", "0.000"]]
    assert [b.attrs["data-label"] for b in doc.by_id("stage-chart").find_all(
        "g", class_="bar")] == ["Read", "Store"]


# PrepareCorpus's steps, in the order it applies them, with no option that adds steps
PREPARE_STAGES = ["Read", "DigestPaths", "ExactDedup", "NearDedup", "AllRemoved", "Gate", "BatchSizes", "FilteredSizes", "DeadReasons",
                  "KeptSizes", "AllCounts", "Tally", "BadFraction", "NotEmpty", "IdGate",
                  "HashOrder", "Store", "DeadLetters", "Inputs"]


def test_a_small_jobs_report_lists_its_stages_in_job_order(tmp_path, run_config):
    """A real run: run_report.json's ``stages.rows`` are PrepareCorpus's 19 steps in job
    order (no PCollection names), and the HTML table shows the same rows."""
    from pipelines import prepare_corpus
    data = tmp_path / "in.jsonl"
    with open(prepare_corpus.SAMPLE, "rb") as f:
        data.write_bytes(b"".join(f.read().splitlines(keepends=True)[:40]))
    report = prepare_corpus.run(["--input", str(data), "--output_roots", str(tmp_path / "a"),
                                 "--run_config", run_config])
    stages = report["stages"]
    written = orjson.loads((tmp_path / "a" / "corpus" / "_audit" / rep.REPORT_JSON).read_bytes())
    assert written["stages"] == stages
    if stages["source"] is None:   # Flink's and Spark's job servers report no step times
        assert stages["rows"] == [] and "no per-stage times" in stages["note"]
        return
    assert [r["stage"] for r in stages["rows"]] == PREPARE_STAGES
    assert all(isinstance(r["busy_seconds"], float) and r["busy_seconds"] >= 0
               for r in stages["rows"])
    page = (tmp_path / "a" / "corpus" / "_audit" / rep.REPORT_HTML).read_text()
    assert browser.parse(page).by_id("stage-table").rows() == [["stage", "busy seconds"]] + [
        [r["stage"], f"{r['busy_seconds']:.3f}"] for r in stages["rows"]]


def _write_dead(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    path.write_bytes(zstandard.ZstdCompressor().compress(data))


def test_dead_letter_examples_a_few_per_reason_also_under_audit(tmp_path):
    _write_dead(tmp_path / "dead_letters-00000-of-00001.jsonl.zst",
                [{"reason": "invalid_json", "file": "f", "line": n} for n in (9, 1, 5, 7)])
    _write_dead(tmp_path / "_audit" / "dead_letters-00000-of-00001.jsonl.zst",
                [{"reason": "missing_text", "file": "f", "line": 2}])
    examples = rep.dead_letter_examples(str(tmp_path), per_reason=3)
    assert [(e["reason"], e["line"]) for e in examples] == [
        ("invalid_json", 1), ("invalid_json", 5), ("invalid_json", 9), ("missing_text", 2)]
    assert rep.dead_letter_examples(str(tmp_path / "empty")) == []


def test_dataprep_report_rerenders_a_store(tmp_path, capsys):
    report = synthetic_report()
    rep.write_report(report, [str(tmp_path)])
    page = tmp_path / "_audit" / rep.REPORT_HTML  # audit outputs live apart from the data
    first = page.read_bytes()
    page.unlink()
    report_job.main([str(tmp_path)])
    assert page.read_bytes() == first == rep.render_html(report).encode()
    assert capsys.readouterr().out.strip() == str(page)
    report_job.main([str(tmp_path), "--output", str(tmp_path / "copy.html")])
    assert (tmp_path / "copy.html").read_bytes() == first


def test_dataprep_report_errors_in_one_line(tmp_path, capsys):
    """No run report there: a bad path on the command line (2); a report that is not
    JSON: the run found a problem (1); an --output folder that is not there (2)."""
    with pytest.raises(SystemExit) as exit_info:
        report_job.main([str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (f"python -m pipelines.report: error: no run report at "
                   f"{tmp_path}/_audit/{rep.REPORT_JSON} (not found)\n")
    (tmp_path / "_audit").mkdir()
    (tmp_path / "_audit" / rep.REPORT_JSON).write_bytes(b"[1, 2")
    with pytest.raises(SystemExit) as exit_info:
        report_job.main([str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"report failed: {tmp_path}/_audit/{rep.REPORT_JSON} is not JSON: ")
    assert os.listdir(tmp_path / "_audit") == [rep.REPORT_JSON]
    # a page that cannot be written (here: below a file, not a folder): one line
    (tmp_path / "_audit" / rep.REPORT_JSON).write_bytes(b'{"counters": {}}')
    (tmp_path / "a file").write_bytes(b"")
    target = tmp_path / "a file" / "r.html"
    with pytest.raises(SystemExit) as exit_info:
        report_job.main([str(tmp_path), "--output", str(target)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"python -m pipelines.report: error: cannot write "
                                       f"{target} (--output): {tmp_path / 'a file'} is a "
                                       "file, not a folder\n")
    # a folder that does not exist: named so, with what to do
    target = tmp_path / "nodir" / "r.html"
    with pytest.raises(SystemExit) as exit_info:
        report_job.main([str(tmp_path), "--output", str(target)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"python -m pipelines.report: error: cannot write {target} (--output): folder "
        f"{tmp_path / 'nodir'} not found\nhint: create it first (mkdir -p "
        f"{tmp_path / 'nodir'}), or give --output a path in an existing folder\n")
    assert not (tmp_path / "nodir").exists()


def test_removal_reasons_name_filter_drops_as_in_the_removed_records():
    rows = rep.removal_reasons({
        "filters/c4/kept": 9, "filters/c4/dropped.curly_bracket": 2,
        "filters/sample/dropped.not_sampled": 4, "filters/pii/EMAIL": 3,
        "filters/sample_per_partition/dropped.not_sampled": 1,
        "dedup/duplicates_removed": 2})
    assert [(r["reason"], r["counter"], r["documents"]) for r in rows] == [
        ("sample.not_sampled", "filters/sample/dropped.not_sampled", 4),
        ("c4.curly_bracket", "filters/c4/dropped.curly_bracket", 2),
        ("dedup.exact_duplicate", "dedup/duplicates_removed", 2),
        ("sample_per_partition.not_sampled",
         "filters/sample_per_partition/dropped.not_sampled", 1)]


def test_recorded_flags_make_paths_absolute_and_keep_them_as_given(tmp_path, monkeypatch):
    from pipelines import cli
    from transforms.reduction.filters.recipes import RECIPES_DIR
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", "/home/someone")
    flags = {"input": "data/*.jsonl, ./x/../b[1].jsonl,~/c.jsonl,gs://bucket/d.jsonl",
             "output_roots": "out/a=2,../b,s3://bucket/c/", "recipe": "web",
             "run_config": "configs/../direct.yaml", "dataset": "corpus", "codec": None}
    recorded = cli.recorded_flags(flags)
    parent = os.path.dirname(str(tmp_path))
    assert recorded == {
        "input": f"{tmp_path}/data/*.jsonl,{tmp_path}/b[1].jsonl,/home/someone/c.jsonl,"
                 "gs://bucket/d.jsonl",
        "output_roots": f"{tmp_path}/out/a=2,{parent}/b,s3://bucket/c",
        "recipe": os.path.join(RECIPES_DIR, "web.yaml"),
        "run_config": f"{tmp_path}/direct.yaml", "dataset": "corpus", "codec": None,
        "as_given": {k: flags[k] for k in ("input", "output_roots", "recipe", "run_config")}}
    absolute = {"input": "/d/a.jsonl", "output_roots": "/r/a", "recipe": None,
                "run_config": "/c/direct.yaml"}
    assert cli.recorded_flags(absolute) == absolute   # nothing to record as given


def test_a_run_from_a_folder_records_absolute_paths(tmp_path, monkeypatch, run_config):
    """Relative --input, --output_roots, --recipe and --run_config as typed in the
    working folder: run_report.json's config names them absolutely (as typed under
    ``as_given``), and the manifest's roots and inputs are absolute too."""
    import shutil

    from pipelines import prepare_corpus
    from transforms.reduction.filters.recipes import recipe_path
    work = tmp_path / "work"
    (work / "in").mkdir(parents=True)
    with open(prepare_corpus.SAMPLE, "rb") as f:
        (work / "in" / "part.jsonl").write_bytes(
            b"".join(f.read().splitlines(keepends=True)[:40]))
    shutil.copy(recipe_path("minimal"), work / "mine.yaml")
    shutil.copy(run_config, work / "runner.yaml")
    monkeypatch.chdir(work)
    given = {"input": "in/part.jsonl", "output_roots": "out/a,./out/../out/b",
             "recipe": "./mine.yaml", "run_config": "runner.yaml"}
    report = prepare_corpus.run([arg for k, v in given.items() for arg in (f"--{k}", v)])
    written = orjson.loads((work / "out" / "a" / "corpus" / "_audit" / rep.REPORT_JSON)
                           .read_bytes())
    assert written["config"] == report["config"]
    config = report["config"]
    assert {k: config[k] for k in given} == {
        "input": f"{work}/in/part.jsonl", "output_roots": f"{work}/out/a,{work}/out/b",
        "recipe": f"{work}/mine.yaml", "run_config": f"{work}/runner.yaml"}
    assert config["as_given"] == given
    manifest = orjson.loads((work / "out" / "b" / "corpus" / "manifest.json").read_bytes())
    assert manifest["roots"] == [f"{work}/out/a", f"{work}/out/b"]
    assert [i["path"] for i in manifest["inputs"]] == [f"{work}/in/part.jsonl"]
    assert report["inputs"][0]["path"] == f"{work}/in/part.jsonl"
