"""prepare_corpus --codec: text shards in other codecs, read back by standard tools and ReadStore."""
import glob
import gzip
import os

import apache_beam as beam
import lz4.frame
import orjson
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipelines import prepare_corpus
from tests.corpora import expected_kept, write_small_corpus
from transforms.core.codecs import bytes_codec
from transforms.reduction.codec_choice import ChooseCodec, compare_text, parse_max_error
from transforms.storage.store import ReadStore, load_manifest


def run_job(run_config, inputs, root, *extra):
    return prepare_corpus.run(["--input", ",".join(inputs), "--output_roots", str(root),
                               "--dataset", "ds", "--max_bad_fraction", "0.5",
                               "--num_shards", "2", "--run_config", run_config, *extra])


@pytest.fixture
def corpus(tmp_path):
    return write_small_corpus(tmp_path / "in")


@pytest.mark.parametrize("spec, suffix, unpack", [
    ("gzip:level=9", ".jsonl.gz", gzip.decompress),
    ("lz4", ".jsonl.lz4", lz4.frame.decompress),
    ("none", ".jsonl", bytes),
])
def test_text_codecs_write_standard_files(tmp_path, corpus, run_config, make_pipeline,
                                          spec, suffix, unpack):
    report = run_job(run_config, corpus, tmp_path / "r", "--codec", spec)
    store = str(tmp_path / "r" / "ds")
    manifest = load_manifest(store)
    assert manifest["codec"]["name"] == spec.split(":")[0]
    assert report["codec"] == manifest_spec(manifest)
    lines = {}
    for shard in manifest["shards"]:
        assert shard["name"].endswith(suffix)
        raw = unpack(open(os.path.join(store, shard["name"]), "rb").read())
        assert len(raw) == shard["raw_bytes"]
        lines.update({orjson.loads(line)["id"]: line for line in raw.splitlines()})
    assert lines == expected_kept(corpus[0])
    with make_pipeline() as p:
        ids = p | ReadStore(store) | "Ids" >> beam.Map(lambda r: r["id"])
        assert_that(ids, equal_to(sorted(lines)))


def manifest_spec(manifest):
    return bytes_codec(manifest["codec"]).spec


def test_default_codec_is_zstd3_and_zstd_level_still_works(tmp_path, corpus, run_config):
    run_job(run_config, corpus, tmp_path / "a")
    assert load_manifest(str(tmp_path / "a" / "ds"))["codec"] == {"name": "zstd", "level": 3}
    run_job(run_config, corpus, tmp_path / "b", "--zstd_level", "9")
    assert load_manifest(str(tmp_path / "b" / "ds"))["codec"] == {"name": "zstd", "level": 9}
    assert glob.glob(str(tmp_path / "b" / "ds" / "shard-*.jsonl.zst"))


def test_codec_auto_on_text_records_the_choice(tmp_path, corpus, run_config):
    report = run_job(run_config, corpus, tmp_path / "r", "--codec", "auto")
    manifest = load_manifest(str(tmp_path / "r" / "ds"))
    choice = manifest["codec_choice"]
    best = max(choice["candidates"], key=lambda r: (r["ratio"], r["codec"] == choice["chosen"]))
    assert choice["chosen"] == best["codec"] == report["codec"]
    assert manifest_spec(manifest) == choice["chosen"]


def test_bad_codec_flag_is_a_usage_error(tmp_path, corpus, run_config):
    with pytest.raises(SystemExit):
        run_job(run_config, corpus, tmp_path / "r", "--codec", "brotli")
    with pytest.raises(SystemExit):
        run_job(run_config, corpus, tmp_path / "r", "--codec", "zstd:level=40")


def test_choose_codec_policy():
    rows = compare_text([b'{"id": 1, "text": "abc abc abc"}\n' * 3000],
                        ["none", "lz4", "zstd:level=1", "zstd:level=9"], repeats=1)
    assert ChooseCodec().choose(rows)["ratio"] == max(r["ratio"] for r in rows)
    lossy = dict(rows[0], codec="fake-lossy", lossless=False, ratio=1e9, cosine_mean=0.9)
    assert ChooseCodec().choose(rows + [lossy])["codec"] != "fake-lossy"
    assert ChooseCodec("cosine>=0.8").choose(rows + [lossy])["codec"] == "fake-lossy"
    assert ChooseCodec("cosine>=0.95").choose(rows + [lossy])["codec"] != "fake-lossy"
    with pytest.raises(ValueError, match="no codec meets"):
        ChooseCodec(None, min_encode_mbps=1e12).choose(rows)
    assert parse_max_error("cosine>=0.999, abs<=1e-3") == [
        ("cosine_mean", ">=", 0.999), ("max_abs", "<=", 0.001)]
    with pytest.raises(ValueError, match="METRIC"):
        parse_max_error("cos~1")
