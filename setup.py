"""beam-dataprep: Apache Beam pipelines that prepare training data for large models."""
from setuptools import find_packages, setup

setup(
    name="beam-dataprep",
    version="0.1.0",
    description="Portable Apache Beam pipelines and PTransforms for AI training-data "
    "preparation: partitioning, dedup, compression and replicated sharded storage.",
    python_requires=">=3.10",
    packages=find_packages(include=["pipelines", "pipelines.*", "transforms", "transforms.*"]),
    package_data={"pipelines": ["sample_data/*"]},
    install_requires=[
        # Pinned: job-server jars, Prism and pickled pipelines must match the SDK exactly.
        "apache-beam==2.77.0",
        "xxhash>=3.4,<5",
        "zstandard>=0.22,<1",
        "blosc2>=3.0,<5",
        "lz4>=4.3,<5",
        "orjson>=3.9,<4",
        "pysimdjson>=6,<8",
        "numpy>=1.26,<3",
        "PyYAML>=6,<7",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "psutil>=5.9",
            # tests/test_store_faults.py reads stores with them (README's data globs)
            "duckdb>=1.1,<3",
            "polars>=1.0,<3",
        ],
        # Baselines of benchmarks/ (datatrove needs its own venv: see BENCHMARKS.md).
        "bench": [
            "datasketch>=1.6,<3",
            "psutil>=5.9",
        ],
    },
)
