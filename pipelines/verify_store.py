"""Check every replica of every shard of a store against its manifest (and repair)."""
import sys

from pipelines import cli

from transforms.store import StoreError, repair_store, verify_store


def format_table(rows: list[dict]) -> str:
    headers = ("shard", "root", "status")
    widths = [max([len(h)] + [len(str(r[h])) for r in rows]) for h in headers]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths)) for r in rows]
    return "\n".join(lines)


def main(argv=None):
    # A cli.Parser: Beam's filesystem options (e.g. --s3_endpoint_url, or a
    # --run_config holding them) reach s3:// and gs:// stores.
    parser = cli.Parser("verify_store", __doc__)
    parser.add_argument("--store", required=True, help="ROOT/DATASET folder holding manifest.json")
    parser.add_argument("--repair", action="store_true",
                        help="rewrite missing or bad replicas from a good one, then verify again")
    args, _ = parser.parse(argv)
    try:
        if args.repair:
            for row in repair_store(args.store):
                print(f"repair {row['shard']} on {row['root']}: {row['status']} -> {row['action']}")
        rows = verify_store(args.store)
    except StoreError as err:
        print(f"verify_store: {err}", file=sys.stderr)
        sys.exit(2)
    print(format_table(rows))
    bad = [r for r in rows if r["status"] != "ok"]
    shards = len({r["shard"] for r in rows}) - 1
    print(f"\n{len(rows) - len(bad)} of {len(rows)} files ok ({shards} shards); "
          f"{len(bad)} problem(s)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
