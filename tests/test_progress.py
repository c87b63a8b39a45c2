"""The progress display, quiet logs and Ctrl-C, as a person at a terminal (or CI) sees them.

The job runs as a separate process (``python -m pipelines.prepare_corpus``),
under a pseudo-terminal for the live display and with stderr on a pipe for
the plain form.
"""
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import orjson
import pytest

from pipelines import progress, prepare_corpus
from transforms.processing import live

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PLAIN = re.compile(r"^prepare_corpus \d+:\d\d:\d\d stage=\S+ documents=[\d,]+ "
                   r"read=[\d.]+ (B|KiB|MiB)/[\d.]+ (B|KiB|MiB) \(\d+%\) rate=")


def env(**extra):
    out = dict(os.environ, PYTHONPATH=ROOT, **extra)
    out.pop("DATAPREP_RUN_CONFIG", None)  # the default runner: these tests are about the display
    return out


def job(tmp_path, *flags, run_config="direct"):
    return [sys.executable, "-m", "pipelines.prepare_corpus", "--run_config", run_config,
            "--output_roots", str(tmp_path / "a"), *flags]


def test_plain_line_numbers():
    snap = progress.Snapshot(documents=12_000, bytes=1 << 20, stage="Read")
    assert progress.plain_line("job", snap, 10.0, 4 << 20) == (
        "job 0:00:10 stage=Read documents=12,000 read=1.0 MiB/4.0 MiB (25%) "
        "rate=102.4 KiB/s eta=0:00:30")
    # counters last grew at 0:00:08: the rate is of those 8 s, the ETA less the 2 s since
    assert progress.plain_line("job", snap, 10.0, 4 << 20, read_elapsed=8.0) == (
        "job 0:00:10 stage=Read documents=12,000 read=1.0 MiB/4.0 MiB (25%) "
        "rate=128.0 KiB/s eta=0:00:22")
    assert progress.plain_line("job", progress.Snapshot(0, 0, None), 0.0, None) == (
        "job 0:00:00 stage=starting documents=0 read=0 B rate=0 B/s")


def _bar_text(display):
    import io

    from rich.console import Console
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(display.progress.get_renderable())
    return out.getvalue().strip()


def test_rich_bar_shows_the_plain_lines_numbers_and_a_running_clock():
    """The terminal bar's rate, ETA and clock are the plain line's: the clock is the
    run's (it does not stop when every byte is read while later stages run), the ETA
    is of the read and goes once all is read."""
    import io
    display = progress.RichDisplay("job", io.StringIO(), 4 << 20, width=200)
    try:
        display.update(progress.Snapshot(12_000, 1 << 20, "Read"), 10.0)
        assert re.search(r"job .* 1\.0/4\.0 MiB +102\.4 KiB/s +12,000 docs +0:00:10 +"
                         r"eta 0:00:30 Read$", _bar_text(display)), _bar_text(display)
        display.update(progress.Snapshot(24_000, 4 << 20, "Read"), 40.0)
        # read done at 0:00:40; the rate holds (4 MiB / 40 s) while later stages run
        display.update(progress.Snapshot(24_000, 4 << 20, "NearDedup"), 75.0)
        # the ETA's column stays, blank, once the read is done
        assert re.search(r"job .* 4\.0/4\.0 MiB +102\.4 KiB/s +24,000 docs +0:01:15 {14}"
                         r"NearDedup$", _bar_text(display)), _bar_text(display)
    finally:
        display.progress.stop()


def test_stage_label_of_direct_and_portable_step_names():
    assert progress.stage_label("Read/ParseLines/ParDo(_ReadJsonlFile)") == "Read"
    assert progress.stage_label(
        "ref_AppliedPTransform_Read-ParseLines-ParDo-_ReadJsonlFile-_9") == "Read"
    assert progress.stage_label("ref_AppliedPTransform_Store_304") == "Store"
    assert progress.stage_label("NearDedup") == "NearDedup"
    # inside the whole-job composite: the step within it
    assert progress.stage_label("PrepareCorpus/Read/ScanFiles") == "Read"
    assert progress.stage_label(
        "ref_AppliedPTransform_PrepareCorpus-NearDedup-Lsh-StarEdges_41") == "NearDedup"
    assert progress.stage_label("PrepareCorpus") == "PrepareCorpus"


def test_tally_sums_bundles_and_follows_the_stage():
    tally = progress.Tally()
    tally.add("read/records", 5, "Read/ParseFiles")
    tally.add("read/bytes", 100, "Read/ParseFiles")
    tally.add("read/records", 7, "Read/ParseFiles")
    tally.add("dedup/kept", 3, "ExactDedup/Keep")
    assert tally.snapshot() == progress.Snapshot(12, 100, "ExactDedup")


def _infos(docs, step):
    from apache_beam.metrics import monitoring_infos as mi
    return [mi.int64_user_counter("dataprep.read", "records", docs, ptransform=step),
            mi.int64_user_counter("other.ns", "records", 99, ptransform=step)]


class FakeCache:
    """A BundleProcessorCache's shape, as far as the tap reads it."""

    def __init__(self):
        self.active_bundle_processors = {}


def test_counter_tap_sums_finished_and_running_bundles():
    """CounterTap.read(): bundles released plus the running ones', the step that moved;
    a bundle is counted exactly once across its release."""
    import types

    running = {"docs": 5}
    processor = types.SimpleNamespace(monitoring_infos=lambda: _infos(
        running["docs"], "ref_AppliedPTransform_PrepareCorpus-NearDedup-Sign_12"))
    done = types.SimpleNamespace(monitoring_infos=lambda: _infos(
        100, "ref_AppliedPTransform_PrepareCorpus-Read-ScanFiles_9"))
    cache = FakeCache()
    cache.active_bundle_processors = {"bundle-1": ("d1", done), "bundle-2": ("d2", processor)}
    tap = live.CounterTap()
    tap.attach(cache)
    tap.attach(cache)   # once only
    released = []

    def release(c, instruction):
        released.append(instruction)
        c.active_bundle_processors.pop(instruction)

    assert tap.read()[0] == {"read/records": 105}
    tap._on_release(cache, "bundle-1", release)
    assert released == ["bundle-1"]
    totals, step = tap.read()
    assert totals == {"read/records": 105}    # counted once: finished now, not running
    assert step == "ref_AppliedPTransform_PrepareCorpus-Read-ScanFiles_9"
    running["docs"] = 9
    assert tap.read() == ({"read/records": 109},
                          "ref_AppliedPTransform_PrepareCorpus-NearDedup-Sign_12")
    tap._on_release(cache, "bundle-2", release)
    assert tap.read()[0] == {"read/records": 109}


def test_counter_tap_reads_a_real_harness_in_this_process():
    """LOOPBACK's case: an SDK harness created inside ``installed()`` is tapped."""
    from apache_beam.runners.worker import sdk_worker
    cls = sdk_worker.BundleProcessorCache
    original = cls.__init__, cls.release
    tap = live.CounterTap()
    with tap.installed():
        cache = cls(frozenset(), None, None, {})
    assert [ref() for ref in tap._caches] == [cache]
    assert (cls.__init__, cls.release) == original   # removed after the run
    cache.shutdown()


def test_live_counters_travel_from_workers_to_the_receiver():
    """Datagrams of two worker processes are summed; a stale or foreign one is dropped."""
    with live.Receiver(host="127.0.0.1") as receiver:
        token = receiver.token
        receiver.take(live.Datagram(token, "w1", 2, {"read/records": 10}, "s1").encode())
        receiver.take(live.Datagram(token, "w1", 1, {"read/records": 3}, "s0").encode())
        receiver.take(live.Datagram(token, "w2", 1, {"read/records": 5, "read/bytes": 7},
                                    "s2").encode())
        receiver.take(live.Datagram("other-run", "w3", 1, {"read/records": 1000},
                                    "x").encode())
        receiver.take(b"not json")
        assert receiver.read() == ({"read/records": 15, "read/bytes": 7}, "s2")
        # over the wire, from a sender in this process
        tap = live.CounterTap()
        cache = FakeCache()
        import types
        cache.active_bundle_processors = {"b": ("d", types.SimpleNamespace(
            monitoring_infos=lambda: _infos(4, "ref_AppliedPTransform_Read_3")))}
        tap.attach(cache)
        live._Sender(receiver.address, tap, base={})
        deadline = time.monotonic() + 20
        while receiver.workers < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.read() == ({"read/records": 19, "read/bytes": 7},
                                   "ref_AppliedPTransform_Read_3")


def test_tally_merge_max_and_job_state():
    tally = progress.Tally()
    tally.job_state = "RUNNING"
    assert tally.snapshot() == progress.Snapshot(0, 0, "RUNNING")
    tally.replace({"read/records": 3}, None)
    tally.merge_max({"read/records": 7, "read/bytes": 70}, "Read")
    tally.merge_max({"read/records": 5}, None)
    assert tally.snapshot() == progress.Snapshot(7, 70, "Read")


def run_under_a_terminal(command, columns=160):
    """Run ``command`` with stderr on a pty of ``columns`` columns (its window size, as a
    terminal sets it; no $COLUMNS) -> (return code, stdout bytes, screen text)."""
    import fcntl
    import struct
    import termios
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environment = env(TERM="xterm")
    environment.pop("COLUMNS", None)
    proc = subprocess.Popen(command, stdin=terminal, stdout=subprocess.PIPE,
                            stderr=terminal, env=environment, close_fds=True)
    os.close(terminal)
    chunks = []
    while True:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if ready:
            try:
                data = os.read(controller, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    stdout, _ = proc.communicate(timeout=600)
    os.close(controller)
    return proc.returncode, stdout, b"".join(chunks).decode("utf-8", "replace")


def bar_frames(screen):
    """The progress bar's frames as ``(documents, stage)``, in the order drawn."""
    frames = [ANSI.sub("", f) for f in re.split(r"\r|\x1b\[2K|\x1b\[1A", screen)]
    out = []
    for frame in frames:   # the job's name is the first column dropped on a narrow terminal
        m = re.search(r"(?:^| )([\d,]+) docs\b.* (\S+)\s*$", frame)
        if m:
            out.append((int(m.group(1).replace(",", "")), m.group(2)))
    return out


JOB_STATES = {"STARTING", "RUNNING", "STOPPED", "UNSPECIFIED"}


@pytest.mark.standalone_cluster
@pytest.mark.cross_runner
def test_progress_while_the_job_runs_on_every_runner(tmp_path, run_config, runner_services):
    """Live numbers on every runner (README, 'Watching a run'): frames drawn before
    the job is done already show the 397 documents read, next to a stage of the
    job (not just the job state), also where the SDK workers run in other
    processes (flink_cluster, spark_cluster: their totals come over
    ``transforms.processing.live``); the numbers never go back and the last
    line is the final count."""
    code, stdout, screen = run_under_a_terminal(job(tmp_path, run_config=run_config))
    assert code == 0, screen
    frames = bar_frames(screen)
    assert frames[0] == (0, "starting")
    running = frames[:-1]   # the last frame is drawn after the job is done
    stages = {stage for docs, stage in running if docs == 397}
    assert stages - JOB_STATES - {"starting"}, frames
    docs = [d for d, _ in frames]
    assert docs == sorted(docs) and docs[-1] == 397
    last = ANSI.sub("", screen).strip().splitlines()[-1]
    assert re.fullmatch(r"prepare_corpus done in [\d.]+s: 397 documents, 208\.9 KiB read", last)
    assert "Traceback" not in screen and b"store: " in stdout


def screen_lines(screen):
    """What a terminal shows, line by line as drawn: the text between line feeds,
    carriage returns and cursor moves, without colour codes."""
    return [ANSI.sub("", part) for part in re.split(r"\r|\n|\x1b\[\d*[ABCDGK]", screen)]


@pytest.mark.parametrize("columns", [30, 80, 120])
def test_the_bar_fits_the_terminal_width(tmp_path, columns):
    """On a terminal of 30, 80 and 120 columns no drawn line is wider than the
    terminal (a wrapped bar makes the live display scroll), the bar is one line
    (rich never moves the cursor up to redraw), and it still shows the numbers."""
    from rich.cells import cell_len
    returncode, stdout, screen = run_under_a_terminal(job(tmp_path), columns=columns)
    assert returncode == 0, screen
    widths = [cell_len(line) for line in screen_lines(screen)]
    assert max(widths) <= columns, [line for line in screen_lines(screen)
                                    if cell_len(line) > columns]
    assert "\x1b[1A" not in screen   # a one-line display
    docs = [d for d, _ in bar_frames(screen)]
    assert docs[0] == 0 and docs[-1] == 397
    flat = " ".join(ANSI.sub("", screen).split())   # the summary wraps at 30 columns
    assert re.search(r"prepare_corpus done in [\d.]+s: 397 documents, 208\.9 KiB read$", flat)
    if columns >= 80:   # the bytes read, of the total, are among the first columns kept
        assert re.search(r"\d+(\.\d)?/208\.9 KiB", ANSI.sub("", screen))
        assert re.search(r" \d+:\d\d:\d\d ", ANSI.sub("", screen))    # the elapsed time
        assert re.search(r" [\d.]+ (B|KiB)/s ", ANSI.sub("", screen))    # the rate


def _pty_frames(monkeypatch, columns, total, snaps, unit="documents", job="prepare_corpus",
                term="xterm-256color"):
    """Draw a ``RichDisplay`` on a pty of ``columns`` columns (as on a terminal: its
    window size, $TERM) with each ``(snapshot, elapsed)`` in turn, a frame forced
    after each -> the raw frames (ANSI codes kept), one per redraw."""
    import fcntl
    import struct
    import termios
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("COLORTERM", raising=False)
    monkeypatch.setenv("TERM", term)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    stream = open(terminal, "w", encoding="utf-8", closefd=True)
    chunks = []

    def drain():
        while select.select([controller], [], [], 0.05)[0]:
            chunks.append(os.read(controller, 65536))

    display = progress.RichDisplay(job, stream, total, unit)
    try:
        for snap, elapsed in snaps:
            display.update(snap, elapsed)
            display.progress.refresh()
            drain()
    finally:
        display.progress.stop()
        drain()
        stream.close()
        os.close(controller)
    screen = b"".join(chunks).decode("utf-8", "replace")
    # a frame shows the count (the job's name goes first on a narrow terminal)
    return [f for f in re.split(r"\r|\n|\x1b\[2K|\x1b\[1A", screen)
            if re.search(r"\S " + progress.unit_label(unit) + r"\b", ANSI.sub("", f))]


BAR = re.compile("[\u2501\u2578\u257a]+")   # the bar's cells: ━ ╸ ╺


def _growing_run(total):
    """Snapshots of a run whose numbers grow by orders of magnitude, with stages of
    every length and an ETA that comes and goes."""
    stages = ["starting", "Read", "ExactDedup", "SamplePerPartition", "Store", "Read"]
    snaps = [(progress.Snapshot(0, 0, None), 0.0)]
    for i, docs in enumerate([9, 99, 999, 9_999, 99_999, 999_999, 1_234_567, 98_765_432]):
        done = min(total, total * (i + 1) // 8)
        snaps.append((progress.Snapshot(docs, done, stages[i % len(stages)]), 3.0 * 4 ** i))
    snaps.append((progress.Snapshot(123_456_789, total, "Store", missing=0), 90_000.0))
    return snaps


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_the_bar_keeps_one_width_and_fits_under_a_pty(monkeypatch, columns):
    """Frames drawn on a terminal while the counts grow from 0 to over 100 million,
    the stage changes (4 to 18 letters), the ETA appears and goes and the rate grows
    from nothing: the bar (when the width has room for it) has the same cells and
    starts at the same column in every frame, and no frame is wider than the
    terminal."""
    from rich.cells import cell_len
    total = 208_900 * 1024
    frames = _pty_frames(monkeypatch, columns, total, _growing_run(total))
    plain = [ANSI.sub("", f) for f in frames]
    assert len(plain) >= 10, plain
    assert max(cell_len(p) for p in plain) <= columns, plain
    bars = {m and m.span() for p in plain for m in [BAR.search(p)]}
    assert len(bars) == 1, (bars, plain)   # one place, one width for the whole run
    bar = bars.pop()
    if columns >= 120:   # room for one (60, 80: none, in any frame)
        assert bar is not None and bar[1] - bar[0] >= progress.BAR_MIN, plain
    # the numbers are right-aligned in fixed columns: the counts end at the same cell
    # in every frame
    assert len({p.index(" docs") for p in plain}) == 1, plain
    assert re.search(r" 123M docs", plain[-1]), plain[-1]


@pytest.mark.parametrize("term", ["xterm", "xterm-256color"])
def test_a_partly_filled_bar_colours_its_filled_part(monkeypatch, term):
    """Under a terminal (16 colours: TERM=xterm, as the pty tests run; and 256) the
    filled part of the bar has a colour of its own, not the grey of the part still to
    go, and a full bar a third one: the ANSI codes in front of each part differ (under
    TERM=xterm rich's default styles drew a full bar in the grey of an empty one)."""
    total = 1 << 20
    snaps = [(progress.Snapshot(0, 0, "Read"), 0.5),
             (progress.Snapshot(10, total * 3 // 8, "Read"), 1.0),
             (progress.Snapshot(20, total, "Read"), 2.0)]
    frames = _pty_frames(monkeypatch, 120, total, snaps, term=term)
    part = re.compile("(\x1b\\[[0-9;]*m)([\u2501\u2578\u257a]+)")

    def styles(shown):   # the style code in front of each run of the bar, in one frame
        frame = [f for f in frames if shown in ANSI.sub("", f)][-1]
        return [codes for codes, _ in part.findall(frame)]

    empty, partly, full = styles(" 0.0/1.0 MiB"), styles(" 0.4/1.0 MiB"), styles(" 1.0/1.0 MiB")
    assert len(empty) == 1 and len(full) == 1, (empty, full)
    to_go, filled = empty[0], partly[0]
    assert partly[-1] == to_go and len(set(partly)) == 2, partly   # filled, then to go
    assert len({to_go, filled, full[0]}) == 3, (to_go, filled, full)
    assert to_go == "\x1b[90m"   # grey (bright black) in 16 and 256 colours alike


def test_count_and_read_texts_have_fixed_widths():
    assert [progress.count_text(n) for n in (0, 397, 999_999, 1_000_000, 1_234_567,
                                             9_996_000, 45_600_000, 999_400_000, 999_600_000,
                                             12 * 10 ** 12)] == [
        "0", "397", "999,999", "1.00M", "1.23M", "10.0M", "45.6M", "999M", "1.00G", "12.0T"]
    assert all(len(progress.count_text(n)) <= progress.COUNT_CELLS
               for n in [10 ** k - 1 for k in range(1, 19)] + [10 ** k for k in range(19)])
    assert progress.read_text(0, 4 << 20) == "0.0/4.0 MiB"
    assert progress.read_text(1 << 20, 4 << 20) == "1.0/4.0 MiB"
    assert progress.read_text(512, 900) == "512/900 B"
    assert progress.read_text(1536, None) == "1.5 KiB"
    total = 208_900
    widths = {len(progress.read_text(done, total)) for done in range(0, total + 1, 997)}
    assert widths == {len(progress.read_text(total, total))} or max(widths) == len(
        progress.read_text(total, total))
    assert progress.reserved_widths("prepare_corpus", 4 << 20) == {
        "job": 14, "read": 11, "rate": 12, "documents": 12, "elapsed": 8, "eta": 12,
        "stage": 10}
    assert progress.reserved_widths("verify_store", None, "replicas")["eta"] == 0


def test_fit_columns_drops_the_least_important_first():
    """As the width shrinks: the job's name goes first, then the bar, the elapsed
    time, the ETA, the rate, the bytes read, the documents; the stage always stays,
    with at least its reservation while anything else is shown."""
    widths = {"job": 14, "read": 15, "rate": 12, "documents": 12, "stage": 10, "elapsed": 8,
              "eta": 12}
    text = {n: w + 1 for n, w in widths.items()}   # with the space after it
    everything = list(progress.BAR_COLUMNS)
    full = sum(text.values())                       # 90 cells of text, the bar's space too
    assert progress.fit_columns(widths, 200) == (everything, progress.BAR_MAX)
    assert progress.fit_columns(widths, 120) == (everything, 120 - full)
    assert progress.fit_columns(widths, full + progress.BAR_MIN) == (everything,
                                                                     progress.BAR_MIN)
    no_job = everything[1:]
    assert progress.fit_columns(widths, full + 9) == (no_job, full + 9 - full + text["job"])
    assert progress.fit_columns(widths, 80) == (
        ["read", "rate", "documents", "elapsed", "eta", "stage"], 0)
    assert progress.fit_columns(widths, 70) == (["read", "rate", "documents", "eta", "stage"], 0)
    assert progress.fit_columns(widths, 60) == (["read", "rate", "documents", "stage"], 0)
    assert progress.fit_columns(widths, 45) == (["read", "documents", "stage"], 0)
    assert progress.fit_columns(widths, 30) == (["documents", "stage"], 0)
    assert progress.fit_columns(widths, 20) == (["stage"], 0)
    assert progress.fit_columns(widths, 5) == (["stage"], 0)
    # a column of no width (no ETA without a total) is not shown
    assert progress.fit_columns({**widths, "eta": 0}, 80) == (
        ["bar", "read", "rate", "documents", "elapsed", "stage"], 80 - 57 - 5)
    # the same widths, the same columns: the widths are fixed for a run
    fixed = progress.reserved_widths("prepare_corpus", 208_900)
    assert progress.fit_columns(fixed, 80)[0] == [
        "read", "rate", "documents", "elapsed", "eta", "stage"]


@pytest.mark.parametrize("columns, shown, gone", [
    (120, ["prepare_corpus", "━", "100.0/200.0 KiB", "20.0 KiB/s", "199 docs", "0:00:05",
           "eta 0:00:05", "ExactDedup"], []),
    (80, ["100.0/200.0 KiB", "20.0 KiB/s", "199 docs", "0:00:05", "eta 0:00:05", "ExactDedup"],
     ["prepare_corpus", "━"]),
    (30, ["199 docs", "ExactDedup"], ["prepare_corpus", "━", "KiB", "0:00:05", "…"]),
])
def test_the_columns_a_terminal_width_shows(monkeypatch, columns, shown, gone):
    """Under a pty of 120, 80 and 30 columns: every column at 120; at 80 the rate and
    the elapsed time with the counts and the ETA (the job's name and the bar gone);
    at 30 the documents and the stage's whole name."""
    total = 200 << 10
    snaps = [(progress.Snapshot(0, 0, None), 0.0),
             (progress.Snapshot(199, total // 2, "ExactDedup"), 5.0)]
    frames = [ANSI.sub("", f) for f in _pty_frames(monkeypatch, columns, total, snaps)]
    last = [f for f in frames if "199 docs" in f][-1]
    for text in shown:
        assert text in last, (text, last)
    for text in gone:
        assert text not in last, (text, last)
    from rich.cells import cell_len
    assert max(cell_len(f) for f in frames) <= columns, frames


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_rendered_bar_is_one_line_within_the_width(width):
    import io

    from rich.cells import cell_len
    from rich.console import Console
    display = progress.RichDisplay("prepare_corpus", io.StringIO(), 4 << 20, width=width)
    try:
        display.update(progress.Snapshot(1_234_567, 1 << 20, "SamplePerPartition"), 4000.0)
        out = io.StringIO()
        Console(file=out, width=width, color_system=None).print(
            display.progress.get_renderable())
    finally:
        display.progress.stop()
    lines = out.getvalue().rstrip("\n").split("\n")
    assert len(lines) == 1 and cell_len(lines[0]) <= width, lines
    assert "1.23M docs" in lines[0] or width < 45


def test_live_display_under_a_terminal(tmp_path):
    """Under a pty: a rich bar redrawn in place, the numbers move, and it ends cleanly."""
    returncode, stdout, screen = run_under_a_terminal(job(tmp_path))
    assert returncode == 0, screen
    frames = [ANSI.sub("", f) for f in re.split(r"\r|\x1b\[2K|\x1b\[1A", screen)]
    bars = [f for f in frames if "prepare_corpus" in f and "docs" in f]
    assert len(bars) >= 2, screen  # redrawn, not printed once
    docs = [int(m.group(1).replace(",", "")) for f in bars
            for m in [re.search(r"([\d,]+) docs", f)] if m]
    assert docs[0] == 0 and docs[-1] == 397  # the sample's 397 documents
    assert "\x1b[?25l" in screen and screen.rfind("\x1b[?25h") > screen.rfind("\x1b[?25l")
    last = ANSI.sub("", screen).strip().splitlines()[-1]
    assert re.fullmatch(r"prepare_corpus done in [\d.]+s: 397 documents, 208\.9 KiB read", last)
    assert "WARNING" not in screen and "INFO" not in screen and "Traceback" not in screen
    assert b"store: " in stdout
    # where to look next: the page, named once the run is done
    page = tmp_path / "a" / "corpus" / "_audit" / "run_report.html"
    assert f"\nreport: {page}  (".encode() in stdout and page.exists()


def test_plain_progress_lines_when_not_a_terminal(tmp_path, run_config):
    """On the configured runner: Direct's bundle tap, or a portable job's metrics polled."""
    proc = subprocess.run(job(tmp_path, run_config=run_config), capture_output=True, text=True,
                          timeout=600, env=env(DATAPREP_PROGRESS_INTERVAL="1"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "\x1b" not in proc.stderr
    assert len(lines) >= 3 and all(PLAIN.match(line) for line in lines[:-1]), lines
    documents = [int(re.search(r"documents=([\d,]+)", line).group(1).replace(",", ""))
                 for line in lines[:-1]]
    assert documents == sorted(documents) and documents[0] == 0
    assert re.fullmatch(r"prepare_corpus done in [\d.]+s: 397 documents, 208\.9 KiB read",
                        lines[-1])
    report = orjson.loads((tmp_path / "a" / "corpus" / "_audit" / "run_report.json").read_bytes())
    assert report["counters"]["read/records"] == 397


@pytest.mark.parametrize("status, last", [
    ("done", ["job 0:00:02 stage=Store documents=397 read=200.0 KiB/200.0 KiB (100%) "
              "rate=100.0 KiB/s", "job done in 2.0s: 397 documents, 200.0 KiB read"]),
    ("failed", ["job 0:00:02 stage=Store documents=397 read=200.0 KiB/200.0 KiB (100%) "
                "rate=100.0 KiB/s"]),
    ("interrupted", []),
])
def test_the_plain_display_ends_with_the_totals(status, last):
    """A run shorter than the interval: its first, all-zero line, then a line with the
    totals (done or failed), then the summary (done); an interrupted run's display
    ends where it was (its interrupted line follows alone)."""
    import io
    out = io.StringIO()
    display = progress.PlainDisplay("job", out, 200 << 10, interval=100.0)
    display.update(progress.Snapshot(0, 0, None), 0.0)
    display.update(progress.Snapshot(397, 200 << 10, "Store"), 2.0)   # within the interval
    display.close(progress.Snapshot(397, 200 << 10, "Store"), 2.0, status)
    assert out.getvalue().splitlines() == [
        "job 0:00:00 stage=starting documents=0 read=0 B/200.0 KiB (0%) rate=0 B/s"] + last


def test_a_short_run_on_a_pipe_ends_with_its_totals(tmp_path):
    proc = subprocess.run(job(tmp_path), capture_output=True, text=True, timeout=300,
                          env=env(DATAPREP_PROGRESS_INTERVAL="100"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 3 and all(PLAIN.match(line) for line in lines[:2]), lines
    assert " documents=0 " in lines[0]
    assert re.search(r" documents=397 read=208\.9 KiB/208\.9 KiB \(100%\) rate=", lines[1])
    assert re.fullmatch(r"prepare_corpus done in [\d.]+s: 397 documents, 208\.9 KiB read",
                        lines[2])


def test_log_level_info_lets_beam_logs_through(tmp_path):
    proc = subprocess.run(job(tmp_path, "--log_level", "info"), capture_output=True,
                          text=True, timeout=300, env=env(DATAPREP_PROGRESS_INTERVAL="100"))
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^INFO[: ]", proc.stderr, re.M)


def test_a_failure_is_printed_once_with_the_log_file(tmp_path):
    proc = subprocess.run(job(tmp_path, "--max_bad_fraction", "0"), capture_output=True,
                          text=True, timeout=300, env=env(DATAPREP_PROGRESS_INTERVAL="100"))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    message = ("prepare_corpus failed: not writing the manifest: 3 of 400 lines are bad "
               "(0.75%), above --max_bad_fraction 0")
    assert [line for line in lines if "lines are bad" in line] == [
        message + f"; see the dead letters in {tmp_path / 'a' / 'corpus' / '_audit' / 'last_run'}"]
    log = re.fullmatch(r"  \(full log: (\S+)\)", lines[-1]).group(1)
    with open(log, encoding="utf-8") as f:
        assert "Traceback" in f.read()  # the details are kept, not shown
    os.unlink(log)
    assert "Traceback" not in proc.stderr


def big_corpus(path, copies=60, distinct=False):
    """The sample with its ids made unique, ``copies`` times (about 24k lines).
    ``distinct``: each copy's words shuffled (seeded by the copy), so the copies are not
    near-duplicates of each other (near-dedup then has no 60-document clusters to verify)."""
    import random
    lines = open(prepare_corpus.SAMPLE, "rb").read().splitlines()
    with open(path, "wb") as f:
        for copy in range(copies):
            for n, line in enumerate(lines):
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(doc, dict):
                    doc["id"] = f"{copy}-{n}"
                    text = f"{doc.get('text')} copy {copy}"
                    if distinct and isinstance(doc.get("text"), str):
                        words = text.split()
                        random.Random(copy * 100_003 + n).shuffle(words)
                        text = " ".join(words)
                    doc["text"] = text
                f.write(orjson.dumps(doc) + b"\n")
    return str(path)


def test_ctrl_c_cancels_cleans_and_exits_130(tmp_path):
    from tests.interrupting import interrupt_after
    corpus = big_corpus(tmp_path / "big.jsonl")
    outcome = interrupt_after(job(tmp_path, "--input", corpus), 2.0,
                              wait_for="prepare_corpus 0:00:00",  # the display is up: running
                              env=env(DATAPREP_PROGRESS_INTERVAL="1"))
    lines = outcome.stderr.splitlines()
    assert outcome.interrupted and outcome.code == 130, lines
    # the progress lines, then the one line: no summary claiming what was read
    assert lines[-1] == ("python -m pipelines.prepare_corpus: interrupted; the job was "
                         "cancelled and its temporary files deleted")
    assert all(PLAIN.match(line) for line in lines[:-1]), lines
    dataset = tmp_path / "a" / "corpus"
    left = sorted(os.listdir(dataset)) if dataset.exists() else []
    assert not [n for n in left if n.startswith(("beam-temp-", ".tmp-", ".runs-"))], left
    assert "manifest.json" not in left


def test_descendants_finds_children_and_grandchildren():
    """What exit_interrupted ends before leaving (direct_multiprocess's SDK workers)."""
    child = subprocess.Popen([sys.executable, "-c",
                              "import subprocess, sys, time\n"
                              "g = subprocess.Popen(['sleep', '60'])\n"
                              "print(g.pid, flush=True)\n"
                              "time.sleep(60)\n"], stdout=subprocess.PIPE)
    try:
        grandchild = int(child.stdout.readline())
        found = progress.descendants(os.getpid())
        assert child.pid in found and grandchild in found
        assert found.index(child.pid) < found.index(grandchild)
        assert progress.descendants(grandchild) == []
    finally:
        os.kill(grandchild, signal.SIGTERM)
        child.kill()
        child.wait()


def test_a_refused_worker_pool_gets_a_hint():
    from apache_beam.options.pipeline_options import PipelineOptions
    external = PipelineOptions(["--runner", "FlinkRunner", "--environment_type", "EXTERNAL",
                                "--environment_config", "localhost:50000"])
    refused = RuntimeError("Pipeline BeamApp-1 failed in state FAILED: java.net.ConnectException: "
                           "finishConnect(..) failed: Connection refused")
    assert progress.worker_pool_hint(external, refused) == (
        "environment_type EXTERNAL: is an SDK worker pool running at localhost:50000, as seen "
        "from the runner's workers? Start one there with: python -m "
        "apache_beam.runners.worker.worker_pool_main --service_port=50000")
    assert progress.worker_pool_hint(external, RuntimeError("disk full")) is None
    loopback = PipelineOptions(["--runner", "FlinkRunner", "--environment_type", "LOOPBACK"])
    assert progress.worker_pool_hint(loopback, refused) is None


def test_ctrl_c_cancels_the_job_on_a_flink_cluster():
    """Beam's job server leaves a remote Flink job running after Cancel: the job of the
    interrupted run (its Beam job id's prefix) is cancelled through Flink's REST API,
    and the run waits for it to end; other jobs are left alone."""
    import http.server
    import json
    import threading

    from apache_beam.options.pipeline_options import PipelineOptions

    jobs = {"a1": {"jid": "a1", "name": "BeamApp-root-1-ab", "state": "RUNNING"},
            "b2": {"jid": "b2", "name": "BeamApp-root-2-cd", "state": "RUNNING"},
            "c3": {"jid": "c3", "name": "BeamApp-root-1-ab", "state": "FAILED"}}
    patched = []

    class Flink(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/jobs/overview":
                self._send({"jobs": list(jobs.values())})
            else:
                self._send(jobs[self.path.rsplit("/", 1)[1]])

        def do_PATCH(self):
            jid = self.path.split("/")[2].split("?")[0]
            patched.append(self.path)
            jobs[jid]["state"] = "CANCELED"
            self._send({})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        options = PipelineOptions(["--runner", "FlinkRunner",
                                   f"--flink_master=127.0.0.1:{server.server_port}"])
        assert progress.cancel_on_flink_cluster(options, "BeamApp-root-1-ab_9f8e-77") == ["a1"]
        assert patched == ["/jobs/a1?mode=cancel"]
        assert [j["state"] for j in jobs.values()] == ["CANCELED", "RUNNING", "FAILED"]
        local = PipelineOptions(["--runner", "FlinkRunner", "--flink_master=[local]"])
        assert progress.cancel_on_flink_cluster(local, "BeamApp-root-2-cd_1") == []
        assert progress.cancel_on_flink_cluster(options, None) == []
        assert patched == ["/jobs/a1?mode=cancel"]
    finally:
        server.shutdown()


def test_verify_store_shows_its_progress_and_reads_each_replica_once(tmp_path, monkeypatch,
                                                                     capsys):
    """verify-store (no pipeline: it reads every replica in this process) has the same
    display: replicas and bytes checked against the manifest's total, then one summary
    line; and each replica is read exactly once (no separate pass to choose the
    generation when only one is on the roots)."""
    from pipelines import verify_store as job
    from tests import store_faults as sf
    from transforms.storage import store

    roots = [str(tmp_path / n) for n in ("a", "b", "c")]
    sf.build(sf.TEXT, sf.text_input(tmp_path / "in.jsonl"), roots, 4)
    dataset = os.path.join(roots[0], "ds")
    manifest = store.load_manifest(dataset)
    replicas = sorted(path for shard in manifest["shards"]
                      for _, path in store.replica_paths(manifest, dataset, shard))
    total = sum(s["stored_bytes"] * len(s["replicas"]) for s in manifest["shards"])
    assert len(replicas) == 8 and store.replica_bytes(manifest) == total
    reads = []
    real_read = store.read_bytes
    monkeypatch.setattr(store, "read_bytes", lambda path: reads.append(path) or real_read(path))
    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 0.0)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        job.main(["--store", dataset])
    assert exit_info.value.code == 0
    assert sorted(p for p in reads if "shard-" in p) == replicas   # each once
    out, err = capsys.readouterr()
    assert out.rstrip().endswith("generation 1: 11 of 11 files ok (4 shards); 0 stray file(s); "
                                 "0 problem(s)")
    lines = err.splitlines()
    checked = [int(re.search(r" replicas=(\d+) ", line).group(1)) for line in lines[:-1]]
    assert checked and checked == sorted(checked) and checked[-1] <= 8
    assert all(re.match(r"verify_store \d+:\d\d:\d\d stage=verify replicas=\d+ read=", line)
               for line in lines[:-1]), lines
    assert re.fullmatch(rf"verify_store done in [\d.]+s: 8 replicas, "
                        rf"{re.escape(progress._human(total))} read", lines[-1])


def test_repair_store_shows_its_progress_then_verify_does(tmp_path, monkeypatch, capsys):
    from pipelines import verify_store as job
    from tests import store_faults as sf

    roots = [str(tmp_path / n) for n in ("a", "b")]
    sf.build(sf.TEXT, sf.text_input(tmp_path / "in.jsonl"), roots, 2)
    victim = sorted((tmp_path / "b" / "ds").glob("shard-*"))[0]
    victim.write_bytes(b"garbage")
    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 1e9)   # the summary lines only
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        job.main(["--store", str(tmp_path / "a" / "ds"), "--repair"])
    assert exit_info.value.code == 0
    out, err = capsys.readouterr()
    assert f"repair {victim.name} on {tmp_path / 'b'}: size_mismatch -> copied from " \
        f"{tmp_path / 'a'}" in out
    summaries = [line for line in err.splitlines() if " done in " in line]
    assert [s.split(" done in ")[0] for s in summaries] == ["repair_store", "verify_store"]
    assert all(re.search(r": 4 replicas, [\d.]+ KiB read$", s) for s in summaries), summaries


@pytest.mark.parametrize("direct_config", ["direct", "direct_multiprocess"])
def test_direct_runner_shows_documents_read_while_one_file_is_still_being_read(
        tmp_path, direct_config):
    """One file is one bundle of the scan: the numbers must move inside it (the running
    bundle's counters: the in-process worker's, or the worker processes' datagrams),
    not jump from 0 to the total when the file is done."""
    # copies that are not near-duplicates: near-dedup's verification of 60-document
    # clusters cost 5 minutes a run under CI's load and is not what is watched here
    # (the scan, which computes the signatures, is: slow enough to be seen moving)
    corpus = big_corpus(tmp_path / "big.jsonl", distinct=True)
    proc = subprocess.run(job(tmp_path, "--input", corpus, run_config=direct_config),
                          capture_output=True, text=True, timeout=600,
                          env=env(DATAPREP_PROGRESS_INTERVAL="0.2"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    documents = [int(re.search(r"documents=([\d,]+)", line).group(1).replace(",", ""))
                 for line in lines[:-1]]
    total = int(re.fullmatch(r"prepare_corpus done in [\d.]+s: ([\d,]+) documents, .* read",
                             lines[-1]).group(1).replace(",", ""))
    assert total == 23_880   # the sample's 398 documents, 60 times
    assert documents == sorted(documents) and documents[-1] <= total
    during = [d for d in documents if 0 < d < total]
    assert during, lines[:40]


def test_stop_job_servers_passes_over_dead_weak_proxies(tmp_path):
    """A dead ``weakref.proxy`` among the process's objects (boto3 keeps some) is not a
    job server: looking for Beam's job servers at the end of a run must not raise
    ReferenceError (it ended S3 runs as failures: 'weakly-referenced object no longer
    exists')."""
    import weakref

    import apache_beam.runners.portability.job_server  # noqa: F401 - what the search needs

    class Thing:
        pass

    thing = Thing()
    proxies = [weakref.proxy(thing)]
    del thing
    with pytest.raises(ReferenceError):
        isinstance(proxies[0], int)   # what the search did
    assert progress.stop_job_servers(str(tmp_path)) == 0


SECOND_CTRL_C = """
import os, signal, sys, time
from apache_beam.runners.portability import job_server
from pipelines import progress
if sys.argv[1] == "guarded":
    progress.guard_job_server_sigint()

class SlowToStop(job_server.JobServer):   # Prism's server takes a while to stop
    def start(self):
        return "localhost:0"
    def stop(self):
        os.kill(os.getpid(), signal.SIGINT)   # the second Ctrl-C, while it stops
        time.sleep(1)

signal.signal(signal.SIGINT, signal.default_int_handler)
server = job_server.StopOnExitJobServer(SlowToStop())
server.start()   # Beam's handler goes in
try:
    os.kill(os.getpid(), signal.SIGINT)   # the first Ctrl-C
    time.sleep(5)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_a_second_ctrl_c_while_a_job_server_stops_does_not_hang():
    """Beam's StopOnExitJobServer handler stops the server under a lock it takes again
    on a second Ctrl-C (the main thread waits for itself: Prism hung for ever); with
    ``guard_job_server_sigint`` the second one interrupts.  The unguarded run shows the
    Beam bug is still there (when it stops hanging, the guard can go)."""
    run = [sys.executable, "-c", SECOND_CTRL_C]
    proc = subprocess.run(run + ["guarded"], capture_output=True, text=True, timeout=60,
                          env=env())
    assert proc.stdout == "interrupted\n", proc.stderr
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(run + ["unguarded"], capture_output=True, timeout=15, env=env())
