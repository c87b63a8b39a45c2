"""Making a corpus smaller: exact and near-duplicate removal (MinHash LSH),
quality filters, language ID, PII redaction, sampling, codec choice.

Layering (enforced by ``tests/test_layering.py``): ``reduction`` may import
``core``, ``storage`` and ``processing``.
"""
