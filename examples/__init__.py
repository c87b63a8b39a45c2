"""Short pipelines that use beam-dataprep's transforms inside your own Beam code.

Run each from a checkout: ``python -m examples.<name> --help`` or
``python examples/<name>.py --help``; ``tests/test_examples.py`` runs them all.
"""
