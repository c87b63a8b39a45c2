"""Runnable beam-dataprep jobs: ``python -m pipelines`` (or ``dataprep``) lists them.

Run as a program (``dataprep ...``, ``python -m pipelines[.<job>]``), a Ctrl-C
while the job's modules are still being imported (Beam takes seconds) prints
``<prog>: interrupted`` and exits 130 at once (``startup_interrupts``): there is
no run to cancel yet, nothing to delete, and no import is left half done to run
exit hooks.  ``cli.run_job`` (and ``dataprep``'s quick subcommands) take Ctrl-C
over from there."""
import os
import signal
import sys
import threading

COMMAND = "dataprep"
MODULE_COMMAND = "python -m pipelines"
QUICK = ("list", "beam-options", "--version")


def job_names() -> set[str]:
    """Every name a job may be given by on the ``dataprep`` command line (``prepare-corpus``,
    ``prepare_corpus``): the package's modules that define ``main``, found without
    importing them."""
    found = set()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in os.listdir(here):
        stem = name[:-3]
        if not name.endswith(".py") or name.startswith("_"):
            continue
        try:
            with open(os.path.join(here, name), encoding="utf-8") as f:
                if "\ndef main(" not in f.read():
                    continue
        except OSError:
            continue
        found.update((stem, stem.replace("_", "-")))
    return found


def startup_prog(argv=None, orig_argv=None) -> str:
    """The program name this process's usage errors use, from its command line alone:
    ``python -m pipelines.prepare_corpus``, ``dataprep prepare-corpus``, ``python -m
    pipelines prepare-corpus``, ``dataprep list``, ``dataprep`` or ``python -m
    pipelines``."""
    argv = sys.argv if argv is None else argv
    orig = list(getattr(sys, "orig_argv", argv) if orig_argv is None else orig_argv)
    command = COMMAND
    if "-m" in orig[1:] and orig.index("-m", 1) + 1 < len(orig):
        at = orig.index("-m", 1)
        module, rest = orig[at + 1], orig[at + 2:]
        if module not in ("pipelines", "pipelines.__main__"):
            return f"python -m {module}"
        command = MODULE_COMMAND
    else:
        rest = list(argv[1:])
    if rest and rest[0] in QUICK:
        return f"{command} {rest[0]}"
    if rest and rest[0] in job_names():
        return f"{command} {rest[0].replace('_', '-')}"
    return command


def started_as_command() -> bool:
    """This process is the ``dataprep`` command or ``python -m pipelines...``."""
    orig = list(getattr(sys, "orig_argv", ()))
    as_module = "-m" in orig[1:] and orig.index("-m", 1) + 1 < len(orig) and \
        orig[orig.index("-m", 1) + 1].split(".")[0] == "pipelines"
    return as_module or os.path.basename(sys.argv[0] if sys.argv else "") == COMMAND


def _interrupted_while_starting(signum, frame):
    try:
        line = f"{startup_prog()}: interrupted\n"
    except Exception:  # noqa: BLE001 - the line, whatever the command line holds
        line = f"{COMMAND}: interrupted\n"
    try:
        os.write(2, line.encode("utf-8", "replace"))
        warm = sys.modules.get("pipelines.warm_workers")   # started already (cli.run_job)
        if warm is not None:
            warm.close_pool(timeout=1.0, end_taken=True)   # no exit hook runs after this
    finally:
        os._exit(130)


def startup_interrupts() -> bool:
    """Install the start-up SIGINT handler when this process is the ``dataprep`` command
    or ``python -m pipelines...`` and Ctrl-C still has Python's default handler;
    True if installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if not started_as_command():
        return False
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    ignore_sigint_at_the_very_end()
    return True


_END = []


def ignore_sigint_at_the_very_end() -> None:
    """Register (once) the process's last exit hook: Ctrl-C ignored from there on.

    Python puts SIGINT's default back once the exit hooks have run, while the
    interpreter is torn down: a Ctrl-C then killed a finished run by the signal (status
    -2, no line).  Hooks run last-registered first, so this one runs last when it is
    registered before anything else (here, before the command imports Beam, pyarrow or
    logging, whose hooks then run with the job's own Ctrl-C handler: one line, 130);
    a SIG_IGN left in place is kept by the teardown.  ``cli.run_job`` registers it too
    for a job run by a host program's main thread."""
    if not _END:
        import atexit
        atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
        _END.append(True)


startup_interrupts()   # first: the imports below may already take a while

from transforms import __version__  # noqa: E402,F401 - written once, in transforms/__init__.py
# (importing transforms also drops Beam's "apitools not found" import warning)
