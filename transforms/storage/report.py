"""Run reports: what a run did, as ``run_report.json`` and a self-contained ``run_report.html``.

Counters are read from the PipelineResult, so the same report comes out of
every runner.  Run metadata (versions, times, host, options, input lineage)
lives here and never in the manifest, which must stay byte-identical across
reruns.

The report is a JSON object (every key optional except ``job`` and
``counters``; older reports render too):

- ``versions``: ``{"beam_dataprep", "apache_beam", "python"}`` version strings.
- ``started_utc`` / ``finished_utc``: ISO 8601, seconds; ``wall_seconds`` and
  ``cpu_seconds`` (user + system CPU of the launching process and its waited-for
  children, so DirectRunner workers count; a remote cluster's do not).
- ``stages``: ``{"source", "note", "rows": [{"stage", "busy_seconds"}]}``: the
  runner's per-transform execution time (Beam's sampled
  ``ptransform_execution_time``) summed per stage of the job (``stage_times``:
  the job composite's steps in job order, no PCollection names).  No Beam runner
  reports per-stage wall or CPU time separately; ``note`` says what is there.
- ``beam_options``: the Beam PipelineOptions that differ from their defaults.
- ``config``: the job's resolved configuration (every flag, defaults filled in).
- ``inputs``: lineage, ``[{"path", "bytes", "digest"}]`` (digest None when unknown).
- ``counters``: ``{"namespace/name": int}`` of the ``dataprep.*`` namespaces.
- ``shard_sizes``: ``[{"partition", "raw_bytes": [int, ...]}]`` from the manifest.
- ``dead_letters``: ``{"examples": [dead-letter record, ...]}``, a few per reason.
- job-specific: ``codec``, ``codec_choice``, ``partitions``,
  ``near_dedup_cluster_sizes``, ``store``, ...

This module imports no Beam at load time: rendering is pure (Jinja2 templates
shipped as package data, charts as inline SVG built here), so the HTML can be
produced and tested without a pipeline.
"""
import datetime
import os
import platform
import posixpath
import resource
import time

import orjson

from transforms.core import exact_json

PREFIX = "dataprep."
REPORT_JSON = "run_report.json"
REPORT_HTML = "run_report.html"
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
JOB_COMPOSITES = ("PrepareCorpus",)  # top-level steps whose parts are the stages
EXECUTION_TIME = "beam:metric:ptransform_execution_time:total_msecs:v1"
DEAD_LETTER_EXAMPLES = 3  # per reason, in the report


# ---------------------------------------------------------------------------
# Gathering (needs a finished PipelineResult or the filesystem; Beam imported lazily)


def _our_metrics(result, kind: str):
    """``(name, value)`` of every ``dataprep.*`` metric of ``kind`` ("counters",
    "distributions") per step, named ``namespace/name`` without the prefix; the
    committed value where the runner has one, else the attempted one."""
    for metric in result.metrics().query()[kind]:
        namespace = metric.key.metric.namespace
        if not namespace.startswith(PREFIX):
            continue
        value = metric.committed if metric.committed is not None else metric.attempted
        yield f"{namespace[len(PREFIX):]}/{metric.key.metric.name}", value


def counters(result) -> dict[str, int]:
    """``{"namespace/name": value}`` of our counters, summed over steps."""
    totals: dict[str, int] = {}
    for name, value in _our_metrics(result, "counters"):
        totals[name] = totals.get(name, 0) + int(value or 0)
    return dict(sorted(totals.items()))


def distributions(result) -> dict[str, dict]:
    """``{"namespace/name": {"count", "sum", "min", "max"}}`` of our distributions."""
    out: dict[str, dict] = {}
    for name, value in _our_metrics(result, "distributions"):
        if value is None or not value.count:
            continue
        seen = out.get(name)
        merged = {"count": value.count, "sum": value.sum, "min": value.min, "max": value.max}
        if seen:
            merged = {"count": seen["count"] + value.count, "sum": seen["sum"] + value.sum,
                      "min": min(seen["min"], value.min), "max": max(seen["max"], value.max)}
        out[name] = merged
    return dict(sorted(out.items()))


APPLIED = "ref_AppliedPTransform_"   # a portable runner's transform ids
PCOLLECTION = "ref_PCollection_"      # metrics keyed by a PCollection, not a step


def stage_of(step: str) -> str | None:
    """The job stage a metric's step name belongs to: the top-level step, or the
    step inside a whole-job composite (``JOB_COMPOSITES``).  ``Read/ParseLines``,
    ``PrepareCorpus/Read/ScanFiles`` (Direct) and
    ``ref_AppliedPTransform_PrepareCorpus-Read-ScanFiles_9`` (a portable runner's
    transform id) all give ``Read``; a PCollection's id
    (``ref_PCollection_PCollection_12``) or an empty name gives None."""
    import re
    if not step or step.startswith(PCOLLECTION):
        return None
    if step.startswith(APPLIED):
        parts = re.split(r"[-/]", re.sub(r"_\d+$", "", step[len(APPLIED):]))
    else:
        parts = step.split("/")
    while len(parts) > 1 and parts[0] in JOB_COMPOSITES:
        parts = parts[1:]
    return parts[0] or None


def job_stages(pipeline) -> list[str]:
    """The job's stages in the order the job applies them: the parts of its whole-job
    composite (``JOB_COMPOSITES``, e.g. ``PrepareCorpus``'s ``Read``, ``ExactDedup``,
    ..., ``Store``), else the pipeline's top-level steps."""
    root = pipeline.transforms_stack[0]
    out: list[str] = []

    def walk(node, depth):
        for part in node.parts:
            label = part.full_label.rsplit("/", 1)[-1]
            if label in JOB_COMPOSITES and part.parts:
                walk(part, depth + 1)
            elif label not in out:
                out.append(label)
    walk(root, 0)
    return out


def stage_times(result, pipeline=None) -> dict:
    """The runner's execution time per job stage, from its monitoring metrics.

    Returns ``{"source", "note", "rows": [{"stage", "busy_seconds"}]}``.  Rows are
    the job's stages (``job_stages(pipeline)``), in job order, each with its time
    (0.0 when the runner sampled none), then any other step with time > 0 in the
    order first reported; metrics keyed by a PCollection are no stage and are
    left out.  Without ``pipeline``, the steps with time > 0 in the order first
    reported.  ``rows`` is empty (and ``note`` says so) when the runner exposes no
    per-transform times (e.g. Flink and Spark job servers).
    """
    times: dict[str, float] = {}
    try:
        query = result.monitoring_metrics().query()
    except Exception:  # noqa: BLE001 - runners without monitoring metrics
        query = {"counters": []}
    for counter in query.get("counters", []):
        metric = counter.key.metric
        if f"{metric.namespace}:{metric.name}" != EXECUTION_TIME and metric.name != EXECUTION_TIME:
            continue
        stage = stage_of(counter.key.step or "")
        if stage is None:
            continue
        value = counter.committed if counter.committed is not None else counter.attempted
        times[stage] = times.get(stage, 0.0) + (value or 0) / 1000.0
    if not times:
        return {"source": None, "rows": [],
                "note": "the runner exposes no per-stage times; only the whole run's wall "
                        "and CPU time are reported"}
    order = job_stages(pipeline) if pipeline is not None else []
    order += [s for s, v in times.items() if s not in order and round(v, 3) > 0]
    return {"source": EXECUTION_TIME,
            "note": "busy time per stage of the job, in job order, sampled by Beam on the "
                    "workers (close to CPU time for CPU-bound steps; overlapping steps add "
                    "up to more than the wall time); no runner reports per-stage wall time",
            "rows": [{"stage": s, "busy_seconds": round(times.get(s, 0.0), 3)} for s in order]}


def input_lineage(entries) -> list[dict]:
    """Input files as ``[{"path", "bytes", "digest"}]``, sorted by path.

    ``entries``: paths, or dicts with ``path`` and optional ``bytes`` and
    ``digest`` (what the reading layer knows).  Missing sizes are filled from
    the filesystem (any Beam FileSystems scheme), each path taken literally
    (``files.file_size``: ``data[1].jsonl`` is that file, not a pattern); a
    missing digest stays None, as does the size of a file that is not there.
    """
    rows = {}
    for entry in entries:
        row = {"path": entry} if isinstance(entry, str) else dict(entry)
        row.setdefault("bytes", None)
        row.setdefault("digest", None)
        rows[row["path"]] = row
    unknown = [p for p, r in rows.items() if r["bytes"] is None]
    if unknown:
        from transforms.storage.files import file_size
        for path in unknown:
            rows[path]["bytes"] = file_size(path)
    return [rows[p] for p in sorted(rows)]


def lineage_difference(recorded, current, shown: int = 3) -> str | None:
    """How this run's inputs differ from those a dataset was made from, or None when
    they are the same files (paths) of the same sizes (bytes).

    ``recorded``: a manifest's ``inputs`` (``[{"path", "bytes"}]``; None when the
    manifest records none); ``current``: the same for this run
    (``transforms.processing.io.input_files``).  The answer names at most
    ``shown`` files per kind, by file name (full paths when two shown names would
    be alike): ``"only in the dataset: sample.jsonl; only in this run: b.jsonl"``,
    ``"other size: a.jsonl 1,234 -> 1,300 bytes"``, or ``"its inputs are not
    recorded"``.  Contents are not compared (sizes only: no file is read).
    """
    if recorded is None:
        return "its inputs are not recorded"
    old = {e["path"]: e.get("bytes") for e in recorded}
    new = {e["path"]: e.get("bytes") for e in current}
    if old == new:
        return None
    gone, added = sorted(old.keys() - new.keys()), sorted(new.keys() - old.keys())
    resized = sorted(p for p in old.keys() & new.keys() if old[p] != new[p])
    listed = gone[:shown] + added[:shown] + resized[:shown]
    names = [posixpath.basename(p.rstrip("/")) or p for p in listed]
    name = (dict(zip(listed, names)) if len(set(names)) == len(set(listed))
            else {p: p for p in listed})

    def listing(paths, show):
        more = f" and {len(paths) - shown:,} more" if len(paths) > shown else ""
        return ", ".join(show(p) for p in paths[:shown]) + more

    def sizes(p):
        return f"{name[p]} {_bytes(old[p])} -> {_bytes(new[p])} bytes"

    parts = [f"{label}: {listing(paths, show)}" for label, paths, show in (
        ("only in the dataset", gone, lambda p: name[p]),
        ("only in this run", added, lambda p: name[p]),
        ("other size", resized, sizes)) if paths]
    return "; ".join(parts)


def _bytes(n) -> str:
    return "?" if n is None else f"{n:,}"


def beam_options(options) -> dict:
    """The PipelineOptions that differ from their defaults, JSON-safe, sorted."""
    values = options.get_all_options(drop_default=True, retain_unknown_options=True)
    return {k: _json_safe(v) for k, v in sorted(values.items()) if v is not None}


def _json_safe(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def shard_sizes(manifest: dict) -> list[dict]:
    """``[{"partition", "raw_bytes": [sizes ascending]}]`` per partition of a manifest."""
    groups: dict[str, list[int]] = {}
    for shard in manifest.get("shards", []):
        groups.setdefault(shard.get("partition", "") or "(all)", []).append(shard["raw_bytes"])
    return [{"partition": p, "raw_bytes": sorted(groups[p])} for p in sorted(groups)]


def dead_letter_examples(directory: str, per_reason: int = DEAD_LETTER_EXAMPLES,
                         prefix: str = "dead_letters", max_lines: int = 100_000) -> list[dict]:
    """Up to ``per_reason`` dead-letter records per reason, from ``<prefix>*.jsonl.zst``
    in ``directory`` or its ``_audit/`` folder, sorted by (reason, file, line).

    Reads at most ``max_lines`` dead-letter lines (files in name order), so a
    run with millions of bad lines does not spend minutes here."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    from transforms.storage.files import join
    patterns = [join(directory, f"{prefix}*.jsonl.zst"),
                join(directory, "_audit", f"{prefix}*.jsonl.zst")]
    paths = sorted(m.path for r in FileSystems.match(patterns) for m in r.metadata_list)
    seen: dict[str, int] = {}
    examples = []
    scanned = 0
    for path in paths:
        if scanned >= max_lines:
            break
        with FileSystems.open(path, compression_type=CompressionTypes.ZSTD) as stream:
            while scanned < max_lines:
                line = stream.readline()
                if not line:
                    break
                scanned += 1
                if not line.strip():
                    continue
                record = exact_json.loads(line)
                reason = str(record.get("reason"))
                if seen.get(reason, 0) < per_reason:
                    seen[reason] = seen.get(reason, 0) + 1
                    examples.append(record)
    return sorted(examples, key=lambda r: (str(r.get("reason")), str(r.get("file")),
                                           r.get("line") or 0))


def summary_table(values: dict[str, int]) -> str:
    if not values:
        return "(no counters reported)"
    width = max(len(k) for k in values)
    lines = [f"{'counter':<{width}}  {'value':>14}", f"{'-' * width}  {'-' * 14}"]
    lines += [f"{name:<{width}}  {value:>14,}" for name, value in values.items()]
    return "\n".join(lines)


class RunClock:
    """Start and end of a run: UTC times, monotonic wall seconds, CPU seconds."""

    def __init__(self):
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self._t0 = time.monotonic()
        self._cpu0 = self._cpu()

    @staticmethod
    def _cpu() -> float:
        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def cpu(self) -> float:
        return self._cpu() - self._cpu0


def versions() -> dict:
    """Versions of this tool, Apache Beam and Python."""
    from transforms import __version__
    try:
        import apache_beam
        beam_version = apache_beam.__version__
    except ImportError:  # pragma: no cover - Beam is a dependency
        beam_version = None
    return {"beam_dataprep": __version__, "apache_beam": beam_version,
            "python": platform.python_version()}


def build_report(job: str, clock: RunClock, values: dict[str, int], config: dict,
                 runner: str, extra: dict | None = None, *, options=None, result=None,
                 inputs=None, pipeline=None) -> dict:
    """The run report (see the module docstring for its keys).

    ``config``: the job's resolved flags; ``options``: Beam PipelineOptions;
    ``result``: the finished PipelineResult (for stage times), ``pipeline`` the
    Pipeline it ran (for the job's stages and their order); ``inputs``:
    paths or ``{path, bytes?, digest?}`` dicts of the input files.
    """
    finished = datetime.datetime.now(datetime.timezone.utc)
    report = {
        "job": job,
        "versions": versions(),
        "started_utc": clock.started.isoformat(timespec="seconds"),
        "finished_utc": finished.isoformat(timespec="seconds"),
        "wall_seconds": round(clock.elapsed(), 3),
        "cpu_seconds": round(clock.cpu(), 3),
        "runner": runner,
        "host": platform.node(),
        "config": _json_safe(dict(config)),
        "counters": values,
    }
    if options is not None:
        report["beam_options"] = beam_options(options)
    if result is not None:
        report["stages"] = stage_times(result, pipeline)
    if inputs is not None:
        report["inputs"] = input_lineage(inputs)
    report.update(extra or {})
    return report


def report_bytes(report: dict) -> bytes:
    return exact_json.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_report(report: dict, directories: list[str]) -> None:
    """``<dataset>/_audit/run_report.json`` and ``run_report.html`` on every root
    (apart from the data), atomically."""
    from transforms.storage.files import join
    from transforms.storage.store import AUDIT_DIR, write_atomically
    data = report_bytes(report)
    page = render_html(report).encode()
    for directory in directories:
        write_atomically(join(directory, AUDIT_DIR, REPORT_JSON), data)
        write_atomically(join(directory, AUDIT_DIR, REPORT_HTML), page)


# ---------------------------------------------------------------------------
# Pure views of a report (what the HTML shows), testable without Beam

REMOVAL_COUNTERS = {  # counter -> reason (as in the removed records); read/bad.* by name
    "dedup/duplicates_removed": "dedup.exact_duplicate",
    "near_dedup/near_duplicates_removed": "near_dedup.near_duplicate",
}


def removal_reasons(values: dict[str, int]) -> list[dict]:
    """Documents not written, by reason: ``[{"reason", "counter", "documents"}]``.

    One row per reason, each removed document under exactly one: bad lines
    (``read/bad.<reason>``), filter drops (``filters/<filter>/dropped.<rule>``
    -> reason ``<filter>.<rule>``, the ``reason`` of the removed records;
    sampling included), exact and near duplicates (``dedup.exact_duplicate``,
    ``near_dedup.near_duplicate``) and any step that counts
    ``dropped_<reason>``; zero counts left out, largest first.
    """
    rows = []
    for name, value in values.items():
        if name in REMOVAL_COUNTERS:
            reason = REMOVAL_COUNTERS[name]
        elif name.startswith("filters/") and "/dropped." in name:
            filter_name, rule = name[len("filters/"):].rsplit("/dropped.", 1)
            reason = f"{filter_name}.{rule}"
        elif name.startswith("read/bad."):
            reason = f"bad line: {name[len('read/bad.'):]}"
        elif name.rsplit("/", 1)[-1].startswith("dropped_"):
            reason = f"{name.split('/')[0]}: {name.rsplit('/', 1)[-1][len('dropped_'):]}"
        else:
            continue
        if value:
            rows.append({"reason": reason, "counter": name, "documents": value})
    return sorted(rows, key=lambda r: (-r["documents"], r["reason"]))


def dead_letter_reasons(values: dict[str, int]) -> list[dict]:
    """``[{"reason", "lines"}]`` from the ``read/bad.<reason>`` counters, largest first."""
    rows = [{"reason": name[len("read/bad."):], "lines": value}
            for name, value in values.items() if name.startswith("read/bad.") and value]
    return sorted(rows, key=lambda r: (-r["lines"], r["reason"]))


def summary_rows(report: dict) -> list[tuple[str, str]]:
    """(label, value) rows of the summary table."""
    c = report.get("counters", {})
    v = report.get("versions", {})
    rows = [("job", report.get("job")),
            ("beam-dataprep", v.get("beam_dataprep")),
            ("Apache Beam", v.get("apache_beam")),
            ("Python", v.get("python")),
            ("runner", report.get("runner")),
            ("host", report.get("host")),
            ("started (UTC)", report.get("started_utc")),
            ("finished (UTC)", report.get("finished_utc")),
            ("wall seconds", _num(report.get("wall_seconds"))),
            ("CPU seconds", _num(report.get("cpu_seconds")))]
    read = [("lines read", c.get("read/lines")), ("bytes read", c.get("read/bytes")),
            ("documents read", c.get("read/records")),
            ("bad lines", sum(x["lines"] for x in dead_letter_reasons(c)) if c else None),
            ("rows stored", c.get("arrays/rows_stored")),
            ("documents stored", c.get("store/records")),
            ("shards", c.get("store/shards")),
            ("raw bytes stored", c.get("store/raw_bytes", c.get("arrays/raw_bytes"))),
            ("stored bytes", c.get("store/stored_bytes", c.get("arrays/stored_bytes")))]
    rows += [(k, _num(x)) for k, x in read if x is not None]
    raw = c.get("store/raw_bytes", c.get("arrays/raw_bytes"))
    stored = c.get("store/stored_bytes", c.get("arrays/stored_bytes"))
    if raw and stored:
        rows.append(("compression ratio", f"{raw / stored:.3f}"))
    if report.get("codec"):
        rows.append(("codec", report["codec"]))
    return [(k, "" if x is None else str(x)) for k, x in rows if x is not None]


def _num(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:,.3f}"
    return f"{value:,}"


def human_bytes(n) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def bar_chart(rows: list[tuple[str, float]], *, width: int = 640, bar: int = 22,
              label_width: int = 220, unit: str = "") -> dict:
    """Geometry of a horizontal bar chart: ``{"width", "height", "bars": [...]}``.

    Each bar: ``label``, ``value``, ``y``, ``w`` (pixels, proportional to the
    largest value), ``text`` (the value as shown).
    """
    top = max((v for _, v in rows), default=0) or 1
    span = width - label_width - 90
    bars = []
    for i, (label, value) in enumerate(rows):
        bars.append({"label": str(label), "value": value, "y": 6 + i * (bar + 6),
                     "w": max(1.0, round(span * value / top, 1)) if value else 0.0,
                     "text": (f"{value:,}" if isinstance(value, int) else f"{value:,.3f}") + unit})
    return {"width": width, "height": 12 + len(rows) * (bar + 6), "bar": bar,
            "label_width": label_width, "bars": bars}


def strip_chart(groups: list[dict], *, width: int = 640, row: int = 28,
                label_width: int = 160) -> dict:
    """Geometry of a strip plot: one row per partition, one tick per shard at its raw size.

    ``groups``: ``[{"partition", "raw_bytes": [...]}]``.  The axis runs from 0
    to the largest shard; each row also marks the mean.
    """
    top = max((max(g["raw_bytes"]) for g in groups if g["raw_bytes"]), default=0) or 1
    span = width - label_width - 50  # room for the last axis label
    rows = []
    for i, group in enumerate(groups):
        sizes = group["raw_bytes"]
        mean = sum(sizes) / len(sizes) if sizes else 0
        rows.append({"partition": group["partition"], "y": 8 + i * row,
                     "ticks": [{"x": label_width + round(span * s / top, 1), "bytes": s}
                               for s in sizes],
                     "mean_x": label_width + round(span * mean / top, 1),
                     "shards": len(sizes), "min": min(sizes, default=0),
                     "max": max(sizes, default=0), "mean": round(mean, 1)})
    axis = [{"x": label_width + round(span * f, 1), "text": human_bytes(top * f)}
            for f in (0, 0.25, 0.5, 0.75, 1.0)]
    return {"width": width, "height": 30 + len(groups) * row, "row": row,
            "label_width": label_width, "rows": rows, "axis": axis,
            "axis_y": 14 + len(groups) * row}


def _codec_rows(report: dict) -> tuple[list[str], list[dict]]:
    """Columns and rows of the codec table: the candidates of --codec auto, or the one codec."""
    choice = report.get("codec_choice")
    if choice and choice.get("candidates"):
        columns = [k for k in choice["candidates"][0] if k not in ("codec", "describe")]
        rows = [{"codec": r["codec"], "chosen": r["codec"] == choice.get("chosen"),
                 "cells": [_cell(r.get(k)) for k in columns]} for r in choice["candidates"]]
        return columns, rows
    c = report.get("counters", {})
    raw = c.get("store/raw_bytes", c.get("arrays/raw_bytes"))
    stored = c.get("store/stored_bytes", c.get("arrays/stored_bytes"))
    if not report.get("codec"):
        return [], []
    ratio = f"{raw / stored:.3f}" if raw and stored else ""
    return (["raw_bytes", "stored_bytes", "ratio"],
            [{"codec": report["codec"], "chosen": True,
              "cells": [_cell(raw), _cell(stored), ratio]}])


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _policy_text(policy) -> str | None:
    if isinstance(policy, dict):
        return ", ".join(f"{k} {v}" for k, v in policy.items())
    return policy


def view(report: dict) -> dict:
    """Everything the HTML template shows, computed from a report."""
    c = report.get("counters", {})
    removal = removal_reasons(c)
    clusters = report.get("near_dedup_cluster_sizes") or []
    cluster_rows = [(f"{r['min_size']}" if r["min_size"] == r["max_size"]
                     else f"{r['min_size']}-{r['max_size']}", r["clusters"]) for r in clusters]
    sizes = report.get("shard_sizes") or []
    stages = report.get("stages") or {}
    # a report written before PCollection-keyed rows were left out renders without them
    stage_rows = [r for r in stages.get("rows", [])
                  if not str(r.get("stage", "")).startswith(PCOLLECTION)]
    codec_columns, codec_rows = _codec_rows(report)
    return {
        "summary": summary_rows(report),
        "removal": removal,
        "removal_chart": bar_chart([(r["reason"], r["documents"]) for r in removal]),
        "clusters": clusters,
        "cluster_chart": bar_chart(cluster_rows, label_width=120),
        "near_dedup_ran": any(k.startswith("near_dedup/") for k in c),
        "shard_groups": sizes,
        "shard_chart": strip_chart(sizes) if sizes else None,
        "partitions": report.get("partitions") or [],
        "codec_columns": codec_columns,
        "codec_rows": codec_rows,
        "codec_policy": _policy_text((report.get("codec_choice") or {}).get("policy")),
        "dead_reasons": dead_letter_reasons(c),
        "dead_examples": (report.get("dead_letters") or {}).get("examples", []),
        "inputs": report.get("inputs"),
        "stages": stages,
        "stage_chart": bar_chart([(r["stage"], r["busy_seconds"]) for r in stage_rows],
                                 unit=" s"),
        "stage_rows": stage_rows,
        "beam_options": report.get("beam_options"),
        "config": report.get("config") or report.get("options"),
        "filters": report.get("filters"),
        "counters": c,
        "store": report.get("store") or [],
    }


def _environment():
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["bytes"] = human_bytes
    env.filters["num"] = lambda v: "" if v is None else _cell(v)
    env.filters["json"] = lambda v: exact_json.dumps(v).decode()
    return env


def render_html(report: dict) -> str:
    """The self-contained HTML page of a report: inline CSS and SVG, no script, no link."""
    return _environment().get_template("run_report.html.j2").render(
        report=report, v=view(report), title=f"{report.get('job', 'run')} run report")
