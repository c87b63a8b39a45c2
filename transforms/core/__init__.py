"""Pure building blocks, importable without Beam: hashing, document ids, the
typed records that cross transforms, partition names, codecs, array maps.

Layering (enforced by ``tests/test_layering.py``): ``core`` imports nothing
else from ``transforms`` and no ``apache_beam``.
"""
