"""Check every replica of every shard of a store against its manifest (and repair).

Checks the newest valid generation found on any root (a crash between
manifest copies is reported, never rolled back), every manifest copy, every
replica (size, xxh3-128; a symlink, directory or special file in a replica's
place is a problem), and the rest of the dataset folders.  Problems (exit 1)
are damage to the committed generation: a manifest copy or a replica that is
not ok.  Warnings (exit 0; exit 1 with --strict) are files beside intact data:
a stray file not in the manifest (stale shards and temporary files of an
interrupted run, which --repair deletes; any other file, which is not ours and
--repair never deletes), a lock left by a run that is gone.  A run in progress
(the dataset's lock held by a live process) is information: its lock and
working files (.runs-* folders, .tmp-* files, shards not yet committed) are
listed as "run in progress (<name>)".  Exit 2: the path holds no store, or
a usage error.  Progress (replicas and bytes read, rate, ETA) goes to stderr:
a bar on a terminal, one line per interval otherwise.
"""
import sys

from pipelines import cli, progress
from transforms.storage.store import (
    INFO, IN_PROGRESS, LOCKED, PROBLEM, NoStore, STALE_LOCK, STRAY_PREFIX, WARNING, StoreError,
    load_manifest, parse_root_map, repair_store, replica_bytes, severity, verify_store)


def format_table(rows: list[dict]) -> str:
    headers = ("shard", "root", "status")
    widths = [max([len(h)] + [len(str(r[h])) for r in rows]) for h in headers]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)) + "  detail",
             "  ".join("-" * w for w in widths) + "  ------"]
    lines += ["  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths))
              + (f"  {r['detail']}" if r.get("detail") else "") for r in rows]
    return "\n".join(lines)


def build_parser() -> cli.Parser:
    # A cli.Parser: Beam's filesystem options (e.g. --s3_endpoint_url, or a
    # --run_config holding them) reach s3:// and gs:// stores.
    parser = cli.Parser("verify_store", __doc__)
    parser.add_argument("--store", required=True, help="ROOT/DATASET folder holding manifest.json")
    parser.add_argument("--repair", action="store_true",
                        help="rewrite missing or bad replicas and manifest copies from good "
                        "ones, delete stale and temporary files, then verify again")
    parser.add_argument("--root_map", default=None, metavar="OLD=NEW[,OLD=NEW]",
                        help="recorded roots that now live elsewhere (a moved or copied "
                        "store); the --store root is always found where it is")
    parser.add_argument("--break_lock", action="store_true",
                        help="with --repair: remove a lock left by a killed run first")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 on warnings too (stray files not in the manifest, a "
                        "stale lock), not only on damage to the committed generation")
    return parser


# verify again when a run in progress commits a new generation during the check
# (its collection then deletes files of the generation being checked)
RECHECKS = 3


def messages(rows: list[dict]) -> list[str]:
    """The lines after the table: one per warning and per run-in-progress row."""
    lines = []
    for row in rows:
        level = severity(row)
        if row["status"] == STALE_LOCK:
            lines.append(f"warning: stale lock: {row['path']} ({row['detail']})")
        elif level == WARNING:
            lines.append(f"warning: stray file, not in the manifest: {row['path']}"
                         + (" (--repair deletes it)" if row.get("collectable") else ""))
        elif row["status"] == LOCKED:
            lines.append(f"info: run in progress ({row['shard']}): {row['detail']}")
        elif level == INFO:
            lines.append(f"info: run in progress ({row['shard']}): a working file of that "
                         "run, not checked")
    return lines


def summary(rows: list[dict], generation) -> str:
    files = [r for r in rows if r["status"] not in (LOCKED, IN_PROGRESS)
             and not r["status"].startswith(STRAY_PREFIX)]
    ok = sum(1 for r in files if r["status"] == "ok")
    problems = sum(1 for r in rows if severity(r) == PROBLEM)
    strays = sum(1 for r in rows if r["status"].startswith(STRAY_PREFIX)
                 and r["status"] != STALE_LOCK)
    warnings = sum(1 for r in rows if severity(r) == WARNING)
    working = sum(1 for r in rows if r["status"] == IN_PROGRESS)
    shards = len({r["shard"] for r in files}) - 1
    line = (f"generation {generation}: {ok} of {len(files)} files ok "
            f"({shards} shard{'' if shards == 1 else 's'}); {strays} stray file(s); "
            f"{problems} problem(s)")
    if warnings:
        line += f"; {warnings} warning(s)"
    if any(r["status"] == LOCKED for r in rows):
        line += f"; a run is in progress ({working} working file(s) not checked)"
    return line


def verify(args, total: int) -> tuple[list[dict], dict]:
    """-> (rows, the manifest checked).  A check whose generation was replaced while
    it ran (a run in progress committed, then collected the old generation's
    files, which would read as missing) is done again on the new one, up to
    ``RECHECKS`` times in all; then StoreError."""
    for _ in range(RECHECKS):
        before = load_manifest(args.store, args.root_map)
        with progress.Track("verify_store", total, "replicas", "verify") as track:
            rows = verify_store(args.store, args.root_map, progress=track.advance)
        after = load_manifest(args.store, args.root_map)
        if before.get("digest") == after.get("digest"):
            return rows, before
        total = replica_bytes(after)
    raise StoreError(f"{args.store}: a new generation was committed during each of "
                     f"{RECHECKS} checks (a run in progress); verify again once it has "
                     "finished")


def run(argv=None) -> int:
    """Verify (and with --repair first repair) a store; prints the table, warnings,
    and the summary -> the exit status (0, or 1 on problems; --strict: or warnings).
    Raises NoStore when the path holds no store, StoreError (DatasetLocked...)
    when the check or repair cannot be done."""
    parser = build_parser()
    args, _ = parser.parse(argv, runs_a_job=False)
    try:
        parse_root_map(args.root_map)
    except ValueError as err:
        parser.error(str(err))
    try:
        total = replica_bytes(load_manifest(args.store, args.root_map))
    except NoStore as err:   # a root given for its dataset, a misspelt name: say which
        err.hint = cli.store_hint(args.store, lambda store: f"--store {store}")
        raise
    if args.repair:
        with progress.Track("repair_store", total, "replicas", "repair") as track:
            actions = repair_store(args.store, args.root_map, args.break_lock,
                                   progress=track.advance)
        for row in actions:
            print(f"repair {row['shard']} on {row['root']}: {row['status']} -> "
                  f"{row['action']}")
    rows, manifest = verify(args, total)
    print(format_table(rows))
    lines = messages(rows)
    if lines:
        print()
        print("\n".join(lines))
    print(f"\n{summary(rows, manifest.get('generation'))}")
    levels = {severity(r) for r in rows}
    return 1 if PROBLEM in levels or (args.strict and WARNING in levels) else 0


def main(argv=None):
    cli.run_job("verify_store", lambda a: sys.exit(run(a)), argv)


if __name__ == "__main__":
    main()
