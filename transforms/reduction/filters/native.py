"""The compiled hot paths of the filters (``_fastfilters``, a CPython C extension), or None.

``FAST`` is the extension module when it imports, else ``None``; every caller keeps
its pure-Python implementation as the reference and takes it when ``FAST`` is None.
The two give the same tokens, counts, figures, decisions and detail strings
(``tests/test_filters_native.py`` compares them field by field on generated text):

* ``FAST.analyse_words`` -- ``text.analyse_words``' fast path (``str.split()`` chunks,
  ``str.isalpha()``, the memoised rules for other chunks);
* ``FAST.ngram_figures`` -- Gopher repetition's n-gram figures
  (``ngrams.top_ngram_chars`` / ``ngrams.duplicate_ngram_chars``);
* ``FAST.repetition_lines`` -- Gopher repetition's duplicate paragraphs and lines;
* ``FAST.langid_features`` -- py3langid's byte walk and feature counts.

The extension is built by ``pip install`` (``setup.py``'s ``ext_modules``, beside
``pyproject.toml``; it needs a C compiler).  Without it (a source checkout never installed, a platform with
no compiler) the filters still decide the same, about 3x slower, and a warning says
so once per process.  ``DATAPREP_PURE_FILTERS=1`` in the environment forces the
Python path (for comparisons; the tests call both paths directly).
"""
import os
import warnings

FAST = None
if os.environ.get("DATAPREP_PURE_FILTERS", "") not in ("", "0"):
    FAST = None
else:
    try:
        from transforms.reduction.filters import _fastfilters as FAST  # noqa: N812
    except ImportError as exc:  # pragma: no cover - exercised by an install without a compiler
        warnings.warn(
            "beam-dataprep: the compiled filters (transforms.reduction.filters._fastfilters) "
            f"did not import ({exc}); the filters run in pure Python, with the same decisions, "
            "about 3x slower.  Reinstall with a C compiler (pip install) to build them.",
            RuntimeWarning, stacklevel=2)
        FAST = None
