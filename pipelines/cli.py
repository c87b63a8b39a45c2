"""Shared command-line plumbing: our options in their own groups, Beam's passed through."""
import argparse
import logging
import os
import re
import sys

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import run_config


# Set by the ``dataprep`` command to the words that invoked a job ("dataprep prepare-corpus"),
# so usage and errors name the command the user typed.
INVOKED_AS = None
# True when a job's main runs as the program itself (the ``dataprep`` command), so
# run_job keeps Ctrl-C at one line and 130 until the process ends (see run_job)
PROGRAM = False


def prog_of(job: str) -> str:
    return INVOKED_AS or f"python -m pipelines.{job}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse as every job uses it: no abbreviated flags, one-line errors, ``--version``.

    An error prints ``<prog>: error: <message>`` and a one-line hint to
    ``--help`` (not the whole usage), then exits with status 2.
    """

    def __init__(self, job: str, description: str, **kwargs):
        super().__init__(prog=prog_of(job), description=description, allow_abbrev=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        from pipelines import __version__
        self.add_argument("--version", action="version", version=f"beam-dataprep {__version__}")

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def beam_options_parser(prog: str) -> argparse.ArgumentParser:
    """Every flag of every PipelineOptions subclass Beam has imported, with its help."""
    from apache_beam.options import pipeline_options as po
    parser = argparse.ArgumentParser(prog=prog, allow_abbrev=False, add_help=False,
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

    def parse(self, argv):
        """-> (our namespace, PipelineOptions from the run config then the rest of argv)."""
        args, beam_argv = self.parse_known_args(argv)
        config = args.run_config or run_config.env_config() or "direct"
        try:
            flags = run_config.flags_from(config)
        except run_config.RunConfigError as err:
            self.error(str(err))
        unknown = [a for a in beam_argv if a.startswith("--")
                   and a[2:].split("=", 1)[0] not in run_config.known_beam_options()]
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        options = PipelineOptions(flags + beam_argv)
        # Jobs touch storage before the pipeline exists (validation, leftovers,
        # manifests); object stores (s3://, gs://) need their options for that too.
        from apache_beam.io.filesystems import FileSystems
        FileSystems.set_options(options)
        return args, options


def add_store_arguments(group, default_dataset: str) -> None:
    """--output_roots, --replication, --dataset: the same interface for every job writing a store."""
    group.add_argument("--output_roots", default="out/a,out/b",
                       help="N storage roots, comma-separated (local paths or gs://, s3://, "
                       "hdfs:// URIs), each optionally =WEIGHT: a root of weight 2 gets about "
                       "twice the replicas (a=2,b,c). Default: out/a,out/b")
    group.add_argument("--replication", type=positive_int, default=None,
                       help="R: replicas of every shard, on R distinct roots (default: min(2, N))")
    group.add_argument("--dataset", default=default_dataset,
                       help=f"dataset folder under every root, a plain name "
                       f"[A-Za-z0-9][A-Za-z0-9._-]* (default: {default_dataset})")
    group.add_argument("--break_lock", action="store_true",
                       help="remove the dataset's lock (<root>/<dataset>/.lock) left by a "
                       "killed run before taking it; only when no other run is writing")


def resolve_roots(args) -> list:
    """Parsed, normalised --output_roots; fills in the default --replication.

    Raises ValueError when R exceeds the number of roots, the dataset is not a
    plain folder name, or two roots are one folder (symlinks, ``..``, case):
    before anything runs or touches storage.
    """
    from transforms.storage.placement import parse_roots
    from transforms.storage.store import check_dataset_name, check_roots, normalise_root
    check_dataset_name(args.dataset)
    roots = [type(r)(normalise_root(r.uri), r.weight) for r in parse_roots(args.output_roots)]
    check_roots([r.uri for r in roots], args.dataset)
    if args.replication is None:
        args.replication = min(2, len(roots))
    if args.replication > len(roots):
        raise ValueError(f"--replication {args.replication} is more than the "
                         f"{len(roots)} root(s) in --output_roots")
    return roots


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
    last = text.strip().splitlines()[-1] if text.strip() else repr(err)
    last = last.split(" [while running")[0].strip()
    return re.sub(r"^(?:(?:[A-Za-z_][\w.]*\.)?\w*(?:Error|Exception): )+", "", last)


def run_job(job: str, run, argv=None) -> None:
    """Call ``run(argv)`` the way every job's ``main`` does: Ctrl-C exits 130 with
    one line at any point (``progress``: before, during and after the pipeline,
    and, for the program itself (``argv`` None, or ``PROGRAM``), after the last line
    while the interpreter shuts down); any failure prints ``<job> failed: <root cause>``
    once (details in the debug log and the log file named by a note), and exits 1.
    Temporary folders of the run are made in one folder under ``$TMPDIR`` and
    deleted at the end (``progress.run_temp_dir``)."""
    import signal

    from pipelines import progress
    program = argv is None or PROGRAM
    previous = signal.getsignal(signal.SIGINT)
    try:
        try:
            with progress.run_temp_dir():
                run(argv)
        except progress.Interrupted as err:
            progress.exit_interrupted(err)
        except KeyboardInterrupt:
            progress.exit_interrupted(progress.Interrupted(progress.interrupted_message(job)))
        except Exception as err:  # noqa: BLE001 - one clear line for the user, details in the log
            if program:
                signal.signal(signal.SIGINT, progress.exit_handler(job))
            logging.getLogger(job).debug("run failed", exc_info=True)
            print(f"{job} failed: {root_cause(err)}", file=sys.stderr)
            progress.print_notes(err)
            sys.exit(1)
    finally:
        # the program ends here: a Ctrl-C from now on (Beam's exit hooks, threads being
        # joined) is one line and 130 too; a caller in this process gets its handler back
        signal.signal(signal.SIGINT, progress.exit_handler(job) if program else previous)
