"""Start a command and press Ctrl-C on it, as a person at a shell does (shared by
tests/test_interrupts.py and tests/test_progress.py).

The command runs in its own process group, as a shell runs a foreground job, and
Ctrl-C is SIGINT to that whole group (what a terminal sends: the job's worker
processes get it too).  stdout is a pipe; stderr a pipe (the plain progress
form) or a pseudo-terminal (the live bar).
"""
import os
import pty
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str          # as written (a terminal's: with its escape sequences)
    interrupted: bool    # SIGINT was sent (False: the command ended first)

    def stderr_lines(self) -> list[str]:
        """stderr's lines as text: escape sequences removed, a line redrawn in place
        (``\\r``) split into its drawings, empty pieces dropped."""
        return [piece for piece in re.split(r"\r|\n", ANSI.sub("", self.stderr)) if piece.strip()]


class _Reader(threading.Thread):
    """Reads an fd to its end; ``seen`` is set once a line starting with ``wait_for`` came."""

    def __init__(self, fd: int, wait_for: str | None):
        super().__init__(daemon=True)
        self.fd, self.wait_for, self.chunks = fd, wait_for, []
        self.seen = threading.Event()
        if wait_for is None:
            self.seen.set()

    def run(self):
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:   # a pty whose other side closed
                break
            if not data:
                break
            self.chunks.append(data)
            if not self.seen.is_set():
                text = ANSI.sub("", b"".join(self.chunks).decode("utf-8", "replace"))
                if any(p.startswith(self.wait_for) for p in re.split(r"\r|\n", text)):
                    self.seen.set()
        self.seen.set()

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


def ctrl_c(proc: subprocess.Popen) -> None:
    """SIGINT to the process group of ``proc`` (a terminal's Ctrl-C)."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass


def interrupt_after(command, delay: float, *, env: dict, cwd=None, terminal: bool = False,
                    wait_for: str | None = None, timeout: float = 300) -> Outcome:
    """Run ``command``; ``delay`` seconds after it started (after a stderr line starting
    with ``wait_for`` appeared, if given) press Ctrl-C, unless it ended first; wait
    for it to end -> Outcome.  ``terminal``: stderr (and stdin) a pty of 120 columns,
    ``TERM=xterm``."""
    env = dict(env)
    if terminal:
        import fcntl
        import struct
        import termios
        controller, side = pty.openpty()
        fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        env["TERM"] = "xterm"
        env.pop("COLUMNS", None)
        proc = subprocess.Popen(command, stdin=side, stdout=subprocess.PIPE, stderr=side,
                                env=env, cwd=cwd, start_new_session=True)
        os.close(side)
        err = _Reader(controller, wait_for)
    else:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=cwd,
                                start_new_session=True)
        err = _Reader(proc.stderr.fileno(), wait_for)
    out = _Reader(proc.stdout.fileno(), None)
    err.start()
    out.start()
    try:
        err.seen.wait(timeout)
        deadline = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        interrupted = proc.poll() is None
        if interrupted:
            ctrl_c(proc)
        proc.wait(timeout)
        out.join(timeout)
        err.join(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if terminal:
            os.close(controller)
    return Outcome(proc.returncode, out.text(), err.text(), interrupted)
