"""Reading and moving documents: JSON Lines and array inputs, the scan that
turns documents into refs, partitioning, connected components, runner guards.

Layering (enforced by ``tests/test_layering.py``): ``processing`` imports
``core`` and ``storage``, never ``reduction``.
"""
