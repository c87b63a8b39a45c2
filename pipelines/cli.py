"""Shared command-line plumbing: our options in their own groups, Beam's passed through.

Every job's flags are checked before anything runs, in this order, each failure
one line (two with a hint) and exit status 2 (``pipelines.exit_codes``):

1. an unknown or abbreviated flag: ``unrecognized argument --stor (did you
   mean --store?)``, the hint naming the nearest valid flag (ours first, then
   Beam's; an abbreviation's completion first, else ``difflib``'s closest);
2. our own flags' values and required flags (argparse);
3. Beam's flags, from the run config and then the command line, parsed by
   Beam's own option classes with their types and choices
   (``argument --direct_num_workers: invalid int value: 'abc'``), and
   ``--runner`` against Beam's known runners; a pointer to ``dataprep
   beam-options`` follows.
"""
import argparse
import contextlib
import difflib
import errno
import importlib
import logging
import os
import re
import shlex
import sys

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import run_config
from pipelines.exit_codes import INTERRUPTED, PROBLEM, USAGE, guard, nearest


DEFAULT_ROOTS = "out/a,out/b"   # --output_roots when not given (relative: the current folder)

# Set by the ``dataprep`` command to the words that invoked a job ("dataprep prepare-corpus"),
# so usage and errors name the command the user typed.
INVOKED_AS = None
# True when a job's main runs as the program itself (the ``dataprep`` command), so
# run_job keeps Ctrl-C at one line and 130 until the process ends (see run_job)
PROGRAM = False


def prog_of(job: str) -> str:
    return INVOKED_AS or f"python -m pipelines.{job}"


def say_broken_locks(job: str, lock) -> None:
    """One stderr line per stale lock ``--break_lock`` removed (``DatasetLock.broken``):
    whose it was and why it counted as stale."""
    for path, why in lock.broken:
        print(f"{prog_of(job)}: --break_lock removed the lock {path} ({why})", file=sys.stderr)


def beam_options_command() -> str:
    """The command that lists Beam's options, as the user invoked us: ``dataprep
    beam-options`` (``INVOKED_AS`` ``dataprep <job>``), else ``python -m pipelines
    beam-options``."""
    if INVOKED_AS and " " in INVOKED_AS:
        return INVOKED_AS.rsplit(" ", 1)[0] + " beam-options"
    return "python -m pipelines beam-options"


class _PrintingParser(argparse.ArgumentParser):
    """argparse, except that help written to a closed stdout raises BrokenPipeError
    (argparse swallows it and exits 0, the output cut short) for
    ``exit_codes.guard`` to turn into status 141."""

    def _print_message(self, message, file=None):
        if message:
            (file or sys.stderr).write(message)


class ArgumentParser(_PrintingParser):
    """argparse as every job uses it: no abbreviated flags, one-line errors, ``--version``.

    An error prints ``<prog>: error: <message>`` and a one-line hint (to
    ``--help`` unless given), not the whole usage, then exits with status 2.
    An unknown flag is reported before a missing required one, with the
    nearest valid flag (``unrecognized argument --stor (did you mean --store?)``).
    """

    def __init__(self, job: str, description: str, **kwargs):
        super().__init__(prog=prog_of(job), description=description, allow_abbrev=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        from pipelines import __version__
        self.add_argument("--version", action="version", version=f"beam-dataprep {__version__}")

    def error(self, message, hint=None):
        self.exit(USAGE, f"{self.prog}: error: {message}\n"
                  f"({hint or f'see {self.prog} --help'})\n")

    def own_flags(self) -> list[str]:
        return sorted(o for o in self._option_string_actions if o.startswith("--"))

    def check_flags(self, argv, also=frozenset()) -> None:
        """Refuse any ``--flag`` in ``argv`` that is neither ours nor in ``also``."""
        unknown = []
        for token in argv:
            if token == "--":
                break
            if token.startswith("--"):
                name = token.split("=", 1)[0]
                if name not in self._option_string_actions and name not in also:
                    unknown.append(name)
        if unknown:
            self.error(unrecognized(unknown, self.own_flags(), sorted(also)))

    def parse_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        self.check_flags(argv)
        parsed, extra = self.parse_known_args(argv, namespace)
        if extra:
            self.error(unrecognized(extra, self.own_flags()))
        return parsed


def nearest_flag(name: str, ours, beams=()) -> str | None:
    """The valid flag a mistyped ``name`` most likely meant: ours first, then
    Beam's (``exit_codes.nearest``: an abbreviation's completion, else the
    closest by ``difflib``)."""
    return nearest(name, ours, beams)


def unrecognized(tokens, ours, beams=()) -> str:
    """``unrecognized argument --stor (did you mean --store?)``; several comma-separated."""
    said = []
    for token in tokens:
        near = nearest_flag(token, ours, beams) if token.startswith("-") else None
        said.append(f"{token} (did you mean {near}?)" if near else token)
    return f"unrecognized argument{'s' if len(said) > 1 else ''} {', '.join(said)}"


def beam_options_parser(prog: str) -> argparse.ArgumentParser:
    """Every flag of every PipelineOptions subclass Beam has imported, with its help."""
    from apache_beam.options import pipeline_options as po
    parser = _PrintingParser(prog=prog, allow_abbrev=False, add_help=False,
                             description="Beam PipelineOptions flags: give them after "
                             "a job's own flags, or as keys of a --run_config file.")
    seen = set()

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in [po.PipelineOptions, *subclasses(po.PipelineOptions)]:
        if cls in seen or "_add_argparse_args" not in vars(cls):
            continue
        seen.add(cls)
        group = parser.add_argument_group(cls.__name__)
        try:
            cls._add_argparse_args(_NoConflicts(group))
        except (argparse.ArgumentError, TypeError):  # pragma: no cover - a plugin's odd flags
            continue
    return parser


class _NoConflicts:
    """A group wrapper that skips flags another options class has already defined."""

    def __init__(self, group):
        self._group = group

    def add_argument(self, *names, **kwargs):
        try:
            return self._group.add_argument(*names, **kwargs)
        except argparse.ArgumentError:
            return None

    def __getattr__(self, name):
        return getattr(self._group, name)


def print_beam_options(prog: str) -> None:
    beam_options_parser(prog).print_help()


class Parser(ArgumentParser):
    """A job's parser: our options in groups, Beam's options passed through after them."""

    def __init__(self, prog: str, description: str):
        super().__init__(
            prog, description,
            epilog=(
                "Beam options:\n"
                "  Any Beam PipelineOptions flag (--runner, --direct_num_workers,\n"
                "  --flink_master, --job_endpoint, ...) may follow, and overrides the\n"
                "  values from --run_config. All of them, with help:\n"
                "  dataprep beam-options   (or: python -m pipelines beam-options)"),
        )
        runner = self.add_argument_group("runner")
        runner.add_argument(
            "--run_config", default=None,
            help="YAML file (or name in run_configs/) of Beam options; default: "
            f"${run_config.ENV_VAR} or run_configs/direct.yaml")
        runner.add_argument(
            "--log_level", default="warning", choices=("debug", "info", "warning", "error"),
            help="Beam's, the job server's and the workers' logs at this level and above "
            "reach stderr; at warning (default) they go to a log file named on failure")

    def parse(self, argv, runs_a_job: bool = True):
        """-> (our namespace, PipelineOptions from the run config then the rest of argv).
        ``runs_a_job=False`` (a command that runs no pipeline): the runner's binary is
        not checked.

        Exits 2 with one line (and a hint) on an unknown flag, a bad value of
        ours or Beam's (also one from the run config, which the line names), or
        an unknown ``--runner``."""
        argv = list(sys.argv[1:] if argv is None else argv)
        beam = BeamFlags()
        self.check_flags(argv, beam.names)
        args, beam_argv = self.parse_known_args(argv)
        config = args.run_config or run_config.env_config() or "direct"
        try:
            flags = run_config.flags_from(config)
        except run_config.RunConfigError as err:
            self.error(str(err))
        beam_hint = f"a Beam option; {beam_options_command()} lists them all, with help"
        try:
            beam.check(flags)
        except BeamFlagError as err:
            self.error(f"run config {run_config.resolve(config)}: {err}", beam_hint)
        try:
            namespace = beam.check(flags + beam_argv)
        except BeamFlagError as err:
            if err.unknown:
                self.error(unrecognized(err.unknown, self.own_flags(), sorted(beam.names)))
            self.error(str(err), beam_hint)
        try:
            check_runner(getattr(namespace, "runner", None))
        except BeamFlagError as err:
            given = any(a == "--runner" or a.startswith("--runner=") for a in beam_argv)
            self.error(str(err) if given else f"run config {run_config.resolve(config)}: {err}",
                       beam_hint)
        location = getattr(namespace, "prism_location", None)
        if location and location.startswith("~"):   # Beam takes it as written
            beam_argv.append(f"--prism_location={os.path.expanduser(location)}")
        if runs_a_job:
            try:
                warning = check_prism(namespace)
            except BeamFlagError as err:
                self.error(str(err), "see README \"Runners\": scripts/build_prism.sh builds "
                           "Prism from the Go module proxy")
            if warning:
                print(f"{self.prog}: warning: {warning}", file=sys.stderr)
        options = PipelineOptions(flags + beam_argv)
        # Jobs touch storage before the pipeline exists (validation, leftovers,
        # manifests); object stores (s3://, gs://) need their options for that too.
        from apache_beam.io.filesystems import FileSystems
        FileSystems.set_options(options)
        return args, options


class BeamFlagError(ValueError):
    """A Beam flag Beam's own parser refuses (``unknown``: tokens it did not know)."""

    def __init__(self, message: str, unknown=()):
        super().__init__(message)
        self.unknown = list(unknown)


class BeamFlags:
    """Beam's PipelineOptions flags, parsed the way ``PipelineOptions.get_all_options``
    parses them (every direct subclass's ``_add_argparse_args`` on Beam's own
    parser class), but failing with a ``BeamFlagError`` instead of printing
    Beam's whole usage and exiting.  Built afresh for each parse (~2 ms): an
    import may have added options classes since."""

    def __init__(self):
        from apache_beam.options import pipeline_options as po

        class _Strict(po._BeamArgumentParser):   # add_value_provider_argument lives there
            def error(self, message):
                raise BeamFlagError(message)

        self.parser = _Strict(allow_abbrev=False, add_help=False)
        classes = {}
        for cls in po.PipelineOptions.__subclasses__():
            classes.setdefault(str(cls), cls)
        for cls in classes.values():
            cls._add_argparse_args(self.parser)   # noqa: SLF001 - Beam's own hook
        self.names = frozenset(o for o in self.parser._option_string_actions
                               if o.startswith("--"))

    def check(self, tokens: list[str]) -> argparse.Namespace:
        """Parse ``tokens`` (Beam flags only) -> namespace; BeamFlagError on a bad
        value, or naming tokens that are no Beam flag (``unknown``)."""
        namespace, extra = self.parser.parse_known_args(list(tokens))
        if extra:
            raise BeamFlagError(f"unrecognized arguments: {' '.join(extra)}", extra)
        return namespace


PRISM_STAMP = "prism.version"   # scripts/build_prism.sh writes it beside the binary:
PRISM_PATCHED = "+dataprep."     # v<Beam's version>+dataprep.<digest of the patches>


def check_prism(namespace) -> str:
    """For ``--runner PrismRunner`` with a local ``--prism_location`` and no
    ``--job_endpoint`` (then Beam starts that binary): raise ``BeamFlagError`` when no
    file is there (Beam would try GitHub instead); return a warning when the binary
    was not built by scripts/build_prism.sh for this Beam (no ``prism.version`` stamp
    beside it naming this Beam's version and our patches, scripts/prism_patches/): a
    stock Prism can drop a bundle's counters from the run report (the store is not
    affected).  '' otherwise."""
    import apache_beam
    runner = str(getattr(namespace, "runner", None) or "").lower()
    location = getattr(namespace, "prism_location", None)
    if (runner.removesuffix("runner") != "prism" or not location or "://" in location
            or getattr(namespace, "job_endpoint", None)):
        return ""
    location = os.path.expanduser(location)
    if not os.path.isfile(location):
        what = "is a folder" if os.path.isdir(location) else "not found"
        raise BeamFlagError(f"Prism {what} at {location} (--prism_location)")
    try:
        stamp_path = os.path.join(os.path.dirname(os.path.realpath(location)), PRISM_STAMP)
        with open(stamp_path, encoding="utf-8") as f:
            stamp = (f.readline().strip() or "empty")[:80]
    except (OSError, ValueError):   # none, unreadable, not text
        stamp = "missing"
    if stamp.startswith(f"v{apache_beam.__version__}{PRISM_PATCHED}"):
        return ""
    return (f"Prism at {location} is not built by scripts/build_prism.sh for Beam "
            f"{apache_beam.__version__} (stamp {stamp}): stock Prism can drop a bundle's "
            "counters from the run report (Beam's metrics short-id race; the store is not "
            "affected); rebuild with scripts/build_prism.sh --force")


def check_runner(name) -> None:
    """Refuse a ``--runner`` Beam would not create (``apache_beam.runners.runner.
    create_runner``'s rule: a known runner's name, with or without ``Runner``,
    in any case, or the dotted name of an importable class)."""
    if not name:
        return
    from apache_beam.options.pipeline_options import StandardOptions
    known = {path.rsplit(".", 1)[-1].lower() for path in StandardOptions.ALL_KNOWN_RUNNERS}
    if name.lower() in known or f"{name.lower()}runner" in known:
        return
    if "." in name:
        module, attribute = name.rsplit(".", 1)
        try:
            getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as err:
            raise BeamFlagError(f"argument --runner: cannot import {name} ({err})") from None
        return
    names = list(StandardOptions.KNOWN_RUNNER_NAMES)
    near = difflib.get_close_matches(name, names, 1, 0.6)
    raise BeamFlagError(
        f"argument --runner: unknown runner {name!r}"
        + (f" (did you mean {near[0]}?)" if near else "")
        + f"; known runners: {', '.join(names)}, or a PipelineRunner subclass's dotted name")


def add_store_arguments(group, default_dataset: str) -> None:
    """--output_roots, --replication, --dataset: the same interface for every job writing a store."""
    group.add_argument("--output_roots", default=None,
                       help="N storage roots, comma-separated (local paths or gs://, s3://, "
                       "hdfs:// URIs), each optionally =WEIGHT: a root of weight 2 gets about "
                       f"twice the replicas (a=2,b,c). Default: {DEFAULT_ROOTS} (under the "
                       "current folder)")
    group.add_argument("--replication", type=positive_int, default=None,
                       help="R: replicas of every shard, on R distinct roots (default: min(2, N))")
    group.add_argument("--dataset", default=default_dataset,
                       help=f"dataset folder under every root, a plain name "
                       f"[A-Za-z0-9][A-Za-z0-9._-]* (default: {default_dataset})")
    group.add_argument("--break_lock", action="store_true",
                       help="remove the dataset's lock (<root>/<dataset>/.lock) left by a "
                       "killed run before taking it; only when no other run is writing")


def roots_given(args) -> bool:
    """Were --output_roots given (else the job writes to ``DEFAULT_ROOTS``)?  Ask
    before ``resolve_roots``, which fills the default in."""
    return args.output_roots is not None


def resolve_roots(args) -> list:
    """Parsed, normalised --output_roots (``DEFAULT_ROOTS`` when not given: set into
    ``args``); fills in the default --replication.

    Raises ValueError when R exceeds the number of roots, the dataset is not a
    plain folder name, or two roots are one folder (symlinks, ``..``, case):
    before anything runs or touches storage.
    """
    from transforms.storage.placement import parse_roots
    from transforms.storage.store import check_dataset_name, check_roots, normalise_root
    check_dataset_name(args.dataset)
    if args.output_roots is None:
        args.output_roots = DEFAULT_ROOTS
    roots = [type(r)(normalise_root(r.uri), r.weight) for r in parse_roots(args.output_roots)]
    check_roots([r.uri for r in roots], args.dataset)
    for root in roots:
        check_writable_root(root.uri)
    if args.replication is None:
        args.replication = min(2, len(roots))
    if args.replication > len(roots):
        raise ValueError(f"--replication {args.replication} is more than the "
                         f"{len(roots)} root(s) in --output_roots")
    return roots


def check_writable_root(root: str) -> None:
    """Refuse a local output root that cannot be made or written, before anything runs
    (nothing is created): ValueError ``--output_roots: cannot write to root R: F is a
    file, not a folder`` / ``permission denied on F`` (F: the root, or the nearest
    folder above it that exists).  Remote roots are not checked here."""
    if "://" in root:
        return
    from transforms.storage.commit import not_a_folder
    in_the_way = not_a_folder(root)
    if in_the_way:
        raise ValueError(f"--output_roots: cannot write to root {root}: {in_the_way}")
    existing = os.path.abspath(root)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    with contextlib.suppress(OSError):
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            raise ValueError(f"--output_roots: cannot write to root {root}: {existing} is on "
                             "a read-only file system")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--output_roots: cannot write to root {root}: permission denied "
                         f"on {existing}")


def absolute_path(item: str) -> str:
    """One local path or pattern made absolute and normalised (``~`` expanded, ``.`` and
    ``..`` folded, from the working directory); a URI (``gs://...``) as given."""
    if "://" in item:
        return item
    return os.path.abspath(os.path.expanduser(item))


def recorded_flags(flags: dict) -> dict:
    """The flags as a run report records them: the path-valued ones absolute and
    normalised (``absolute_path``), so a report read later, from another folder,
    names the same files: ``input`` (each comma-separated item), ``output_roots``
    (each root, its ``=WEIGHT`` kept), ``recipe`` (the recipe file read, also for a
    shipped recipe's name) and ``run_config`` (the file read).  ``as_given`` maps
    each flag whose value changed to its value as typed.
    """
    from transforms.reduction.filters.recipes import recipe_path
    from transforms.storage.placement import parse_roots
    from transforms.storage.store import normalise_root
    out, given = dict(flags), {}

    def record(name, value):
        if value != flags[name]:
            out[name], given[name] = value, flags[name]

    if isinstance(flags.get("input"), str):
        record("input", ",".join(absolute_path(p.strip())
                                 for p in flags["input"].split(",") if p.strip()))
    if isinstance(flags.get("output_roots"), str):
        roots = parse_roots(flags["output_roots"])
        record("output_roots", ",".join(
            normalise_root(r.uri) + ("" if r.weight == 1.0 else f"={r.weight:g}")
            for r in roots))
    if isinstance(flags.get("recipe"), str):
        record("recipe", absolute_path(recipe_path(flags["recipe"])))
    if isinstance(flags.get("run_config"), str):
        record("run_config", absolute_path(flags["run_config"]))
    if given:
        out["as_given"] = given
    return out


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def byte_size(text: str) -> int:
    """'64MiB', '512k', '1G' or a plain number of bytes."""
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20,
             "mb": 1000 ** 2, "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30}
    stripped = text.strip().lower()
    number = stripped.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = stripped[len(number):].strip()
    if unit not in units:
        raise argparse.ArgumentTypeError(f"unknown size unit in {text!r}")
    value = int(float(number) * units[unit])
    if value < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return value


def setup_logging():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def root_cause(err: BaseException) -> str:
    """The innermost message of a (possibly Beam-wrapped worker) exception, in one line.

    A store gate's refusal (``not writing the manifest: ...``) is quoted from
    its marker; otherwise the last line, without ``[while running ...]`` and
    without leading ``SomeError: `` prefixes."""
    text = str(err)
    marker = "not writing the manifest: "
    if marker in text:
        return text[text.index(marker):].splitlines()[0].split("[while running")[0].strip()
    details = getattr(err, "details", None)
    if callable(details) and hasattr(err, "code"):   # a gRPC error: its status and details
        with contextlib.suppress(Exception):
            return f"{err.code().name}: {details()}".strip()
    # the last line that says something (a gRPC error's text ends with a lone ">")
    lines = [line for line in text.strip().splitlines() if re.search(r"\w", line)]
    last = lines[-1] if lines else repr(err)
    last = last.split(" [while running")[0].strip()
    return re.sub(r"^(?:(?:[A-Za-z_][\w.]*\.)?\w*(?:Error|Exception): )+", "", last)


def failure_lines(job: str, err: BaseException) -> list[str]:
    """What a failed run prints on stderr, at most two lines: ``<job> failed: <root
    cause>`` (``root_cause``), then the failure's hint (``err.hint``: ``hint: ...``)
    and its notes (the run's log file: ``full log: PATH``), in one line:
    ``hint: wait for it to end (full log: PATH)``, ``  (full log: PATH)``."""
    lines = [f"{job} failed: {root_cause(err)}"]
    hint = getattr(err, "hint", None)
    notes = "; ".join(getattr(err, "__notes__", ()))
    if hint:
        lines.append(f"hint: {hint}" + (f" ({notes})" if notes else ""))
    elif notes:
        lines.append(f"  ({notes})")
    return lines


class BadPath(ValueError):
    """A path given on the command line names nothing usable (exit status 2).
    ``hint``: what to try, printed as a second line ``hint: ...`` (``store_hint``),
    or None."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def store_hint(path: str, suggest) -> str | None:
    """The hint for a path that holds no store but is near some
    (``transforms.storage.store.stores_near``): ``out/a holds the dataset(s) corpus:
    try --store out/a/corpus`` (printed after ``hint: ``), ``suggest(store path)``
    giving what to try (the flag or command of the subcommand); None when no store
    is near."""
    from transforms.storage.store import stores_near
    what, stores = stores_near(path)
    return f"{what}: try {suggest(stores[0])}" if stores else None


def check_output_folder(target: str, flag: str) -> None:
    """Refuse a local file to be written (``target``, given by ``flag``) whose folder
    cannot hold it: BadPath ``cannot write T (FLAG): F is a file, not a folder`` (or a
    link to nothing: the first part of the path in the way), else ``folder F not
    found`` with a hint to create it.  Remote paths are not checked."""
    if "://" in target:
        return
    from transforms.storage.commit import not_a_folder
    folder = os.path.dirname(target) or "."
    if os.path.isdir(folder):
        return
    in_the_way = not_a_folder(folder)
    if in_the_way:
        raise BadPath(f"cannot write {target} ({flag}): {in_the_way}")
    raise BadPath(f"cannot write {target} ({flag}): folder {folder} not found",
                  f"create it first (mkdir -p {shlex.quote(folder)}), or give {flag} a path "
                  "in an existing folder")


_REASONS = {errno.ENOENT: "not found", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.EISDIR: "a folder, not a file",
            errno.ENOTDIR: "a part of the path is not a folder"}


def os_reason(err: BaseException) -> str:
    """Why a path could not be read or written, in a few plain words and no exception
    class (``not found``, ``permission denied``, ``a folder, not a file``): an
    ``OSError``'s errno, also one wrapped by Beam's filesystems (``BeamIOError``'s
    ``exception_details``) or chained; else the error's root cause (``root_cause``)."""
    original, seen = err, set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno is not None:
            return _REASONS.get(err.errno, (err.strerror or os.strerror(err.errno)).lower())
        inner = [e for e in (getattr(err, "exception_details", None) or {}).values()
                 if isinstance(e, BaseException)]
        err = inner[0] if inner else (err.__cause__ or err.__context__)
    return root_cause(original) or "cannot be read"


def usage_errors() -> tuple:
    """Exceptions that mean "a path on the command line names nothing": exit 2, one line."""
    from transforms.processing.io import NoInputFiles
    from transforms.storage.commit import NoStore
    return BadPath, NoInputFiles, NoStore


def run_job(job: str, run, argv=None) -> None:
    """Call ``run(argv)`` the way every job's ``main`` does, with the exit statuses of
    ``pipelines.exit_codes``: Ctrl-C exits 130 with one line at any point
    (``progress``: before, during and after the pipeline, and, for the program
    itself (``argv`` None, or ``PROGRAM``), after the last line while the
    interpreter shuts down); stdout closed early exits 141 quietly; a path on the
    command line that names nothing prints ``<prog>: error: <message>`` and exits
    2; any other failure prints ``<job> failed: <root cause>`` once (details in the
    debug log and the log file named by a note), and exits 1.  The interrupted
    line starts with the program name of the usage errors (``prog_of``).
    Temporary folders of the run are made in one folder under ``$TMPDIR`` and
    deleted at the end (``progress.run_temp_dir``).  Run from a thread other than
    the main one, no signal handler is touched (Python allows that only there)."""
    import signal
    import threading

    from pipelines import progress
    prog = prog_of(job)
    program = argv is None or PROGRAM
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main_thread else None

    def on_sigint(handler):
        if main_thread:
            signal.signal(signal.SIGINT, handler)

    if program and main_thread:
        # Ctrl-C ignored once the last exit hook ran (the interpreter torn down after it
        # would die of the signal, no line): pipelines.ignore_sigint_at_the_very_end,
        # registered at the command's start; here for a job started otherwise (before
        # the run: Beam registers its job servers' hooks during it)
        import pipelines
        pipelines.ignore_sigint_at_the_very_end()
        if pipelines.started_as_command():
            # the multi-process DirectRunner's SDK workers, forked now that the job's
            # modules (Beam's among them) are imported: they start with the job's first
            # stage instead of importing Beam again then (pipelines/warm_workers.py)
            from pipelines import warm_workers
            warm_workers.prestart(warm_workers.prestart_count(sys.argv[1:]))

    def attempt(argv):
        on_sigint(signal.default_int_handler)   # the command's own start-up handler goes
        try:
            with progress.run_temp_dir(job):
                # handled inside the run's folder: leaving through exit_interrupted,
                # $TMPDIR never points back at the base while the run's threads live
                try:
                    run(argv)
                except progress.Interrupted:
                    progress.exit_interrupted(prog)
                except KeyboardInterrupt:
                    if program:   # at once, ending the run's processes (exit_interrupted)
                        progress.exit_interrupted(prog)
                    raise
        except KeyboardInterrupt:
            # a caller in this process (no pipeline running: run_pipeline handles its
            # own): the run's temporary folder is gone with run_temp_dir; one line, 130;
            # a run that had failed before the Ctrl-C ends as that failure
            if progress.failure() is not None:
                for line in failure_lines(job, progress.failure()):
                    print(line, file=sys.stderr)
                progress.failure_said()
                sys.exit(PROBLEM)
            print(progress.interrupted_message(prog), file=sys.stderr)
            sys.exit(INTERRUPTED)
        except usage_errors() as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            if getattr(err, "hint", None):   # at most one more line
                print(f"hint: {err.hint}", file=sys.stderr)
            sys.exit(USAGE)
        except BrokenPipeError:
            raise   # guard tells a closed stdout (141) from any other pipe (a failure)
        except Exception as err:  # noqa: BLE001 - one clear line for the user, details in the log
            # a Ctrl-C from here on ends the run as this failure (its lines, status 1)
            progress.failing(err)
            if program:
                on_sigint(progress.exit_handler(prog))
            logging.getLogger(job).debug("run failed", exc_info=True)
            with progress.deferred_interrupts():   # the lines whole, once
                for line in failure_lines(job, err):
                    print(line, file=sys.stderr)
                progress.failure_said()
            sys.exit(PROBLEM)

    try:
        try:
            guard(prog, attempt, argv)
        except BrokenPipeError as err:   # not stdout's: a failure like any other
            print(f"{job} failed: {root_cause(err)}", file=sys.stderr)
            sys.exit(PROBLEM)
    finally:
        # the program ends here: a Ctrl-C from now on (Beam's exit hooks, threads being
        # joined) is one line and 130 too; a caller in this process gets its handler back
        on_sigint(progress.exit_handler(prog) if program else previous)
