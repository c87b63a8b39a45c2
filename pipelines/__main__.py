"""The ``dataprep`` command: one subcommand per job, plus ``list`` and ``beam-options``.

    dataprep list                          every subcommand, one line each
    dataprep prepare-corpus [FLAGS]        = python -m pipelines.prepare_corpus [FLAGS]
    dataprep verify-store --store DIR      = python -m pipelines.verify_store --store DIR
    dataprep beam-options                  every Beam PipelineOptions flag, with help
    dataprep --version

``python -m pipelines`` is the same command, and names itself so in its usage,
errors and listing (``python -m pipelines prepare-corpus: error: ...``).  A
subcommand is a job module's name with ``-`` for ``_``; its flags are exactly the
module's.
"""
import importlib
import pkgutil
import sys

import pipelines
from pipelines.exit_codes import USAGE, nearest

COMMAND = "dataprep"
MODULE_COMMAND = "python -m pipelines"   # the same command, run as a module

# the command's name as invoked (COMMAND, or MODULE_COMMAND): set by main
_NAME = [COMMAND]


def jobs() -> list[tuple[str, str]]:
    """(module name, first docstring line) of every module of ``pipelines`` with a ``main``."""
    found = []
    for info in pkgutil.iter_modules(pipelines.__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"pipelines.{info.name}")
        if callable(getattr(module, "main", None)):
            summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
            found.append((info.name, summary))
    return found


def subcommand(job: str) -> str:
    return job.replace("_", "-")


def names_of_jobs() -> set[str]:
    """Every name a job may be given by (``prepare-corpus``, ``prepare_corpus``), from the
    package's files alone (no import: ``pipelines.startup_prog``)."""
    import pipelines as package
    return package.job_names()


# the subcommands that are not jobs, with their one-line summaries
BUILT_IN = (("list", "The subcommands, one line each (this list)."),
            ("beam-options", "Every Beam pipeline option a job accepts, with help."))


def subcommands() -> list[tuple[str, str]]:
    """(subcommand, one-line summary) of every subcommand, in the order ``dataprep
    --help`` and ``dataprep list`` show them: the jobs (``jobs()``, by name), then
    ``list`` and ``beam-options``.  The one place that says what the subcommands are:
    the listing and an unknown subcommand's error both come from it."""
    return [(subcommand(name), summary) for name, summary in jobs()] + list(BUILT_IN)


def print_jobs(out=None) -> None:
    """Every subcommand (``subcommands()``), one line each, on ``out`` (default stdout)."""
    out = out or sys.stdout
    listed = subcommands()
    width = max(len(name) for name, _ in listed)
    print(f"subcommands (run a job with: {_NAME[0]} <job> --help, or python -m "
          "pipelines.<job> --help):", file=out)
    for name, summary in listed:
        print(f"  {name:<{width}}  {summary}", file=out)


def usage_line(name: str = COMMAND) -> str:
    return (f"usage: {name} {{{','.join(n for n, _ in BUILT_IN)},<job>}} [FLAGS]   "
            f"({name} list shows the subcommands; {name} --version)")


def summary(name: str = COMMAND) -> str:
    return (f"{name}: prepare training data with Apache Beam (dedup, filters, compression, "
            "a replicated sharded store)")


USAGE_LINE, SUMMARY = usage_line(), summary()


def main(argv=None, command: str = COMMAND) -> None:
    """The ``dataprep`` command (``command``: its name in usage, errors and the
    listing; ``python -m pipelines`` as a module); exit statuses as in
    ``pipelines.exit_codes`` (a closed stdout: 141, Ctrl-C: 130, usage: 2)."""
    from pipelines.exit_codes import guard
    _NAME[0] = _PROG[0] = command
    guard(lambda: _PROG[0], _main, argv)


# the program name of the usage errors (and of the interrupted line) as far as known:
# "dataprep", then "dataprep list", "dataprep prepare-corpus", ...
_PROG = [COMMAND]


def _keyboard_interrupts() -> None:
    """Ctrl-C raises KeyboardInterrupt (for ``guard``) instead of the start-up handler's
    immediate exit (``pipelines.startup_interrupts``); a job's ``cli.run_job`` does
    the same once the job's module is imported."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _refuse_extra(name: str, rest: list[str]) -> None:
    """A built-in takes no arguments; ``-h``/``--help`` alone prints its one-line help
    (its summary and usage) and exits 0, as a job's ``--help`` does."""
    if rest and rest[0] in ("-h", "--help") and len(rest) == 1:
        command = _NAME[0]
        about = dict(BUILT_IN).get(name, "Print the version of beam-dataprep.")
        print(f"usage: {command} {name}\n\n{about} Takes no arguments.")
        sys.exit(0)
    if rest:
        command = _NAME[0]
        print(f"{command} {name}: error: unrecognized argument{'s' if len(rest) > 1 else ''} "
              f"{' '.join(rest)} ({command} {name} takes none)", file=sys.stderr)
        sys.exit(USAGE)


def _main(argv=None) -> None:
    program = argv is None
    command = _NAME[0]
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in names_of_jobs():
        _keyboard_interrupts()   # no job module to import: the rest is quick
    if argv and argv[0] in ("list", "beam-options", "--version"):
        _PROG[0] = f"{command} {argv[0]}"
    if not argv or argv[0] in ("-h", "--help"):
        # with no argument: the same text, as an error (exit 2), as argparse does
        out = sys.stdout if argv else sys.stderr
        print(summary(command) + "\n\n" + usage_line(command) + "\n", file=out)
        print_jobs(out)
        if not argv:
            sys.exit(USAGE)
        return
    first, rest = argv[0], argv[1:]
    if first == "--version":
        _refuse_extra("--version", rest)
        print(f"beam-dataprep {pipelines.__version__}")
        return
    if first == "list":
        _refuse_extra("list", rest)
        print_jobs()
        return
    if first == "beam-options":
        _refuse_extra("beam-options", rest)
        from pipelines import cli
        cli.print_beam_options(f"{command} beam-options")
        return
    names = {subcommand(name): name for name, _ in jobs()}
    job = names.get(first) or (first if first in names.values() else None)
    if job is None:
        choices = [name for name, _ in subcommands()]
        near = nearest(first, choices)
        hint = f" (did you mean {near}?)" if near else ""
        print(f"{command}: error: unknown subcommand {first!r}{hint}; subcommands: "
              f"{', '.join(choices)}", file=sys.stderr)
        sys.exit(USAGE)
    from pipelines import cli
    cli.INVOKED_AS = _PROG[0] = f"{command} {subcommand(job)}"
    cli.PROGRAM = program
    importlib.import_module(f"pipelines.{job}").main(rest)


if __name__ == "__main__":
    main(command=MODULE_COMMAND)
