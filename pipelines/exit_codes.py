"""Exit statuses of every ``dataprep`` subcommand (and ``python -m pipelines.<job>``).

One table, the same for every subcommand (README, "Exit statuses"):

    0    done; verify-store: the committed generation verifies (warnings and
         "run in progress" lines do not count, except warnings under --strict)
    1    a run or check found a problem: a job failed (bad input data, a
         store gate, a held lock, a full disk), verify-store found a damaged
         manifest copy or replica (--strict: or a warning), report's JSON is
         not a run report
    2    usage: an unknown, abbreviated or missing flag; a bad flag value (ours
         or Beam's, on the command line or in a run config); a path given on
         the command line that names nothing (no store, no run report, an
         input matching no file, a run config not found)
    130  Ctrl-C (128 + SIGINT): one line, no traceback
    141  stdout closed early (``dataprep list | head -1``; 128 + SIGPIPE, what
         the shell reports for a process killed by SIGPIPE): no traceback

This module imports nothing heavy (no Beam), so ``dataprep --version`` and
``dataprep list`` use the same handling without paying for it.
"""
import difflib
import os
import select
import sys

OK, PROBLEM, USAGE, INTERRUPTED, BROKEN_PIPE = 0, 1, 2, 130, 141


def stdout_closed() -> bool:
    """Is the reader of our stdout gone (a pipe or socket whose other end closed)?

    ``poll`` reports POLLERR on the write end of a pipe with no reader left.
    Used to tell a closed stdout from a BrokenPipeError of any other pipe (a
    job server's socket), which is a failure like any other."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):   # a test's capture, a closed stream
        return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):    # pragma: no cover - no poll here
        return False


def exit_broken_pipe() -> None:
    """Leave quietly with status 141 once stdout's reader has gone.

    The standard handling (Python docs, "Note on SIGPIPE"): point stdout at
    /dev/null so the interpreter's own flush at exit cannot fail again (and
    print "Exception ignored ... BrokenPipeError"), then exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, ValueError, OSError):   # pragma: no cover
        pass
    try:
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):            # stderr went with it
        try:
            os.dup2(devnull, sys.stderr.fileno())
        except (AttributeError, ValueError, OSError):  # pragma: no cover
            pass
    sys.exit(BROKEN_PIPE)


def interrupted(prog) -> None:
    """Ctrl-C outside a pipeline run: one line on stderr (``<prog>: interrupted``), status
    130.  ``prog``: the program name the command's usage errors use, or a function
    returning it (asked now: a command learns its subcommand on the way)."""
    try:
        print(f"{prog() if callable(prog) else prog}: interrupted", file=sys.stderr)
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):            # pragma: no cover
        pass
    sys.exit(INTERRUPTED)


def guard(prog, main, argv=None):
    """Call ``main(argv)``; a closed stdout exits 141 and Ctrl-C exits 130, each
    without a traceback (``interrupted(prog)``).  stdout is flushed inside the guard
    (also when ``main`` exits with a status), so a reader that left early is noticed
    here and not at interpreter shutdown.  Every other outcome passes through
    unchanged."""
    try:
        try:
            return main(argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        if not stdout_closed():
            raise
        exit_broken_pipe()
    except KeyboardInterrupt:
        interrupted(prog)


def nearest(name: str, *candidate_lists) -> str | None:
    """What a mistyped ``name`` (a flag, a subcommand) most likely meant: a
    candidate that ``name`` abbreviates (the first list holding one; the closest
    there), else the candidate of every list most similar by ``difflib``'s
    ratio, leading dashes aside (at least 0.6; ties go to the earlier list);
    None when nothing is close."""
    for candidates in candidate_lists:
        longer = [c for c in candidates if c.startswith(name) and c != name]
        if longer:
            return difflib.get_close_matches(name, longer, 1, 0.0)[0]
    bare = name.lstrip("-")
    best, best_ratio = None, 0.6
    for candidates in candidate_lists:
        for candidate in sorted(candidates):
            ratio = difflib.SequenceMatcher(None, bare, candidate.lstrip("-")).ratio()
            if ratio > best_ratio or (best is None and ratio == best_ratio):
                best, best_ratio = candidate, ratio
    return best
