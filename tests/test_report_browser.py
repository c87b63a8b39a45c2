"""run_report.html as a person sees it: opened in headless Chromium after a real run.

Fails (never skips) when Chromium is missing; fails on any console message.
The numbers on the page are checked against the input (parsed here on its
own), the manifest and the run report's counters.
"""
import collections
import os
import struct

import orjson
import pytest
import xxhash

from pipelines import prepare_corpus, run_config
from tests import browser
from transforms.storage.report import render_html
from transforms.storage.store import load_manifest

SAMPLE = prepare_corpus.SAMPLE


def sample_truth():
    """Lines, bad lines by reason (with line numbers), and distinct texts of the sample."""
    lines = open(SAMPLE, "rb").read().splitlines()
    bad = collections.defaultdict(list)
    texts = []
    for number, line in enumerate(lines, 1):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad["invalid_json"].append(number)
            continue
        if not isinstance(doc, dict):
            bad["not_an_object"].append(number)
        elif not isinstance(doc.get("text"), str):
            bad["missing_text"].append(number)
        else:
            texts.append(doc["text"])
    return len(lines), dict(bad), texts


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report = prepare_corpus.run([
        "--output_roots", f"{out}/a,{out}/b", "--partition_by", "source",
        "--target_shard_bytes", "16k", "--codec", "auto", "--write_removed"])
    store = str(out / "a" / "corpus")
    page = os.path.join(store, "_audit", "run_report.html")
    dom, console = browser.dump_dom(page)
    return {"report": report, "store": store, "page": page, "doc": browser.parse(dom),
            "console": console, "manifest": load_manifest(store)}


def test_page_loads_without_console_messages(finished):
    assert finished["console"] == []
    assert finished["doc"].find_all("script") == []
    assert not [e for e in finished["doc"].iter() if "src" in e.attrs or e.tag == "link"]
    with open(finished["page"], "rb") as f:
        assert f.read() == render_html(finished["report"]).encode()


def test_summary_table_matches_the_input_and_manifest(finished):
    lines, bad, texts = sample_truth()
    table = {row[0]: row[1] for row in finished["doc"].by_id("summary-table").rows()}
    manifest = finished["manifest"]
    assert table["lines read"] == f"{lines:,}"
    assert table["bytes read"] == f"{os.path.getsize(SAMPLE):,}"
    assert table["documents read"] == f"{len(texts):,}"
    assert table["bad lines"] == f"{sum(map(len, bad.values())):,}"
    assert table["documents stored"] == f"{manifest['records']:,}"
    assert table["shards"] == f"{len(manifest['shards']):,}"
    assert table["stored bytes"] == f"{manifest['stored_bytes']:,}"
    assert table["codec"] == finished["report"]["codec"]
    assert table["Apache Beam"] == finished["report"]["versions"]["apache_beam"]


def test_removal_chart_and_table(finished):
    _, bad, texts = sample_truth()
    counters = finished["report"]["counters"]
    exact = counters["dedup/duplicates_removed"]
    near = counters["near_dedup/near_duplicates_removed"]
    assert len(texts) - exact - near == finished["manifest"]["records"] and exact and near
    expected = {"dedup.exact_duplicate": exact, "near_dedup.near_duplicate": near}
    expected.update({f"bad line: {reason}": len(at) for reason, at in bad.items()})
    doc = finished["doc"]
    bars = doc.by_id("removal-chart").find_all("g", class_="bar")
    assert {b.attrs["data-label"]: int(b.attrs["data-value"]) for b in bars} == expected
    widths = {b.attrs["data-label"]: float(b.find_all("rect")[0].attrs["width"]) for b in bars}
    assert max(widths, key=widths.get) == "dedup.exact_duplicate"
    rows = doc.by_id("removal-table").rows()[1:]
    assert {r[0]: int(r[2].replace(",", "")) for r in rows} == expected


def test_cluster_histogram(finished):
    report = finished["report"]
    bins = report["near_dedup_cluster_sizes"]
    assert sum(b["clusters"] for b in bins) == report["counters"]["near_dedup/clusters"] > 0
    bars = finished["doc"].by_id("cluster-chart").find_all("g", class_="bar")
    assert [int(b.attrs["data-value"]) for b in bars] == [b["clusters"] for b in bins]
    rows = finished["doc"].by_id("cluster-table").rows()[1:]
    assert [int(r[1]) for r in rows] == [b["clusters"] for b in bins]


def test_shard_sizes_per_partition(finished):
    by_partition = collections.defaultdict(list)
    for shard in finished["manifest"]["shards"]:
        by_partition[shard["partition"]].append(shard["raw_bytes"])
    assert len(by_partition) >= 3 and max(map(len, by_partition.values())) >= 2
    groups = finished["doc"].by_id("shard-chart").find_all("g", class_="partition")
    assert {g.attrs["data-partition"] for g in groups} == set(by_partition)
    for group in groups:
        sizes = sorted(by_partition[group.attrs["data-partition"]])
        assert int(group.attrs["data-shards"]) == len(sizes)
        ticks = group.find_all("rect", class_="shard")
        assert sorted(int(t.attrs["data-bytes"]) for t in ticks) == sizes
    rows = {r[0]: r for r in finished["doc"].by_id("shard-table").rows()[1:]}
    for name, sizes in by_partition.items():
        assert rows[name][1:5] == [f"{len(sizes):,}", f"{min(sizes):,}",
                                   rows[name][3], f"{max(sizes):,}"]
        assert float(rows[name][3].replace(",", "")) == pytest.approx(sum(sizes) / len(sizes),
                                                                      abs=0.05)


def test_codec_choice_table(finished):
    choice = finished["report"]["codec_choice"]
    table = finished["doc"].by_id("codec-table")
    rows = table.find_all("tr")[1:]
    assert [r.attrs["data-codec"] for r in rows] == [c["codec"] for c in choice["candidates"]]
    chosen = [r.attrs["data-codec"] for r in rows if r.attrs.get("class") == "chosen"]
    assert chosen == [choice["chosen"]] == [finished["report"]["codec"]]
    header = table.rows()[0]
    ratio = header.index("ratio")
    for row, candidate in zip(table.rows()[1:], choice["candidates"]):
        assert float(row[ratio]) == pytest.approx(candidate["ratio"], rel=1e-3)


def test_dead_letters_with_examples(finished):
    _, bad, _ = sample_truth()
    doc = finished["doc"]
    reasons = {r[0]: int(r[1]) for r in doc.by_id("dead-letter-table").rows()[1:]}
    assert reasons == {reason: len(at) for reason, at in bad.items()}
    examples = doc.by_id("dead-letter-examples").rows()[1:]
    shown = {(r[0], int(r[2])) for r in examples}
    assert shown == {(reason, n) for reason, at in bad.items() for n in at[:3]}
    assert all(r[1] == SAMPLE for r in examples)


def test_lineage_and_configuration(finished):
    doc = finished["doc"]
    with open(SAMPLE, "rb") as f:  # the scan's digest of the decompressed bytes
        digest = xxhash.xxh3_64(f.read()).hexdigest()
    assert doc.by_id("lineage-table").rows()[1:] == [
        [SAMPLE, f"{os.path.getsize(SAMPLE):,}", digest]]
    config = {r[0]: r[1] for r in doc.by_id("config-table").rows()}
    # resolved: the values the job used where a flag was left to the job
    report = finished["report"]
    assert config["partition_by"] == '"source"'
    assert config["codec"] == f'"{report["codec"]}"' != '"auto"'
    assert (config["num_perm"], config["shingle_size"]) == ("128", "5")
    assert (config["near_dedup_bands"], config["near_dedup_rows"]) == (
        str(report["near_dedup"]["bands"]), str(report["near_dedup"]["rows"]))
    assert config["run_config"] == orjson.dumps(
        run_config.resolve(run_config.env_config() or "direct")).decode()
    assert {r[0] for r in doc.by_id("beam-options-table").rows()} >= {"runner"}
    stages = finished["report"]["stages"]
    if stages["rows"]:  # Direct and Prism report per-transform times; Flink and Spark do not
        labels = [b.attrs["data-label"] for b in
                  doc.by_id("stage-chart").find_all("g", class_="bar")]
        assert labels == [r["stage"] for r in stages["rows"]] == [
            "Read", "DigestPaths", "ExactDedup", "NearDedup", "AllRemoved", "Gate",
            "BatchSizes", "FilteredSizes", "DeadReasons", "KeptSizes", "AllCounts", "Tally",
            "BadFraction", "NotEmpty", "IdGate", "Removed", "Refs", "PartitionByField",
            "HashOrder", "Store", "DeadLetters", "Inputs"]   # job order
        assert doc.by_id("stage-table").rows()[1:] == [
            [r["stage"], f"{r['busy_seconds']:.3f}"] for r in stages["rows"]]
    assert doc.by_id("stages-note").text().strip() == stages["note"]


def test_screenshot_renders_the_page(finished, tmp_path):
    png = str(tmp_path / "report.png")
    assert browser.screenshot(finished["page"], png, width=1100, height=3000) == []
    with open(png, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1100, 3000)
    assert os.path.getsize(png) > 50_000  # text and charts, not a blank page


def test_console_errors_are_seen(tmp_path):
    """The check above can fail: a page that logs an error and throws is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><p>x</p><script>console.error('boom-1');"
                    "missing_function();</script></body></html>")
    _, console = browser.dump_dom(str(page))
    assert console[0] == "boom-1"
    assert "missing_function is not defined" in console[1]


def test_missing_chromium_fails(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="Chromium not found"):
        browser.chromium()
