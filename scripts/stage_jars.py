#!/usr/bin/env python3
"""Stage the Flink and Spark job servers: ``pipelines/stage_jars.py`` from a checkout
(the same as ``dataprep stage-jars`` from an installed wheel)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from pipelines.stage_jars import main  # noqa: E402

if __name__ == "__main__":
    main()
