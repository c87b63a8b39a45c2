"""Compare codecs on a sample and choose one by policy (``ChooseCodec``).

``compare_text`` / ``compare_arrays`` encode a sample with every candidate
codec and measure ratio, encode and decode speed (MB/s of raw data) and, for
lossy array codecs, the error.  ``ChooseCodec`` picks the highest ratio among
the codecs that meet ``max_error`` (conditions such as ``cosine>=0.999`` or
``abs<=1e-3``; without any, only lossless codecs qualify) and
``min_encode_mbps``; ties go to the faster encoder, then the name.
"""
import math
import operator
import re
import time

import numpy as np

from transforms.core.codecs import (
    EXACT, TEXT_CANDIDATES, applicable_array_codecs, array_codec, bytes_codec, decode_array)

METRICS = {"cosine": "cosine_mean", "cosine_mean": "cosine_mean", "cosine_min": "cosine_min",
           "abs": "max_abs", "max_abs": "max_abs", "rmse": "rmse",
           "top10": "top10_overlap", "top10_overlap": "top10_overlap"}
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
TIMING_KEYS = ("encode_mbps", "decode_mbps")


def parse_max_error(text: str | None) -> list[tuple[str, str, float]]:
    """``"cosine>=0.999,abs<=1e-3"`` -> [(metric, op, value)]; empty for None/""."""
    conditions = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        match = re.fullmatch(r"([a-z0-9_]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)", part)
        if not match or match.group(1) not in METRICS:
            raise ValueError(f"--max_error condition {part!r}: write METRIC>=X or METRIC<=X "
                             f"with METRIC one of {sorted(METRICS)}")
        conditions.append((METRICS[match.group(1)], match.group(2), float(match.group(3))))
    return conditions


def _mbps(nbytes: int, seconds: float) -> float:
    return round(nbytes / 1e6 / max(seconds, 1e-9), 1)


def _timed(function, repeats: int):
    """(result, best seconds of ``repeats`` runs): the machine is shared and noisy."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best


def compare_text(chunks: list[bytes], candidates=TEXT_CANDIDATES, repeats: int = 2) -> list[dict]:
    """Every bytes codec on sample chunks (each as one shard would be)."""
    raw = sum(len(c) for c in chunks)
    rows = []
    for spec in candidates:
        codec = bytes_codec(spec)
        stored, enc = _timed(lambda: [codec.encode(c) for c in chunks], repeats)
        back, dec = _timed(lambda: [codec.decode(s, len(c)) for s, c in zip(stored, chunks)],
                           repeats)
        if back != chunks:
            raise AssertionError(f"{codec.spec} did not round-trip the sample")
        size = sum(len(s) for s in stored)
        rows.append({"codec": codec.spec, "describe": codec.describe(), "lossless": True,
                     "raw_bytes": raw, "stored_bytes": size,
                     "ratio": round(raw / max(size, 1), 4),
                     "encode_mbps": _mbps(raw, enc), "decode_mbps": _mbps(raw, dec), **EXACT})
    return rows


def compare_arrays(blocks: list[np.ndarray], candidates=None, repeats: int = 2) -> list[dict]:
    """Every applicable array codec on sample blocks; lossy ones with measured error."""
    if not blocks:
        raise ValueError("no sample blocks to compare codecs on")
    candidates = candidates or applicable_array_codecs(blocks[0].dtype)
    raw = sum(b.nbytes for b in blocks)
    sample = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    rows = []
    for spec in candidates:
        codec = array_codec(spec)
        stored, enc = _timed(lambda: [codec.encode(b) for b in blocks], repeats)
        back, dec = _timed(lambda: [decode_array(s) for s in stored], repeats)
        if codec.lossless and [a.tobytes() for a in back] != [b.tobytes() for b in blocks]:
            raise AssertionError(f"{codec.spec} did not round-trip the sample")
        size = sum(len(s) for s in stored)
        metrics = codec.measure(sample)
        metrics.pop("rows_measured", None)
        rows.append({"codec": codec.spec, "describe": codec.describe(),
                     "lossless": codec.lossless, "raw_bytes": raw, "stored_bytes": size,
                     "ratio": round(raw / max(size, 1), 4), "encode_mbps": _mbps(raw, enc),
                     "decode_mbps": _mbps(raw, dec), **metrics})
    return rows


class ChooseCodec:
    """The policy: highest ratio within the error and speed limits."""

    def __init__(self, max_error: str | None = None, min_encode_mbps: float = 0.0):
        self.max_error = max_error or ""
        self.conditions = parse_max_error(max_error)
        self.min_encode_mbps = float(min_encode_mbps)

    def describe(self) -> dict:
        return {"max_error": self.max_error or "lossless only",
                "min_encode_mbps": self.min_encode_mbps}

    def rejects(self, row: dict) -> str:
        """Why a row does not qualify ("" if it does)."""
        if not row["lossless"] and not self.conditions:
            return "lossy (no --max_error given)"
        for metric, op, value in self.conditions:
            if not OPS[op](row[metric], value):
                return f"{metric} {row[metric]:.6g} fails {op}{value:g}"
        if row["encode_mbps"] < self.min_encode_mbps:
            return f"encodes at {row['encode_mbps']} MB/s < {self.min_encode_mbps:g}"
        return ""

    def choose(self, rows: list[dict]) -> dict:
        qualified = [r for r in rows if not self.rejects(r)]
        if not qualified:
            reasons = "; ".join(f"{r['codec']}: {self.rejects(r)}" for r in rows)
            raise ValueError(f"no codec meets the policy {self.describe()} ({reasons})")
        return min(qualified, key=lambda r: (-r["ratio"], -r["encode_mbps"], r["codec"]))


def choice_record(rows: list[dict], chosen: dict, policy: ChooseCodec,
                  with_timing: bool = True) -> dict:
    """What goes into a run report (with timings) or a manifest (without: deterministic)."""
    keep = [{k: v for k, v in r.items() if with_timing or k not in TIMING_KEYS} for r in rows]
    return {"policy": policy.describe(), "chosen": chosen["codec"], "candidates": keep}


def format_table(rows: list[dict], chosen: dict | None = None,
                 policy: ChooseCodec | None = None) -> str:
    headers = ["codec", "ratio", "enc MB/s", "dec MB/s", "max_abs", "rmse", "cos mean",
               "top10", "note"]
    lines = []
    for r in rows:
        note = ("<- chosen" if chosen is not None and r["codec"] == chosen["codec"]
                else (policy.rejects(r) if policy else ""))
        lines.append([r["codec"], f"{r['ratio']:.3f}", f"{r['encode_mbps']:.0f}",
                      f"{r['decode_mbps']:.0f}", f"{r['max_abs']:.3g}", f"{r['rmse']:.3g}",
                      f"{r['cosine_mean']:.6f}", f"{r['top10_overlap']:.3f}", note])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(out)


def sample_text(patterns, limit: int = 8 << 20) -> list[bytes]:
    """About ``limit`` bytes of whole lines from the start of each input file, as one
    chunk (about what a shard holds), for ``compare_text``."""
    from transforms.processing.io import expand_patterns, iter_lines, open_text_stream

    paths = expand_patterns(patterns)
    per_file = max(1, limit // len(paths))
    lines = []
    for path in paths:
        taken = 0
        with open_text_stream(path) as stream:
            for line in iter_lines(stream):
                if taken >= per_file:
                    break
                lines.append(line)
                taken += len(line) + 1
    return [b"".join(line + b"\n" for line in lines)]
