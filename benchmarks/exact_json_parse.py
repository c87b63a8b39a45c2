"""CPU per record of ``transforms.core.exact_json.loads`` against orjson and the
first implementation (a scan of the bytes for a run of 19 digits before orjson),
in the same run, on the benchmark corpus' records.

    python -m benchmarks.exact_json_parse --docs 20000

Prints microseconds per record (best of ``--repeat`` passes over the records,
process CPU time) for each parser, and checks that they return equal values.
"""
import argparse
import json
import re
import time

import orjson

from benchmarks.corpus import generate
from transforms.core import exact_json

_LONG_DIGITS = re.compile(rb"\d{19}")


def regex_first(data: bytes):
    """The first implementation (session 6): scan, then orjson or the standard library."""
    if _LONG_DIGITS.search(data) is None:
        return orjson.loads(data)
    return json.loads(data)


def best_cpu_us(parse, lines, repeat) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for line in lines:
            parse(line)
        best = min(best, time.process_time() - start)
    return best / len(lines) * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    lines = [line for line, _ in generate(args.docs, seed=0)]
    assert all(exact_json.loads(x) == regex_first(x) == orjson.loads(x) for x in lines)
    size = sum(map(len, lines)) / len(lines)
    print(f"{len(lines):,} records, {size:,.0f} bytes each on average")
    for name, parse in (("orjson.loads", orjson.loads), ("exact_json.loads", exact_json.loads),
                        ("19-digit scan, then orjson (before)", regex_first)):
        print(f"{name:38s} {best_cpu_us(parse, lines, args.repeat):8.2f} us/record")


if __name__ == "__main__":
    main()
