"""Command-line options of near-duplicate removal, shared by the jobs that run it.

LSH settings are checked before anything runs (``config_from``), by the rule of
``transforms.reduction.minhash.LshParams.check_s_curve``:

* a pair at the threshold ``t`` must become a candidate with probability
  ``1 - (1 - t**rows)**bands >= 0.5``, else the run is refused (a one-line
  error naming the flags, that probability and a setting that meets it);
* with ``--no_near_dedup_verify``, a pair at ``t - 0.2`` must become a
  candidate with probability ``<= 0.5``, else refused (candidates are removed
  unchecked); with verification on that is only a warning (every extra
  candidate costs a comparison).

``--force_lsh_params`` turns both refusals into warnings.
"""
import argparse
import logging

from pipelines import cli
from transforms.processing.components import DEFAULT_MAX_ROUNDS
from transforms.reduction.minhash import (
    BELOW_MARGIN, MAX_P_BELOW, MAX_SHINGLE_SIZE, MIN_P_AT_THRESHOLD, SHINGLE_UNITS, LshParams,
    optimal_bands_rows)
from transforms.reduction.near_dedup import NearDedupConfig, RemoveNearDuplicates


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
                       help="Jaccard similarity of shingle sets at or above which documents "
                       "are near-duplicates (default: 0.8)")
    group.add_argument("--shingle_unit", choices=SHINGLE_UNITS, default="auto",
                       help="shingle by words, by characters, or per document: characters "
                       "when at least a fifth of its letters are in a script written without "
                       "spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar, Tibetan, "
                       "...), else words (default: auto)")
    group.add_argument("--shingle_size", type=_shingle_size, default=None,
                       help="tokens per shingle: words for word documents, characters for "
                       "character documents (default: 5 words; 5 characters)")
    group.add_argument("--num_perm", type=cli.positive_int, default=None,
                       help="MinHash permutations (default: bands x rows when both are "
                       "given, else 128)")
    group.add_argument("--near_dedup_bands", type=cli.positive_int, default=None,
                       help="LSH bands (default: chosen from the threshold)")
    group.add_argument("--near_dedup_rows", type=cli.positive_int, default=None,
                       help="LSH rows per band (default: chosen from the threshold)")
    group.add_argument("--force_lsh_params", action="store_true",
                       help="run LSH settings whose S-curve misses the threshold (a pair at "
                       "the threshold found with probability < 0.5, or, without "
                       "verification, pairs 0.2 below it flagged with probability > 0.5); "
                       "warned instead of refused")
    group.add_argument("--no_near_dedup_verify", action="store_true",
                       help="keep LSH candidate pairs without checking their estimated "
                       "Jaccard against the threshold")
    group.add_argument("--near_dedup_max_rounds", type=cli.positive_int,
                       default=DEFAULT_MAX_ROUNDS,
                       help="bound on connected-components rounds; the run fails if they "
                       f"have not converged (default: {DEFAULT_MAX_ROUNDS})")


def _percent(p: float) -> str:
    return f"{100 * p:.3g}%"


def s_curve_problems(lsh: LshParams, verify: bool) -> tuple[list[str], list[str]]:
    """-> (reasons to refuse, warnings), one line each, in flag names."""
    check = lsh.check_s_curve()
    setting = (f"--near_dedup_bands {lsh.bands} x --near_dedup_rows {lsh.rows} "
               f"(--num_perm {lsh.num_perm})")
    refuse, warn = [], []
    if check.misses_threshold:
        bands, rows = optimal_bands_rows(lsh.threshold, lsh.num_perm)
        better = LshParams(lsh.threshold, lsh.num_perm, bands, rows).candidate_probability(
            lsh.threshold)
        refuse.append(
            f"{setting} flags a pair at --near_dedup_threshold {lsh.threshold} with "
            f"probability {_percent(check.at_threshold)} (at least "
            f"{_percent(MIN_P_AT_THRESHOLD)} needed): leave out --near_dedup_bands/"
            f"--near_dedup_rows to have them chosen for the threshold ({bands} x {rows}: "
            f"{_percent(better)}), or pass --force_lsh_params")
    if check.flags_far_below:
        low = round(max(lsh.threshold - BELOW_MARGIN, 0.0), 6)
        message = (f"{setting} flags a pair at similarity {low} (--near_dedup_threshold "
                   f"{lsh.threshold} minus {BELOW_MARGIN}) with probability "
                   f"{_percent(check.below)} (more than {_percent(MAX_P_BELOW)})")
        if verify:
            warn.append(message + ": every such candidate costs a comparison")
        else:
            refuse.append(message + ", and --no_near_dedup_verify removes them unchecked: "
                          "drop --no_near_dedup_verify, use more rows per band, or pass "
                          "--force_lsh_params")
    return refuse, warn


def config_from(args, log: bool = False) -> NearDedupConfig:
    """Flags -> config.  Raises ValueError (one line, naming the flags) for
    inconsistent options (e.g. bands x rows > num_perm) and for LSH settings the
    S-curve rule refuses (see the module docstring) unless ``--force_lsh_params``;
    with ``log``, warnings (and forced refusals) go to the log."""
    lsh = LshParams.resolve(args.near_dedup_threshold, args.num_perm, args.near_dedup_bands,
                            args.near_dedup_rows, args.shingle_size,
                            shingle_unit=args.shingle_unit)
    verify = not args.no_near_dedup_verify
    refuse, warn = s_curve_problems(lsh, verify)
    if refuse and not args.force_lsh_params:
        raise ValueError(refuse[0])
    if log:
        for message in refuse + warn:
            logging.getLogger(__name__).warning("LSH settings: %s", message)
    return NearDedupConfig(lsh, verify=verify, max_rounds=args.near_dedup_max_rounds,
                           text_field=args.text_field)


def report_section(config: NearDedupConfig) -> dict:
    """The effective near-dedup settings for the run report."""
    return {**config.lsh.describe(), "verify": config.verify, "max_rounds": config.max_rounds}


def build_near_dedup(refs, args, signer, spill_dir: str, written, batch_bytes: int):
    """Batches of ``DocRef`` (scanned with ``signer`` spilling into ``spill_dir``;
    ``written`` completes with the scan) -> ``(kept batches, removed or None,
    gate, spills deleted)``."""
    result = refs | "NearDedup" >> RemoveNearDuplicates(
        signer.config, signer, spill_dir, written, with_removed=args.write_removed,
        batch_bytes=batch_bytes)
    return result["kept"], result.get("removed"), result["gate"], result["spills_deleted"]
