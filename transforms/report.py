"""Run reports: Beam metrics of a finished pipeline as a table and as JSON.

Counters are read from the PipelineResult, so the same report comes out of
every runner.  Run metadata (times, host, options) lives here and never in the
manifest, which must stay byte-identical across reruns.
"""
import datetime
import platform
import time

import orjson

from transforms.store import AUDIT_DIR, join, write_atomically

PREFIX = "dataprep."


def counters(result) -> dict[str, int]:
    """``{"namespace/name": value}`` of our counters, summed over steps."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query()["counters"]:
        namespace = counter.key.metric.namespace
        if not namespace.startswith(PREFIX):
            continue
        value = counter.committed if counter.committed is not None else counter.attempted
        name = f"{namespace[len(PREFIX):]}/{counter.key.metric.name}"
        totals[name] = totals.get(name, 0) + int(value or 0)
    return dict(sorted(totals.items()))


def distributions(result) -> dict[str, dict]:
    """``{"namespace/name": {"count", "sum", "min", "max"}}`` of our distributions."""
    out: dict[str, dict] = {}
    for dist in result.metrics().query()["distributions"]:
        namespace = dist.key.metric.namespace
        if not namespace.startswith(PREFIX):
            continue
        value = dist.committed if dist.committed is not None else dist.attempted
        if value is None or not value.count:
            continue
        name = f"{namespace[len(PREFIX):]}/{dist.key.metric.name}"
        seen = out.get(name)
        merged = {"count": value.count, "sum": value.sum, "min": value.min, "max": value.max}
        if seen:
            merged = {"count": seen["count"] + value.count, "sum": seen["sum"] + value.sum,
                      "min": min(seen["min"], value.min), "max": max(seen["max"], value.max)}
        out[name] = merged
    return dict(sorted(out.items()))


def summary_table(values: dict[str, int]) -> str:
    if not values:
        return "(no counters reported)"
    width = max(len(k) for k in values)
    lines = [f"{'counter':<{width}}  {'value':>14}", f"{'-' * width}  {'-' * 14}"]
    lines += [f"{name:<{width}}  {value:>14,}" for name, value in values.items()]
    return "\n".join(lines)


class RunClock:
    def __init__(self):
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0


def build_report(job: str, clock: RunClock, values: dict[str, int], options: dict,
                 runner: str, extra: dict | None = None) -> dict:
    report = {
        "job": job,
        "started_utc": clock.started.isoformat(timespec="seconds"),
        "wall_seconds": round(clock.elapsed(), 3),
        "runner": runner,
        "host": platform.node(),
        "options": options,
        "counters": values,
    }
    report.update(extra or {})
    return report


def write_report(report: dict, directories: list[str]) -> None:
    """``<dataset>/_audit/run_report.json`` on every root (apart from the data)."""
    data = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    for directory in directories:
        write_atomically(join(directory, AUDIT_DIR, "run_report.json"), data)
