"""Run a command, measure wall time and peak RSS of its whole process tree."""
import resource
import statistics
import subprocess
import sys
import time

import psutil


def measure(cmd: list[str], poll_seconds: float = 0.1, env=None, watch_dir=None,
            timeline_seconds: float | None = None, cwd=None) -> dict:
    """Run ``cmd``; return wall seconds and the peak summed RSS of it and its children
    (and, with ``watch_dir``, the peak bytes of the files under that folder).

    ``cpu_s`` is the user + system CPU of the waited-for descendants;
    ``process_cpu_s`` maps each process of the tree (``pid:name``, the command
    process first) to its CPU seconds as last sampled (up to ``poll_seconds``
    short of its end), so the split of the work between worker processes shows.
    ``cwd``: the folder to run in (``python -m`` then imports that checkout's code).
    With ``timeline_seconds``, ``cpu_timeline`` lists ``[seconds since start,
    {process: CPU seconds so far}]`` every that many seconds.
    """
    start = time.perf_counter()
    cpu_before = _children_cpu()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd=cwd)
    root = psutil.Process(proc.pid)
    peak = peak_disk = 0
    polls = 0
    sampled: dict = {}
    timeline, next_mark = [], 0.0
    while proc.poll() is None:
        try:
            tree = [root] + root.children(recursive=True)
            peak = max(peak, sum(_rss(p) for p in tree))
            for p in tree:
                _sample_cpu(p, sampled)
        except psutil.NoSuchProcess:
            pass
        if timeline_seconds and time.perf_counter() - start >= next_mark:
            timeline.append([round(time.perf_counter() - start, 1),
                             {key: round(value, 2) for key, value in sampled.items()}])
            next_mark += timeline_seconds
        if watch_dir and polls % 5 == 0:
            peak_disk = max(peak_disk, folder_bytes(watch_dir))
        polls += 1
        time.sleep(poll_seconds)
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu_before
    output = proc.stdout.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{output[-3000:]}")
    result = {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak / 2**20, "output": output,
              "process_cpu_s": {key: round(value, 2) for key, value in sampled.items()}}
    if timeline_seconds:
        result["cpu_timeline"] = timeline
    if watch_dir:
        result["peak_disk_mb"] = max(peak_disk, folder_bytes(watch_dir)) / 2**20
    return result


def folder_bytes(path: str) -> int:
    """Bytes of the files under ``path`` (0 if it does not exist)."""
    import os
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass  # renamed or deleted while walking
    return total


def _children_cpu() -> float:
    """User + system CPU seconds of waited-for descendants (Beam waits for its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _sample_cpu(process, sampled: dict) -> None:
    try:
        times = process.cpu_times()
        sampled[f"{process.pid}:{process.name()}"] = times.user + times.system
    except psutil.Error:
        pass


def _rss(process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def median_run(cmd: list[str], repeats: int, before=None, watch_dir=None) -> dict:
    """Median wall time and the largest peak RSS over ``repeats`` runs."""
    runs = []
    for _ in range(repeats):
        if before:
            before()
        runs.append(measure(cmd, watch_dir=watch_dir))
        print(f"  {runs[-1]['wall_s']:.1f}s cpu {runs[-1]['cpu_s']:.1f}s {runs[-1]['peak_rss_mb']:.0f}MB  {' '.join(cmd[:4])}",
              file=sys.stderr)
    return {
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "walls": [round(r["wall_s"], 2) for r in runs],
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "output": runs[-1]["output"],
        **({"peak_disk_mb": max(r["peak_disk_mb"] for r in runs)} if watch_dir else {}),
    }
