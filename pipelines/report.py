"""Re-render a store's run_report.html from its run_report.json (both in STORE/_audit/)."""
import orjson

from pipelines import cli
from transforms.core import exact_json
from transforms.storage.report import REPORT_HTML, REPORT_JSON, render_html


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser("report", __doc__ + "\n\nExample: dataprep report out/a/corpus")
    parser.add_argument("store", metavar="STORE",
                        help="ROOT/DATASET folder whose _audit/ holds run_report.json (local path or URI)")
    parser.add_argument("--output", default=None,
                        help=f"where to write the page (default: STORE/_audit/{REPORT_HTML})")
    return parser


def run(argv=None) -> str:
    """Render STORE/_audit/run_report.json; returns the path written.

    Raises cli.BadPath (exit 2, one line naming the path and why: ``no store at
    out/x (not found)``, ``no run report at out/x/_audit/run_report.json (not
    found)``; with a hint line when datasets are near: ``hint: out/a holds the
    dataset(s) corpus: try dataprep report out/a/corpus``, ``cli.store_hint``) when
    the store or its run report is missing or unreadable, or the ``--output``
    folder does not exist, ValueError (exit 1) when the report is
    not JSON or not a run report, or the page cannot be written.
    """
    import os

    from transforms.storage.files import join, read_bytes
    from transforms.storage.store import (
        AUDIT_DIR, MANIFEST, file_kind, is_local, parent, write_atomically)
    parser = build_parser()
    args = parser.parse_args(argv)
    audit = join(args.store, AUDIT_DIR)
    source = join(audit, REPORT_JSON)

    def hint():   # the path holds no dataset, but some are near it: which
        if file_kind(join(args.store, MANIFEST)) == "file":
            return None
        return cli.store_hint(args.store, lambda store: f"{parser.prog} {store}")

    if is_local(args.store) and not os.path.isdir(args.store):
        raise cli.BadPath(f"no store at {args.store} ("
                          f"{'not a folder' if os.path.exists(args.store) else 'not found'})",
                          hint())
    try:
        data = read_bytes(source)
    except Exception as err:  # noqa: BLE001 - every FileSystems backend has its own error
        raise cli.BadPath(f"no run report at {source} ({cli.os_reason(err)})",
                          hint()) from None
    try:
        report = exact_json.loads(data)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"{source} is not JSON: {err}") from None
    if not isinstance(report, dict) or "counters" not in report:
        raise ValueError(f"{source} is not a run report (no 'counters')")
    target = args.output or join(audit, REPORT_HTML)
    if args.output and is_local(target):
        cli.check_output_folder(target, "--output")
    try:
        write_atomically(target, render_html(report).encode())
    except OSError as err:   # read-only, full...
        raise ValueError(f"cannot write {target}: {err.strerror or err}") from None
    print(target)
    return target


def main(argv=None):
    cli.run_job("report", run, argv)


if __name__ == "__main__":
    main()
