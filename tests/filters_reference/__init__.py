"""A frozen copy of the heuristic filters and language ID as they were before the
speed-up (commit 1df3083, issue 13): the reference that ``tests/test_filters_speedup.py``
holds the fast implementation equal to, decision for decision (rule and detail).

Do not edit these files to follow the fast implementation: they are the old behaviour.
``text``, ``gopher``, ``c4``, ``fineweb`` are verbatim copies (imports redirected here);
``base`` holds the old ``DocView`` and ``langid`` the old ``detect_language`` (py3langid's
own ``classify``, its DFA walk in Python).
"""
