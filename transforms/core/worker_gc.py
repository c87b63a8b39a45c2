"""The garbage collector of a worker process, set for many short-lived records.

CPython's cyclic collector runs a young-generation pass every 700 container
allocations (``gc.get_threshold()`` is ``(700, 10, 10)``), and every so often
an old-generation pass that walks *every* tracked object of the process: for a
Beam SDK worker that is Beam's and our modules (hundreds of thousands of
objects) plus whatever the running bundle holds.  The job's hot steps allocate
a tuple or a record per document in a dozen places, almost none of them in a
cycle (refs, picks, keys are freed by reference counting), so those passes
find nothing and cost a fifth of a worker's CPU (measured: 1.2 of 6 CPU s per
worker on 100k documents with ``--no_near_dedup``; BENCHMARKS.md, issue 10).

``tune_gc`` (called from the ``setup`` of the job's DoFns, and by
``pipelines.prepare_corpus`` in the driver) does two things, once per process:

* ``gc.freeze()`` (after one full collection): everything alive then (imported modules, the pipeline's
  functions) moves to the permanent generation, which no pass walks again;
* ``gc.set_threshold(*THRESHOLDS)``: a young pass every 50,000 allocations
  instead of 700, so a cycle waits at most that long to be collected.

With an in-process runner (DirectRunner ``in_memory``, a user's own pipeline
embedding our transforms) the worker is the host process: its collector is
tuned too, for the rest of its life (the settings are the process's).

Memory is unchanged (reference counting frees everything acyclic at once; see
BENCHMARKS.md for peak RSS before and after) and no result depends on it.
Pure Python, no Beam: a user's own worker code may call it too.
"""
import gc

THRESHOLDS = (50_000, 20, 20)   # young-generation allocations, then passes per older pass

_tuned = False


def tune_gc() -> bool:
    """Freeze what is alive and raise the collector's thresholds, once per process.

    Returns True when this call changed the settings, False when an earlier
    call had (idempotent; cheap to call from every DoFn's ``setup``)."""
    global _tuned
    if _tuned:
        return False
    _tuned = True
    gc.collect()   # garbage of the import, not frozen with it
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return True
