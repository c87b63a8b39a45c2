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
``pipelines.prepare_corpus`` in the driver) does three things, once per process:

* ``gc.freeze()`` (after one full collection): everything alive then (imported modules, the pipeline's
  functions) moves to the permanent generation, which no pass walks again;
* ``gc.set_threshold(*THRESHOLDS)``: a young pass every 50,000 allocations
  instead of 700, so a cycle waits at most that long to be collected;
* ``tune_malloc()``: glibc's allocator set for big short-lived buffers (below).

With an in-process runner (DirectRunner ``in_memory``, a user's own pipeline
embedding our transforms) the worker is the host process: its collector is
tuned too, for the rest of its life (the settings are the process's).

The collector's settings leave memory unchanged (reference counting frees
everything acyclic at once; see BENCHMARKS.md for peak RSS before and after);
the allocator's cost some (below).  No result depends on either.
Pure Python, no Beam: a user's own worker code may call it too.

``tune_gc`` also sets glibc's allocator for the same process (``tune_malloc``):
the job's hot steps allocate and free buffers of 1-32 MiB many times a second
(4 MiB read chunks and their line lists, runs and their compressed bytes,
shards' pieces).  glibc serves such a block with its own ``mmap`` above a
threshold (128 KiB at start, raised as such blocks are freed) and gives the
top of its heap back to the system once 128 KiB of it is free, so each of
those buffers comes back as fresh pages the kernel zeroes and faults in one by
one: ~3 million page faults and ~22 of ~179 CPU seconds in the kernel at 1M
documents (``--no_near_dedup``, BENCHMARKS.md, issue 10, session 13).  With the
mmap threshold fixed at its glibc maximum (32 MiB on 64-bit) and the heap
trimmed only once ``TRIM_BYTES`` of it is free, freed buffers are reused by
the next ones.  The price is memory kept: the main heap gives back its free
top only past ``TRIM_BYTES``, and the heaps of other threads' arenas (Beam runs
bundles on a thread pool; each heap at most 64 MiB) seldom shrink at all, so a
process keeps about its peak plus fragmentation (measured: peak RSS of the 1M
job's process tree +5 %, BENCHMARKS.md, session 13).  The settings hold for the
rest of the process's life (with an in-process runner, the host's).  Other C
libraries (musl, macOS, Windows) are left alone.
"""
import ctypes
import gc

THRESHOLDS = (50_000, 20, 20)   # young-generation allocations, then passes per older pass
# glibc mallopt(3) parameters and the values tune_malloc sets
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_BYTES = 32 << 20    # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit glibc: blocks below it reuse the heap
TRIM_BYTES = 256 << 20   # free bytes at the heap's top before they are given back
TOP_PAD_BYTES = 16 << 20  # extra bytes asked of the system each time the heap grows

_tuned = False


def tune_gc() -> bool:
    """Freeze what is alive, raise the collector's thresholds and set glibc's
    allocator (``tune_malloc``), once per process.

    Returns True when this call changed the settings, False when an earlier
    call had (idempotent; cheap to call from every DoFn's ``setup``)."""
    global _tuned
    if _tuned:
        return False
    _tuned = True
    gc.collect()   # garbage of the import, not frozen with it
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    tune_malloc()
    return True


def tune_malloc() -> bool:
    """Set glibc's ``mallopt`` (mmap threshold ``MMAP_BYTES``, trim threshold
    ``TRIM_BYTES``, top pad ``TOP_PAD_BYTES``) for this process; True when glibc
    took all three, False when the C library has no ``mallopt`` (not glibc) or
    refused one.  Idempotent; no result depends on it (see the module's text)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):   # TypeError: Windows' CDLL(None)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all([mallopt(M_MMAP_THRESHOLD, MMAP_BYTES) == 1,
                mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1,
                mallopt(M_TOP_PAD, TOP_PAD_BYTES) == 1])
