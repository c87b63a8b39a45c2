"""prepare_corpus and compress_arrays on inputs of every kind issue 12 names: the exact
records stored, the dead letters with reasons, and the exit status, on both paths."""
import glob
import gzip
import os

import lz4.frame
import numpy as np
import orjson
import pytest
import xxhash
import zstandard

from pipelines import compress_arrays, prepare_corpus
from pipelines import run_config as run_configs
from tests.test_prepare_corpus import read_zst_lines
from transforms.storage.store import load_manifest

DEDUP_MODES = pytest.mark.parametrize("mode", [[], ["--no_near_dedup"]],
                                      ids=["exact+near", "exact_by_ref"])
COMPRESS = {".jsonl": bytes, ".jsonl.gz": gzip.compress,
            ".jsonl.zst": lambda b: zstandard.ZstdCompressor().compress(b),
            ".jsonl.lz4": lz4.frame.compress}

NEAR_TEXT = ("the committee met on tuesday to discuss the budget for the coming year and "
             "agreed to fund the new library the park repairs and the school buses")
LONG = b'{"id": "long", "text": "' + b"w " * 3000 + b'"}'
# (file name, lines): ids and fields chosen so every kind of issue 12 shows in one run.
FILES = {
    "a.jsonl": [
        b'{"text": "no id, a big number", "n": 123456789012345678901234567890, "f": 1.10}',
        b'{"id": 102, "text": "same text"}',
        b'{"id": 2, "text": "SAME   text"}',
        b'{"lang": "en", "\\u006cang": "zh", "id": "dup", "text": "repeated key"}',
    ],
    "sub/b.jsonl.gz": [
        b'{"id": 18446744073709551616, "text": "an id past 2**64"}',
        LONG,
        b'{"id": "blank", "text": "  \\t "}',
        b'{"id": "empty", "text": ""}',
    ],
    "sub/deeper/c.jsonl.zst": [
        ('{"id": 10, "text": "%s"}' % NEAR_TEXT).encode(),
        ('{"id": 9, "text": "%s too"}' % NEAR_TEXT).encode(),
        b'{"id": "x", "text": "plain string id"}',
    ],
}


def write_inputs(root) -> str:
    """The FILES under ``root/data`` (plus a README the directory rule skips)."""
    data = root / "data"
    for name, lines in FILES.items():
        path = data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = next(s for s in sorted(COMPRESS, key=len, reverse=True) if name.endswith(s))
        path.write_bytes(COMPRESS[suffix](b"\n".join(lines) + b"\n"))
    (data / "README").write_text("not data\n")
    return str(data)


def content_digest(path: str) -> str:
    """xxh3-64 hex of a file's decompressed bytes."""
    data = open(path, "rb").read()
    for suffix, decompress in ((".gz", gzip.decompress), (".lz4", lz4.frame.decompress),
                               (".zst", lambda b: zstandard.ZstdDecompressor().stream_reader(
                                   b).read())):
        if path.endswith(suffix):
            data = decompress(data)
    return xxhash.xxh3_64_hexdigest(data)


def stored_records(store: str) -> list[bytes]:
    manifest = load_manifest(store)
    lines = []
    for shard in sorted(manifest["shards"], key=lambda s: s["index"]):
        lines += read_zst_lines(os.path.join(store, shard["name"]))
    return lines


def dead_letters(store: str) -> set[tuple]:
    return {(os.path.relpath(d["file"], os.path.dirname(store) + "/../data"), d["line"],
             d["reason"])
            for path in glob.glob(os.path.join(store, "_audit", "dead_letters*"))
            for d in map(orjson.loads, read_zst_lines(path))}


@DEDUP_MODES
def test_every_input_byte_read_exactly(tmp_path, run_config, mode):
    data = write_inputs(tmp_path)
    bracket = tmp_path / "data [v1].jsonl"    # a literal path with glob characters
    bracket.write_bytes(b'{"id": 1, "text": "from the bracketed file"}\n')
    (tmp_path / "data v.jsonl").write_bytes(b'{"id": 5, "text": "must not be read"}\n')
    store = str(tmp_path / "out" / "ds")
    report = prepare_corpus.run([
        "--input", f"{data},{bracket}", "--output_roots", str(tmp_path / "out"),
        "--dataset", "ds", "--num_shards", "1", "--max_bad_fraction", "0.5",
        "--max_line_bytes", "1000", "--run_config", run_config, *mode])

    no_id = f"{data}/a.jsonl:1"
    expected = [  # one shard, in the id order: integers numerically, then strings
        b'{"id": 1, "text": "from the bracketed file"}',
        b'{"id": 2, "text": "SAME   text"}',                        # 2 beats 102
        b'{"id": 9, "text": "%s too"}' % NEAR_TEXT.encode(),         # 9 beats 10 (near)
        b'{"id": 10, "text": "%s"}' % NEAR_TEXT.encode(),
        b'{"id": 18446744073709551616, "text": "an id past 2**64"}',  # exact, not a float
        FILES["a.jsonl"][0][:-1] + b',"id":"%s"}' % no_id.encode(),  # spliced, bytes kept
        b'{"id": "x", "text": "plain string id"}',
    ]
    if not mode:  # near dedup: the component keeps its smallest id, 9
        expected.remove(b'{"id": 10, "text": "%s"}' % NEAR_TEXT.encode())
    assert stored_records(store) == expected
    assert dead_letters(store) == {
        ("a.jsonl", 4, "duplicate_key"), ("sub/b.jsonl.gz", 2, "line_too_long"),
        ("sub/b.jsonl.gz", 3, "empty_text"), ("sub/b.jsonl.gz", 4, "empty_text")}
    counters = report["counters"]
    assert {k: v for k, v in counters.items() if k.startswith("read/bad.")} == {
        "read/bad.duplicate_key": 1, "read/bad.line_too_long": 1, "read/bad.empty_text": 2}
    assert counters["dedup/duplicates_removed"] == 1
    inputs = sorted([f"{data}/{n}" for n in FILES] + [str(bracket)])
    assert load_manifest(store)["inputs"] == [
        {"path": p, "bytes": os.path.getsize(p)} for p in inputs]
    assert report["inputs"] == [  # lineage: what was read, and its digest
        {"path": p, "bytes": os.path.getsize(p), "digest": content_digest(p)} for p in inputs]


def test_empty_texts_kept_on_request_and_not_counted_as_bad(tmp_path, run_config):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"id": "a", "text": ""}\n{"id": "b", "text": " "}\n'
                     b'{"id": "c", "text": "c"}\n')
    common = ["--input", str(path), "--dataset", "ds", "--max_bad_fraction", "0",
              "--no_near_dedup", "--run_config", run_config]
    prepare_corpus.run(common + ["--output_roots", str(tmp_path / "o1")])
    assert stored_records(str(tmp_path / "o1" / "ds")) == [b'{"id": "c", "text": "c"}']
    report = prepare_corpus.run(common + ["--output_roots", str(tmp_path / "o2"),
                                          "--keep_empty_text"])
    # kept, "" and " " are one text once normalised: exact dedup keeps the smaller id
    assert stored_records(str(tmp_path / "o2" / "ds")) == [
        b'{"id": "a", "text": ""}', b'{"id": "c", "text": "c"}']
    assert report["counters"]["dedup/duplicates_removed"] == 1


def in_process_runner(run_config: str) -> bool:
    config = run_configs.load(run_config)
    return (config.get("runner", "DirectRunner") == "DirectRunner"
            and config.get("direct_running_mode", "in_memory") == "in_memory")


def failure(capsys, argv, main=prepare_corpus.main, tracebacks_allowed=False) -> str:
    """Run a job's main; it must exit 1 with one line saying why, and no traceback.

    ``tracebacks_allowed``: on portable runners Beam's SDK worker prints the
    traceback of a failed bundle to stderr itself (``print`` in
    ``apache_beam/runners/worker/sdk_worker.py`` ``SdkHarness._execute``),
    beyond what logging settings reach; our own line is still one line.
    """
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith(
        ("prepare_corpus failed: ", "compress_arrays failed: "))]
    assert len(said) == 1
    assert tracebacks_allowed or "Traceback" not in err
    return said[0]


@DEDUP_MODES
@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst", ".jsonl.lz4"])
def test_a_truncated_input_fails_the_run_naming_it(tmp_path, run_config, capsys, mode, suffix):
    good = tmp_path / "good.jsonl"
    good.write_bytes(b'{"id": "g", "text": "fine"}\n')
    payload = b"".join(b'{"id": %d, "text": "record %d"}\n' % (i, i) for i in range(2000))
    packed = COMPRESS[suffix](payload)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(packed[:len(packed) * 6 // 10])
    said = failure(capsys, ["--input", f"{good},{cut}", "--output_roots", str(tmp_path / "o"),
                            "--run_config", run_config, *mode],
                   tracebacks_allowed=not in_process_runner(run_config))
    assert said.startswith(f"prepare_corpus failed: {cut}: ")
    assert not (tmp_path / "o" / "corpus" / "manifest.json").exists()


@pytest.mark.parametrize("name, data, message", [
    ("t.csv", b"id,text,url\n1,hello,http://x\n", r"t\.csv: looks like CSV/TSV"),
    ("t.jsonl", b"PAR1" + b"\0" * 40, r"t\.jsonl: is a Parquet file, not JSON Lines"),
    ("t.json", b'[{"id": 1, "text": "x"}]\n', r"t\.json: holds a JSON array"),
    ("t.jsonl", b'{"id": 1, "text": "x", "url": "u"}\n',
     r"no record has field 'body'; fields seen: id, text, url"),
])
def test_wrong_kinds_of_input_fail_before_the_job(tmp_path, capsys, name, data, message):
    (tmp_path / name).write_bytes(data)
    said = failure(capsys, ["--input", str(tmp_path / name), "--text_field", "body"
                            if "body" in message else "text",
                            "--output_roots", str(tmp_path / "o")])
    assert __import__("re").search(message, said)
    assert not (tmp_path / "o").exists()


def test_a_directory_without_data_files_fails_before_the_job(tmp_path, capsys):
    """A path on the command line that names no input file is a usage error: exit 2."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "README").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        prepare_corpus.main(["--input", str(tmp_path / "d"), "--output_roots",
                             str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m pipelines.prepare_corpus: error: {tmp_path / 'd'}: is a "
                          "directory with no file ending in .jsonl/") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_range_by_a_text_field_is_refused_naming_values(tmp_path, run_config, capsys,
                                                        monkeypatch):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": 1, "text": "a", "source": "web"}\n'
                     b'{"id": 2, "text": "b", "source": "books"}\n'
                     b'{"id": 3, "text": "c", "source": 7}\n')
    argv = ["--input", str(path), "--output_roots", str(tmp_path / "o"), "--range_by", "source",
            "--run_config", run_config]
    portable = not in_process_runner(run_config)  # a worker may print a late traceback
    said = failure(capsys, argv, tracebacks_allowed=portable)
    assert "--range_by source: the field holds non-numeric values ('web', 'books')" in said
    # past what the early look reads, the job's own gate refuses it (no manifest)
    monkeypatch.setattr(prepare_corpus, "probe_inputs", lambda *a, **k: None)
    said = failure(capsys, argv + ["--no_near_dedup"], tracebacks_allowed=portable)
    assert "--range_by source: the field holds non-numeric values ('books', 'web')" in said
    assert not (tmp_path / "o" / "corpus" / "manifest.json").exists()


def test_npy_shorter_than_its_header_fails_naming_it(tmp_path, capsys):
    path = tmp_path / "emb.npy"
    np.save(path, np.ones((100, 8), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:-100])
    said = failure(capsys, ["--input", str(path), "--output_roots", str(tmp_path / "o")],
                   main=compress_arrays.main)
    assert said.startswith(f"compress_arrays failed: {path} is truncated: its header declares "
                           "shape (100, 8) of <f4")
