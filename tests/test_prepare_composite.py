"""``PrepareCorpus(CorpusConfig)``: the job as one composite, usable inside another pipeline."""
import glob
import os

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipelines import prepare_corpus
from tests.corpora import expected_dead, expected_kept, write_small_corpus
from transforms import CorpusConfig, PrepareCorpus
from transforms.reduction.minhash import LshParams
from transforms.reduction.near_dedup import NearDedupConfig
from transforms.storage.store import ReadStore, load_manifest


def _shards(root) -> dict[str, bytes]:
    """Shard file name -> bytes (content-named: equal names, equal bytes expected)."""
    return {os.path.basename(p): open(p, "rb").read()
            for p in sorted(glob.glob(os.path.join(str(root), "ds", "shard-*")))}


def test_the_composite_in_a_users_pipeline_writes_what_the_job_writes(
        tmp_path, make_pipeline, run_config):
    corpus = write_small_corpus(tmp_path / "in")
    prepare_corpus.run(["--input", ",".join(corpus), "--output_roots", str(tmp_path / "job"),
                        "--dataset", "ds", "--max_bad_fraction", "0.5",
                        "--run_config", run_config, "--num_shards", "2"])

    config = CorpusConfig(
        input=",".join(corpus), roots=(str(tmp_path / "mine"),), dataset="ds",
        max_bad_fraction=0.5, num_shards=2,
        near_dedup=NearDedupConfig(LshParams.resolve(0.8, None, None, None, None)))
    with make_pipeline() as p:
        outputs = p | "Prepare" >> PrepareCorpus(config)
        # the user's own step after the job: one line per committed shard
        shard_lines = (outputs["manifest"]
                       | beam.FlatMap(lambda m: [f"{s['name']} {s['records']}"
                                                 for s in m["shards"]]))
        assert_that(outputs["dead_letters"]
                    | beam.Map(lambda d: (d["file"], d["line"], d["reason"])),
                    equal_to(sorted(expected_dead(*corpus))), label="DeadLetters")
        assert_that(shard_lines | beam.combiners.Count.Globally(), equal_to([2]),
                    label="TwoShards")

    assert _shards(tmp_path / "mine") == _shards(tmp_path / "job")
    mine = load_manifest(str(tmp_path / "mine" / "ds"))
    job = load_manifest(str(tmp_path / "job" / "ds"))
    assert [s["checksum"] for s in mine["shards"]] == [s["checksum"] for s in job["shards"]]
    with make_pipeline() as p:
        ids = p | ReadStore(str(tmp_path / "mine" / "ds")) | beam.Map(lambda r: r["id"])
        assert_that(ids, equal_to(sorted(expected_kept(corpus[0]))))


def test_expanding_the_composite_keeps_a_direct_runner_off_prism(tmp_path, monkeypatch):
    """A user's own pipeline on Beam's DirectRunner (no guard of theirs): expanding
    ``PrepareCorpus`` keeps the runner on its FnApiRunner, so the run never tries the
    PrismRunner Beam 2.77 would download and try first (``runner_guards``)."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability import prism_runner
    tried = []

    def refuse(self, pipeline, options):
        tried.append(type(self).__name__)
        raise RuntimeError("no Prism here")
    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", refuse)
    corpus = write_small_corpus(tmp_path / "in")
    config = CorpusConfig(input=",".join(corpus), roots=(str(tmp_path / "mine"),),
                          dataset="ds", max_bad_fraction=0.5, num_shards=1)
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        _ = p | "Prepare" >> PrepareCorpus(config)
    assert tried == []
    assert load_manifest(str(tmp_path / "mine" / "ds"))["records"] == len(expected_kept(corpus[0]))


@pytest.mark.parametrize("bad, message", [
    (dict(roots=()), "at least one store root"),
    (dict(replication=3), "replication 3 needs 1..2 roots"),
    (dict(partition_by="lang", range_by="length"), "not both"),
    (dict(max_partitions=1), "max_partitions"),
    (dict(max_bad_fraction=1.5), "max_bad_fraction"),
])
def test_inconsistent_configs_are_refused_in_one_line(tmp_path, bad, message):
    fields = dict(input="x.jsonl", roots=(str(tmp_path / "a"), str(tmp_path / "b")))
    with pytest.raises(ValueError, match=message) as err:
        CorpusConfig(**{**fields, **bad})
    assert "\n" not in str(err.value)


def test_roots_are_normalised_and_the_store_dirs_follow_them(tmp_path):
    config = CorpusConfig(input="x.jsonl", roots=(str(tmp_path / "a") + "/",), dataset="web")
    assert config.store_dirs == [os.path.join(str(tmp_path / "a"), "web")]
