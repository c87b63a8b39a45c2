"""prepare_corpus with the filter stage (--recipe, --languages, --redact_pii, sampling)
on the configured runner: exact kept and removed id sets, counts per reason, stored bytes."""
import glob
import os
import shutil

import orjson
import pytest
import zstandard

from pipelines import prepare_corpus
from transforms.prepare import CorpusConfig
from transforms.reduction.filters.base import Document, FilterChain
from transforms.reduction.filters.recipes import RecipeError, load_recipe
from transforms.reduction.filters.sampling import SmallestHeap, keep_sample, sample_hash
from transforms.storage.report import removal_reasons
from transforms.storage.store import load_manifest

POOL = [
    # six disjoint English paragraphs (no near-duplicates among them)
    ["The river town woke early, and the bakers were the first to light their ovens.",
     "By six the market square filled with carts of apples, cheese and fresh bread.",
     "Children ran between the stalls while their parents argued about the price of fish.",
     "An old man with a violin played the same three songs that he had played for years.",
     "Nobody minded, because the music made the cold morning feel a little warmer.",
     "When the church bell rang at noon, the traders began to pack up and go home."],
    ["Our school library opened a new reading room on the second floor this spring.",
     "It has tall windows that face the park, and the chairs are soft and quiet.",
     "Students come in after their classes to study for exams or to read a novel.",
     "The librarian keeps a list of new books on a board beside the front desk.",
     "On Fridays a teacher reads poems aloud to anyone who wants to sit and listen.",
     "Most weeks the room is full well before the doors are closed in the evening."],
    ["The hiking trail climbs slowly through a forest of pine and birch trees.",
     "After an hour you reach a wooden bridge over a stream full of cold water.",
     "From there the path turns steep and rocky, so good boots are a wise choice.",
     "At the top there is a small hut where walkers rest and share their food.",
     "On a clear day you can see the lake, the villages and the hills beyond it.",
     "Most people come back down before sunset, tired but happy with the view."],
    ["My grandmother taught me how to bake bread when I was about ten years old.",
     "She never used a recipe, because she said that the dough would tell her.",
     "We mixed flour, water, salt and yeast in a large bowl on the kitchen table.",
     "Then we waited while it rose under a towel near the warm stove for hours.",
     "The smell of the loaf in the oven filled the whole house by the afternoon.",
     "I still bake her bread every winter, and it always reminds me of her kitchen."],
    ["The city council met on Tuesday to discuss the plan for a new bicycle lane.",
     "Several shop owners worried that they would lose parking spaces for customers.",
     "A group of parents argued that the lane would make the trip to school safer.",
     "After a long debate, the members agreed to test the lane for six months.",
     "They will count the cyclists and ask the shops about their sales each month.",
     "A final decision is expected early next year, once the results are known."],
    ["Our neighbour keeps bees in three white boxes at the end of her garden.",
     "Every summer she opens the hives in a veil and gloves to check the frames.",
     "The bees fly over the fields of clover and come back heavy with nectar.",
     "In August she spins the honey out of the combs and pours it into jars.",
     "She gives a jar to each house on the street and sells the rest at the fair.",
     "Her honey tastes of flowers, and it is the best I have ever eaten anywhere."],
]


def para(i: int) -> str:
    return "\n".join(POOL[i])


FRENCH = "\n".join(
    f"Voici la phrase numéro {w} de cette histoire, et elle continue avec une intrigue très longue."
    for w in ("un", "deux", "trois", "quatre", "cinq", "six"))
# (id, text, expected fate) on the web recipe with --redact_pii: fate is None (stored) or
# the reason of its removed record
WEB_DOCS = [
    ("g1", para(0), None),
    ("g2", para(1), None),
    ("g3", para(2) + "\nWrite to alice.smith@example.org for a map of the trail.", None),
    # differs from g3 only in the address: the same text once redacted
    ("g4", para(2) + "\nWrite to bob.jones@example.com for a map of the trail.",
     "dedup.exact_duplicate"),
    ("g5", para(3), None),
    ("g6", para(3).replace("winter", "autumn"), "near_dedup.near_duplicate"),
    ("g7", para(4) + "\nCall +44 20 7946 0958 or visit 192.168.10.20 today.", None),
    ("s1", "Too short to keep.", "gopher_repetition.top_2_gram"),
    ("c1", para(5) + "\nSome {braces} in a line.", "c4.curly_bracket"),
    ("d1", "\n".join(["Buy cheap shoes now."] * 20), "gopher_repetition.dup_line_frac"),
    ("f1", FRENCH, "language.not_in_languages"),
    ("w1", para(5) + "\n" + POOL[5][0], "fineweb.char_dup_ratio"),
]


def write_jsonl(path, rows, extra_lines=()) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        for row in rows:
            f.write(orjson.dumps(row) + b"\n")
        for line in extra_lines:
            f.write(line + b"\n")
    return str(path)


def run(run_config, tmp_path, src, *flags, roots=("a",)):
    paths = [str(tmp_path / r) for r in roots]
    report = prepare_corpus.run(["--input", src, "--output_roots", ",".join(paths),
                                 "--max_bad_fraction", "0.5", "--run_config", run_config,
                                 *flags])
    return report, paths


def stored(root: str, dataset: str = "corpus") -> dict[str, dict]:
    """id -> stored record, over every shard (partitions included)."""
    out = {}
    for path in sorted(glob.glob(f"{root}/{dataset}/**/shard-*.jsonl.zst", recursive=True)):
        with open(path, "rb") as f:
            for line in zstandard.ZstdDecompressor().stream_reader(f).read().splitlines():
                record = orjson.loads(line)
                out[record["id"]] = record
    return out


def stored_lines(root: str, dataset: str = "corpus") -> dict[str, bytes]:
    out = {}
    for path in sorted(glob.glob(f"{root}/{dataset}/**/shard-*.jsonl.zst", recursive=True)):
        with open(path, "rb") as f:
            for line in zstandard.ZstdDecompressor().stream_reader(f).read().splitlines():
                out[orjson.loads(line)["id"]] = line
    return out


def removed_records(root: str, dataset: str = "corpus") -> list[dict]:
    records = []
    for path in sorted(glob.glob(f"{root}/{dataset}/_audit/removed*.jsonl.zst")):
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().stream_reader(f).read()
        records += [orjson.loads(line) for line in data.splitlines() if line.strip()]
    return records


def files_under(root) -> dict[str, bytes]:
    """Shards and manifests (audit files and reports left out)."""
    out = {}
    for path in sorted(glob.glob(f"{root}/**/*", recursive=True)):
        if os.path.isfile(path) and "_audit" not in path:
            out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


def test_web_recipe_with_pii_kept_removed_and_reasons(run_config, tmp_path):
    rows = [{"id": i, "text": t, "src": "web"} for i, t, _ in WEB_DOCS]
    src = write_jsonl(tmp_path / "in" / "web.jsonl", rows, [b'{"id": "bad", "text": '])
    report, roots = run(run_config, tmp_path, src, "--recipe", "web", "--redact_pii",
                        "--write_removed")
    records = stored(roots[0])
    assert sorted(records) == ["g1", "g2", "g3", "g5", "g7"]
    # the stored text is the redacted text; every other byte of the record as read
    assert records["g3"]["text"] == para(2) + "\nWrite to <EMAIL> for a map of the trail."
    assert records["g7"]["text"] == para(4) + "\nCall <PHONE> or visit <IP_ADDRESS> today."
    lines = stored_lines(roots[0])
    assert lines["g1"] == orjson.dumps(rows[0])
    assert lines["g3"] == orjson.dumps({**rows[2], "text": records["g3"]["text"]})

    removed = removed_records(roots[0])
    assert {r["removed"]: r["reason"] for r in removed} == {
        i: fate for i, _, fate in WEB_DOCS if fate is not None}
    assert len(removed) == 7  # each removed document once
    assert all(set(r) >= {"removed", "reason", "detail"} for r in removed)
    by_id = {r["removed"]: r for r in removed}
    assert by_id["g4"]["kept"] == "g3" and by_id["g4"]["detail"] == "kept=g3"
    assert by_id["g6"]["kept"] == "g5"
    chain = FilterChain(load_recipe("web").build())
    for doc_id, text, fate in WEB_DOCS:  # the pure chain's detail, as the audit says
        if fate and not fate.startswith(("dedup.", "near_dedup.")):
            assert by_id[doc_id]["detail"] == chain(Document(doc_id, text)).detail

    c = report["counters"]
    assert {k: v for k, v in c.items() if k.startswith("filters/")} == {
        "filters/language/kept": 11, "filters/language/dropped.not_in_languages": 1,
        "filters/gopher_repetition/kept": 9,
        "filters/gopher_repetition/dropped.top_2_gram": 1,
        "filters/gopher_repetition/dropped.dup_line_frac": 1,
        "filters/gopher_quality/kept": 9,
        "filters/c4/kept": 8, "filters/c4/dropped.curly_bracket": 1,
        "filters/fineweb/kept": 7, "filters/fineweb/dropped.char_dup_ratio": 1,
        "filters/pii/EMAIL": 2, "filters/pii/PHONE": 1, "filters/pii/IP_ADDRESS": 1,
    }
    # the run report lists every removed document under exactly one reason
    rows_by_reason = {r["reason"]: r["documents"] for r in removal_reasons(c)}
    assert rows_by_reason == {
        "dedup.exact_duplicate": 1, "near_dedup.near_duplicate": 1,
        "gopher_repetition.top_2_gram": 1, "gopher_repetition.dup_line_frac": 1,
        "c4.curly_bracket": 1, "language.not_in_languages": 1,
        "fineweb.char_dup_ratio": 1, "bad line: invalid_json": 1}
    assert c["store/records"] == 5

    # the resolved recipe is recorded in the manifest and the run report
    manifest = load_manifest(os.path.join(roots[0], "corpus"))
    assert manifest["filters"]["recipe"] == load_recipe("web").resolved
    assert manifest["filters"]["recipe_source"] == "shipped:web"
    assert manifest["filters"]["redact_pii"] is True
    assert report["filters"] == manifest["filters"]
    html = open(os.path.join(roots[0], "corpus", "_audit", "run_report.html")).read()
    assert 'id="recipe-table"' in html and "gopher_repetition" in html


def test_languages_record_language_and_partition_by_detected_lang(run_config, tmp_path):
    rows = [{"id": "e1", "text": para(0), "lang": "xx"},
            {"id": "e2", "text": para(1), "metadata": {"source": "crawl"}},
            {"id": "fr", "text": FRENCH},
            {"id": "m1", "text": para(5), "metadata": "web"},  # not an object: dead letter
            {"id": "de", "text": "\n".join(
                f"Dies ist der Satz Nummer {n} einer langen Geschichte über einen kleinen Hund."
                for n in range(1, 7))}]
    src = write_jsonl(tmp_path / "in" / "lang.jsonl", rows)
    report, roots = run(run_config, tmp_path, src, "--languages", "en,fr",
                        "--language_threshold", "0.9", "--record_language",
                        "--partition_by", "lang", "--write_removed", "--no_near_dedup")
    manifest = load_manifest(os.path.join(roots[0], "corpus"))
    # partitions are the detected languages, not the records' "lang" field
    assert [(p["name"], p["records"]) for p in manifest["partitions"]] == [("en", 2), ("fr", 1)]
    lines = stored_lines(roots[0])
    assert sorted(lines) == ["e1", "e2", "fr"]
    records = {i: orjson.loads(line) for i, line in lines.items()}
    for doc_id, lang in (("e1", "en"), ("e2", "en"), ("fr", "fr")):
        assert records[doc_id]["metadata"]["lang"] == lang
        assert records[doc_id]["metadata"]["lang_score"] >= 0.9
    # metadata keys are added; every other byte as read
    assert lines["e1"] == orjson.dumps(rows[0])[:-1] + b',"metadata":' + orjson.dumps(
        records["e1"]["metadata"]) + b"}"
    assert records["e2"]["metadata"]["source"] == "crawl"
    assert {r["removed"]: r["reason"] for r in removed_records(roots[0])} == {
        "de": "language.not_in_languages"}
    dead = []
    for path in glob.glob(f"{roots[0]}/corpus/_audit/dead_letters*.jsonl.zst"):
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().stream_reader(f).read()
        dead += [orjson.loads(line) for line in data.splitlines() if line.strip()]
    assert [(d["line"], d["reason"]) for d in dead] == [(4, "metadata_not_object")]
    assert report["counters"]["read/bad.metadata_not_object"] == 1
    recipe = manifest["filters"]["recipe"]
    assert recipe["filters"] == [{"filter": "language", "name": "language", "params": {
        "languages": ["en", "fr"], "threshold": 0.9, "max_chars": 2000}}]
    assert manifest["filters"]["partition_by_detected_language"] is True


def sampling_rows(n=60):
    rows = [{"id": f"s{i:03d}", "text": f"document number {i} about topic {i * 37 % 11}",
             "part": ["a", "b", "c"][i % 3]} for i in range(n)]
    return rows


def test_sample_fraction_keeps_the_pure_samplers_prediction(run_config, tmp_path):
    rows = sampling_rows()
    # a copy of s001's text under a smaller id: when that id is not sampled, s001 is
    # kept (a document the filter stage drops is never a dedup winner)
    seed = 11
    twin = next(f"a{i}" for i in range(1000) if not keep_sample(f"a{i}", 0.5, seed))
    assert keep_sample("s001", 0.5, seed)
    rows.append({"id": twin, "text": rows[1]["text"], "part": "b"})
    src = write_jsonl(tmp_path / "in" / "s.jsonl", rows)
    report, roots = run(run_config, tmp_path, src, "--sample_fraction", "0.5",
                        "--sample_seed", str(seed), "--write_removed", "--no_near_dedup")
    expected = sorted(r["id"] for r in rows if keep_sample(r["id"], 0.5, seed))
    assert sorted(stored(roots[0])) == expected
    assert "s001" in expected and 20 < len(expected) < 41
    removed = removed_records(roots[0])
    assert sorted(r["removed"] for r in removed) == sorted(
        r["id"] for r in rows if r["id"] not in expected)
    assert {r["reason"] for r in removed} == {"sample.not_sampled"}
    c = report["counters"]
    assert c["filters/sample/kept"] == len(expected)
    assert c["filters/sample/dropped.not_sampled"] == len(rows) - len(expected)
    assert c.get("dedup/duplicates_removed", 0) == 0


def test_sample_per_partition_keeps_exactly_n_smallest_hashes(run_config, tmp_path):
    rows = sampling_rows() + [{"id": "s999", "text": "document number 1 about topic 4",
                               "part": "a"}]  # an exact duplicate of s001: dedup first
    src = write_jsonl(tmp_path / "in" / "p.jsonl", rows)
    report, roots = run(run_config, tmp_path, src, "--partition_by", "part",
                        "--sample_per_partition", "4", "--sample_seed", "3",
                        "--write_removed", "--no_near_dedup")
    expected = set()
    for part in "abc":
        heap = SmallestHeap(4)
        for r in rows:
            if r["part"] == part and r["id"] != "s999":
                heap.push(sample_hash(r["id"], 3), r["id"])
        expected |= {i for _, i in heap.items()}
    manifest = load_manifest(os.path.join(roots[0], "corpus"))
    assert [(p["name"], p["records"]) for p in manifest["partitions"]] == [
        ("a", 4), ("b", 4), ("c", 4)]
    assert set(stored(roots[0])) == expected
    reasons = {}
    for r in removed_records(roots[0]):
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    assert reasons == {"dedup.exact_duplicate": 1, "sample_per_partition.not_sampled": 48}
    c = report["counters"]
    assert c["filters/sample_per_partition/kept"] == 12
    assert c["filters/sample_per_partition/dropped.not_sampled"] == 48
    assert manifest["filters"]["sample_per_partition"] == 4


def test_filter_options_are_checked_in_one_line(tmp_path, capsys):
    with pytest.raises(RecipeError, match=r"nope\.yaml: no such recipe file"):
        CorpusConfig(input="x", roots=(str(tmp_path),), recipe=str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("filters:\n  - filter: gopher_quality\n    params: {min_doc_wrds: 3}\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml: filters\[0\]\.params\.min_doc_wrds: "
                                          r"unknown parameter"):
        CorpusConfig(input="x", roots=(str(tmp_path),), recipe=str(bad))
    with pytest.raises(ValueError, match="unknown code"):
        CorpusConfig(input="x", roots=(str(tmp_path),), languages="en,qq")
    with pytest.raises(ValueError, match="not range_by"):
        CorpusConfig(input="x", roots=(str(tmp_path),), range_by="length",
                     sample_per_partition=3)
    with pytest.raises(ValueError, match=r"sample_fraction must be in \[0, 1\]"):
        CorpusConfig(input="x", roots=(str(tmp_path),), sample_fraction=1.5)
    with pytest.raises(SystemExit):
        prepare_corpus.run(["--output_roots", str(tmp_path / "a"), "--recipe", "nope"])
    err = capsys.readouterr().err
    assert "error: unknown recipe 'nope'; known: minimal, web (or a recipe file's path)" in err
    # a shipped name and a path to the same file resolve to the same recipe
    config = CorpusConfig(input="x", roots=(str(tmp_path),), recipe="minimal")
    assert config.recipe.resolved == load_recipe("minimal").resolved


@pytest.mark.cross_runner
def test_web_recipe_and_sampling_store_is_byte_identical_to_the_direct_runner(
        run_config, tmp_path):
    rows = [{"id": f"{i}-{n}", "text": f"{t}\nThis page was saved on day {n} of the month.",
             "src": ["web", "books"][n % 2]} for n in range(8) for i, t, _ in WEB_DOCS]
    src = write_jsonl(tmp_path / "in" / "web.jsonl", rows)
    flags = ("--recipe", "web", "--redact_pii", "--record_language", "--sample_fraction",
             "0.7", "--partition_by", "src", "--sample_per_partition", "3",
             "--num_shards", "2", "--replication", "2", "--no_near_dedup")
    snapshots = []
    for config in ("direct", run_config):
        for name in "ab":
            shutil.rmtree(tmp_path / name, ignore_errors=True)
        _, roots = run(config, tmp_path, src, *flags, roots=("a", "b"))
        snapshots.append({r: files_under(r) for r in roots})
    assert snapshots[1] == snapshots[0]
    kept = stored(str(tmp_path / "a"))
    manifest = load_manifest(str(tmp_path / "a" / "corpus"))
    assert [(p["name"], p["records"]) for p in manifest["partitions"]] == [
        ("books", 3), ("web", 3)]
    assert all("<EMAIL>" in r["text"] for r in kept.values() if r["id"].startswith("g3"))
    assert all(r["metadata"]["lang"] == "en" for r in kept.values())
