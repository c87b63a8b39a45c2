"""Command-line options of near-duplicate removal, shared by the jobs that run it."""
import argparse

from pipelines import cli
from transforms.components import DEFAULT_MAX_ROUNDS
from transforms.minhash import MAX_SHINGLE_SIZE, LshParams
from transforms.near_dedup import NearDedupConfig, RemoveNearDuplicates


def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def _shingle_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_SHINGLE_SIZE:
        raise argparse.ArgumentTypeError(f"must be in 1..{MAX_SHINGLE_SIZE}, got {value}")
    return value


def add_arguments(parser) -> None:
    group = parser.add_argument_group(
        "near-duplicate removal (MinHash LSH, after exact dedup)")
    group.add_argument("--no_near_dedup", action="store_true",
                       help="skip near-duplicate removal")
    group.add_argument("--near_dedup_threshold", type=_threshold, default=0.8,
                       help="Jaccard similarity of word shingle sets above which documents "
                       "are near-duplicates (default: 0.8)")
    group.add_argument("--shingle_size", type=_shingle_size, default=5,
                       help="words per shingle (default: 5)")
    group.add_argument("--num_perm", type=cli.positive_int, default=None,
                       help="MinHash permutations (default: bands x rows when both are "
                       "given, else 128)")
    group.add_argument("--near_dedup_bands", type=cli.positive_int, default=None,
                       help="LSH bands (default: chosen from the threshold)")
    group.add_argument("--near_dedup_rows", type=cli.positive_int, default=None,
                       help="LSH rows per band (default: chosen from the threshold)")
    group.add_argument("--no_near_dedup_verify", action="store_true",
                       help="keep LSH candidate pairs without checking their estimated "
                       "Jaccard against the threshold")
    group.add_argument("--near_dedup_max_rounds", type=cli.positive_int,
                       default=DEFAULT_MAX_ROUNDS,
                       help="bound on connected-components rounds; the run fails if they "
                       f"have not converged (default: {DEFAULT_MAX_ROUNDS})")


def config_from(args) -> NearDedupConfig:
    """Raises ValueError for inconsistent options (e.g. bands x rows > num_perm)."""
    lsh = LshParams.resolve(args.near_dedup_threshold, args.num_perm, args.near_dedup_bands,
                            args.near_dedup_rows, args.shingle_size)
    return NearDedupConfig(lsh, verify=not args.no_near_dedup_verify,
                           max_rounds=args.near_dedup_max_rounds, text_field=args.text_field)


def build_near_dedup(refs, args, signer, spill_dir: str, written, batch_bytes: int):
    """Batches of ``DocRef`` (scanned with ``signer`` spilling into ``spill_dir``;
    ``written`` completes with the scan) -> ``(kept batches, removed or None,
    gate, spills deleted)``."""
    result = refs | "NearDedup" >> RemoveNearDuplicates(
        signer.config, signer, spill_dir, written, with_removed=args.write_removed,
        batch_bytes=batch_bytes)
    return result["kept"], result.get("removed"), result["gate"], result["spills_deleted"]
