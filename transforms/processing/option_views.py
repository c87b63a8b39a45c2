"""Build big pipelines faster: each options view made once while a composite expands.

**What it works around (Beam 2.77).**  ``PipelineOptions.view_as(cls)`` builds a new
``argparse`` parser with every flag of ``cls`` and parses the pipeline's flags again
on every call (about 2 ms; it also calls ``logging.basicConfig``).  Beam calls it for
every transform applied (``Pipeline._apply_internal`` and ``_infer_result_type`` read
``TypeOptions``) and for every type-hint check (``typehints.is_consistent_with``
reads ``TypeOptions.disable_beartype`` from the pipeline's options): about 1,500
calls to build ``PrepareCorpus``, half of the ~3 s of CPU its construction takes,
paid again by every job and every test that builds it.

**What it does.**  Inside ``reused_option_views()``, ``view_as`` returns the view it
made before for the same options object and view class.  A view holds no values of
its own: every view of an options object reads and writes that object's
``_all_options`` dict, so a view made once reads and writes what a new one would.
The options objects seen are held until the outermost block ends, so an id is never
reused for another object inside it.  Re-entrant and thread-safe (one lock around
the memo; Beam's ``view_as`` is otherwise unchanged); outside the block Beam's own
method is in place.

**Where it is applied.**  ``PrepareCorpus.expand`` (transforms/prepare.py), so a
pipeline that embeds the composite gets it too.

**When it can go.**  When ``view_as`` in ``apache_beam/options/pipeline_options.py``
no longer re-parses the flags on each call: then
``tests/test_option_views.py::test_building_prepare_corpus_calls_view_as_often``
shows fewer than 100 parses per build, and this module and its call can be deleted.
"""
import contextlib
import threading

from apache_beam.options.pipeline_options import PipelineOptions

_LOCK = threading.RLock()
_STATE = {"depth": 0, "views": {}, "held": {}, "original": None}


def _reused_view_as(self, cls):
    key = (id(self), cls)
    with _LOCK:
        view = _STATE["views"].get(key)
        if view is None:
            view = _STATE["original"](self, cls)
            _STATE["views"][key] = view
            _STATE["held"][id(self)] = self
        return view


@contextlib.contextmanager
def reused_option_views():
    """Within the block, ``PipelineOptions.view_as`` makes each (options object, view
    class) view once and returns it again after (module docstring: why, and when it
    can go).  Nests; restores Beam's method when the outermost block ends."""
    with _LOCK:
        if _STATE["depth"] == 0:
            _STATE["original"] = PipelineOptions.__dict__["view_as"]
            PipelineOptions.view_as = _reused_view_as
        _STATE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0:
                PipelineOptions.view_as = _STATE["original"]
                _STATE["views"].clear()
                _STATE["held"].clear()
