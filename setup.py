"""The one thing pyproject.toml cannot declare without an experimental table: the C
extension of the filters' hot paths (transforms/reduction/filters/native.py says what it
holds; the Python code it replaces stays the reference and the fallback).  Building it
needs a C compiler; the wheel is therefore platform-specific."""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension(
        "transforms.reduction.filters._fastfilters",
        sources=["transforms/reduction/filters/_fastfilters.c"],
        extra_compile_args=["-O2"],
    ),
    # the byte pass of the exact-dedup text key (transforms/core/hashing.py, text_keys)
    Extension(
        "transforms.core._fastcore",
        sources=["transforms/core/_fastcore.c"],
        extra_compile_args=["-O2"],
    ),
])
