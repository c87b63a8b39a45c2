"""Check every replica of every shard of a store against its manifest (and repair).

Checks the newest valid generation found on any root (a crash between
manifest copies is reported, never rolled back), every manifest copy, every
replica (size, xxh3-128; a symlink, directory or special file in a replica's
place is a problem), and stray files in the dataset folders: stale shards of
older generations, temporary files of killed runs, symlinks, special files,
unknown files.  Exit 0: all good; 1: problems (after --repair: problems left);
2: no usable manifest.  Progress (replicas and bytes checked, rate, ETA) goes to
stderr: a bar on a terminal, one line per interval otherwise.
"""
import sys

from pipelines import cli, progress
from transforms.storage.store import (StoreError, load_manifest, repair_store, replica_bytes,
                                      verify_store)


def format_table(rows: list[dict]) -> str:
    headers = ("shard", "root", "status")
    widths = [max([len(h)] + [len(str(r[h])) for r in rows]) for h in headers]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)) + "  detail",
             "  ".join("-" * w for w in widths) + "  ------"]
    lines += ["  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths))
              + (f"  {r['detail']}" if r.get("detail") else "") for r in rows]
    return "\n".join(lines)


def main(argv=None):
    """Verify (or repair) a store; exit 0 when every file is ok, 1 otherwise, 2 on a
    bad store or flag; Ctrl-C: one line and 130 (``cli.run_job``)."""
    cli.run_job("verify_store", _main, argv)


def _main(argv=None):
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
    args, _ = parser.parse(argv)
    try:
        total = replica_bytes(load_manifest(args.store, args.root_map))
        if args.repair:
            with progress.Track("repair_store", total, "replicas", "repair") as track:
                actions = repair_store(args.store, args.root_map, args.break_lock,
                                       progress=track.advance)
            for row in actions:
                print(f"repair {row['shard']} on {row['root']}: {row['status']} -> "
                      f"{row['action']}")
        with progress.Track("verify_store", total, "replicas", "verify") as track:
            rows = verify_store(args.store, args.root_map, progress=track.advance)
        generation = load_manifest(args.store, args.root_map).get("generation")
    except (StoreError, ValueError) as err:
        print(f"{cli.prog_of('verify_store')}: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(format_table(rows))
    bad = [r for r in rows if r["status"] != "ok"]
    files = [r for r in rows if not r["status"].startswith("stray:")]
    strays = len(rows) - len(files)
    shards = len({r["shard"] for r in files}) - 1
    print(f"\ngeneration {generation}: {len(rows) - len(bad)} of {len(files)} files ok "
          f"({shards} shard{'' if shards == 1 else 's'}); {strays} stray file(s); {len(bad)} problem(s)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
