"""Filters: heuristic quality filters, language identification, PII redaction, sampling, recipes.

Pure core (no Beam import): ``base`` (``Document``, ``Drop``, ``FilterChain``),
``gopher`` (its n-gram counts in ``ngrams``), ``c4``, ``fineweb``, ``langid``, ``pii``,
``sampling``, ``recipes``, ``text``.  Beam wrappers: ``transforms.reduction.filters.beam`` (``ApplyFilters``,
``SmallestHashes``, ``SamplePerPartition``).
"""
