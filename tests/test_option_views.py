"""transforms/processing/option_views.py: each options view made once while
PrepareCorpus expands; the pipeline built is the same, option values are shared."""
import threading

import apache_beam as beam
import pytest
from apache_beam.options import pipeline_options as po
from apache_beam.options.pipeline_options import (
    DirectOptions, PipelineOptions, StandardOptions, TypeOptions)

from pipelines import prepare_corpus
from transforms.processing.option_views import reused_option_views

BEAM_VIEW_AS = PipelineOptions.__dict__["view_as"]


@pytest.fixture
def parses(monkeypatch):
    """How many times Beam's argument parser parsed flags (each ``view_as`` does once)."""
    count = {"n": 0}
    original = po._BeamArgumentParser.parse_known_args

    def counting(self, *args, **kwargs):
        count["n"] += 1
        return original(self, *args, **kwargs)
    monkeypatch.setattr(po._BeamArgumentParser, "parse_known_args", counting)
    return count


def _build(tmp_path, wrap: bool):
    """PrepareCorpus applied to a new pipeline (not run): its transforms' labels with
    the element type of each output, and the options it was built with."""
    tmp_path.mkdir()
    corpus = tmp_path / "in.jsonl"
    corpus.write_text('{"id": "a", "text": "one two three"}\n')
    args, options = prepare_corpus.build_parser().parse(
        ["--input", str(corpus), "--output_roots", str(tmp_path / "out"), "--run_config",
         "direct"])
    from pipelines import cli
    roots = cli.resolve_roots(args)
    pipeline = beam.Pipeline(options=options)
    if wrap:
        prepare_corpus.build_pipeline(pipeline, args, roots)
    else:   # Beam's view_as throughout: expand's own block made a no-op
        import transforms.prepare as prepare_module
        from contextlib import nullcontext
        original = prepare_module.reused_option_views
        prepare_module.reused_option_views = nullcontext
        try:
            prepare_corpus.build_pipeline(pipeline, args, roots)
        finally:
            prepare_module.reused_option_views = original
    shapes = {}

    class Shapes(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            shapes[node.full_label] = sorted(
                (str(tag), str(out.element_type)) for tag, out in node.outputs.items())
    pipeline.visit(Shapes())
    return shapes


def test_building_prepare_corpus_calls_view_as_often(tmp_path, parses):
    """Beam 2.77 re-parses the flags on every view: >1,000 parses to build the job;
    with each view made once, fewer than 100; the same transforms, the same element
    types.  (When Beam stops re-parsing, the first count drops: the module can go.)"""
    plain = _build(tmp_path / "a", wrap=False)
    beam_parses, parses["n"] = parses["n"], 0
    reused = _build(tmp_path / "b", wrap=True)
    assert beam_parses > 1000
    assert parses["n"] < 100
    assert reused == plain
    assert len(plain) > 250
    assert PipelineOptions.__dict__["view_as"] is BEAM_VIEW_AS   # restored after the block


def test_views_made_once_share_values_with_new_ones():
    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=3"])
    with reused_option_views():
        first = options.view_as(DirectOptions)
        assert options.view_as(DirectOptions) is first
        assert first.direct_num_workers == 3
        first.direct_num_workers = 5                      # written through a reused view
        options.view_as(StandardOptions).runner = "PrismRunner"
        with reused_option_views():                       # nested: the same views
            assert options.view_as(DirectOptions) is first
        assert PipelineOptions.__dict__["view_as"] is not BEAM_VIEW_AS
    assert PipelineOptions.__dict__["view_as"] is BEAM_VIEW_AS
    fresh = options.view_as(DirectOptions)                # Beam's own view_as again
    assert fresh is not first
    assert fresh.direct_num_workers == 5
    assert options.view_as(StandardOptions).runner == "PrismRunner"
    assert options.get_all_options()["direct_num_workers"] == 5


def test_views_are_per_options_object_and_class():
    a = PipelineOptions(["--pipeline_type_check"])
    b = PipelineOptions(["--no_pipeline_type_check"])
    with reused_option_views():
        assert a.view_as(TypeOptions).pipeline_type_check is True
        assert b.view_as(TypeOptions).pipeline_type_check is False
        assert a.view_as(TypeOptions) is not b.view_as(TypeOptions)
        assert a.view_as(TypeOptions) is not a.view_as(StandardOptions)


def test_threads_building_at_once_restore_beams_method():
    errors = []
    start = threading.Barrier(4)

    def build():
        try:
            start.wait()
            for _ in range(50):
                with reused_option_views():
                    options = PipelineOptions(["--direct_num_workers=2"])
                    assert options.view_as(DirectOptions).direct_num_workers == 2
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)
    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert PipelineOptions.__dict__["view_as"] is BEAM_VIEW_AS
