"""Stores on object storage: s3:// roots against a real S3 server (SeaweedFS, tests/s3_server.py).

Beam's S3 filesystem (boto3) talks to the server through the S3Options flags
(`--s3_endpoint_url`, keys, region) that a user gives on the command line or
in a run config; the jobs pass them to FileSystems before touching storage, and
the runner passes them to its workers.  Each test checks the bytes and records
through the S3 API itself (boto3), not through our own reader.
"""
import json
import os
import re

import apache_beam as beam
import pytest
import zstandard
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import prepare_corpus, verify_store
from tests.corpora import expected_kept, write_small_corpus
from tests.s3_server import S3Server
from transforms.storage.store import ReadStore

# Runs on direct and on the full-suite portable runner (prism in CI), not on every runner.
BUCKETS = ["bucket-a", "bucket-b"]


@pytest.fixture(scope="module")
def s3():
    with S3Server(BUCKETS) as server:
        yield server


@pytest.fixture
def prefix(request):
    """A fresh key prefix per test, so tests share the server without seeing each other."""
    return f"{request.node.name.replace('[', '-').replace(']', '')}-{os.getpid()}"


def objects(s3, bucket, prefix) -> dict[str, bytes]:
    client = s3.client()
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def data_objects(found: dict[str, bytes]) -> dict[str, bytes]:
    """Shards and manifests by name (run report and audit outputs left out)."""
    return {key.rsplit("/", 1)[-1]: data for key, data in found.items()
            if key.rsplit("/", 1)[-1].startswith(("shard-", "manifest"))}


def stored_lines(shards: dict[str, bytes]) -> list[bytes]:
    lines = []
    for name, data in sorted(shards.items()):
        if name.startswith("shard-"):
            lines += zstandard.ZstdDecompressor().stream_reader(data).read().splitlines()
    return lines


def run(run_config, s3, inputs, roots, *extra):
    return prepare_corpus.run(["--input", ",".join(inputs), "--output_roots", ",".join(roots),
                               "--dataset", "ds", "--max_bad_fraction", "0.5", "--num_shards", "3",
                               "--run_config", run_config, *s3.beam_flags, *extra])


def test_a_store_on_two_s3_roots_is_complete_verified_and_rerun_identically(
        tmp_path, s3, prefix, run_config, capsys):
    inputs = write_small_corpus(tmp_path / "in")
    roots = [f"s3://{bucket}/{prefix}" for bucket in BUCKETS]
    run(run_config, s3, inputs, roots)
    first = {b: data_objects(objects(s3, b, prefix)) for b in BUCKETS}
    # R=2 of N=2: every shard and the manifest on both buckets, byte for byte.
    names = sorted(first["bucket-a"])
    assert names[0] == "manifest.json" and len(names) == 4
    assert [re.fullmatch(r"shard-(\d{5})-of-00003-[0-9a-f]{16}\.jsonl\.zst", n).group(1)
            for n in names[1:]] == ["00000", "00001", "00002"]
    shards = {b: {n: d for n, d in first[b].items() if n.startswith("shard-")} for b in BUCKETS}
    assert shards["bucket-a"] == shards["bucket-b"]
    # The manifest copies differ only in which root they sit on (relocatable stores).
    copies = [json.loads(first[b]["manifest.json"]) for b in BUCKETS]
    assert [c.pop("root_index") for c in copies] == [0, 1]
    assert copies[0] == copies[1]
    assert sorted(stored_lines(first["bucket-a"])) == sorted(expected_kept(inputs[0]).values())
    # The same job into local roots stores the same shard bytes.
    local = [str(tmp_path / "a"), str(tmp_path / "b")]
    run(run_config, s3, inputs, local)
    for name, data in first["bucket-a"].items():
        if name.startswith("shard-"):
            with open(os.path.join(local[0], "ds", name), "rb") as f:
                assert f.read() == data, name
    # verify_store reads the S3 store with the same flags; a rerun changes no byte.
    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", f"{roots[0]}/ds", *s3.beam_flags])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().endswith("0 problem(s)")
    run(run_config, s3, inputs, roots)
    assert {b: data_objects(objects(s3, b, prefix)) for b in BUCKETS} == first


def test_read_back_fails_over_and_repair_restores_an_s3_replica(
        tmp_path, s3, prefix, run_config, beam_flags, capsys):
    inputs = write_small_corpus(tmp_path / "in")
    roots = [f"s3://bucket-a/{prefix}", str(tmp_path / "local")]  # one S3 root, one local
    run(run_config, s3, inputs, roots)
    store = f"{roots[0]}/ds"
    client = s3.client()
    keys = sorted(k for k in objects(s3, "bucket-a", prefix) if "/shard-" in k)
    assert len(keys) == 3
    client.delete_object(Bucket="bucket-a", Key=keys[0])  # a lost replica
    body = bytearray(client.get_object(Bucket="bucket-a", Key=keys[1])["Body"].read())
    body[len(body) // 2] ^= 0x01  # one flipped bit
    client.put_object(Bucket="bucket-a", Key=keys[1], Body=bytes(body))

    FileSystems.set_options(PipelineOptions(s3.beam_flags))
    expected = sorted(expected_kept(inputs[0]))
    # The runner's workers read S3 too: the S3 flags go with the pipeline's options.
    pipeline = BeamTestPipeline(options=PipelineOptions(beam_flags + s3.beam_flags), blocking=True)
    ids = pipeline | ReadStore(store) | "Ids" >> beam.Map(lambda d: d["id"])
    assert_that(ids, equal_to(expected))
    pipeline.run()

    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", store, *s3.beam_flags])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out
    with pytest.raises(SystemExit) as exit_info:
        verify_store.main(["--store", store, "--repair", *s3.beam_flags])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().endswith("0 problem(s)")
    repaired = objects(s3, "bucket-a", prefix)
    for key in keys:
        with open(os.path.join(roots[1], "ds", key.rsplit("/", 1)[-1]), "rb") as f:
            assert repaired[key] == f.read()
