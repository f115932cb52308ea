"""Command line: ``python -m ratings BATTLES`` prints the ranking CSV; needs no database.

BATTLES is a CSV, Parquet or JSON Lines file (by its name, or ``--format``). With no option: plain
Bradley-Terry, 95% sandwich intervals with the Hessian as bread, no anchor (arena-rank's defaults, except
that arena-rank adds 1e-5 x the battles to the bread's diagonal: ``--arena-rank-compatible`` does that too).
Warnings (a model that never won or never lost) go to standard error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# pyarrow imports pandas, if it can, on its first conversion (0.2 s of a 2 s run); nothing here needs it.
sys.modules.setdefault("pandas", None)  # an import of pandas now raises ImportError, which pyarrow expects

from .csvio import FORMATS, STYLE_COLUMNS, BattleFileError, read_battles  # noqa: E402
from .pairs import DisconnectedGraphError  # noqa: E402
from .ranking import CI_METHODS, one_sided_warnings, rate, ranking_to_csv  # noqa: E402


def _anchor(text: str) -> tuple[str, float]:
    # Split on the last "=" because model names may contain one; scores never do.
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected MODEL=SCORE, got {text!r}")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"score in {text!r} is not a number") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ratings",
        description="Bradley-Terry ranking (400 scale) of pairwise battles; writes rank,model,score,lower,"
        "upper,votes as CSV to standard output.",
    )
    parser.add_argument("battles", help="CSV, Parquet or JSON Lines file with columns model_a,model_b,winner "
                        "('-' for standard input); winner is model_a, model_b, tie or tie (bothbad)")
    parser.add_argument("--format", choices=FORMATS, help="file format (default: from the file name's suffix, "
                        ".parquet/.pq, .jsonl/.ndjson/.json, anything else CSV)")
    parser.add_argument("--ci", choices=CI_METHODS, default="sandwich", help="interval method (default sandwich)")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    parser.add_argument("--anchor", type=_anchor, metavar="MODEL=SCORE", help="pin MODEL at SCORE")
    parser.add_argument("--style", action="store_true",
                        help="also fit style control; the CSV must carry " + ",".join(STYLE_COLUMNS)
                        + "; adds style_rank,style_score,style_lower,style_upper and prints the style "
                        "coefficients to standard error")
    parser.add_argument("--arena-rank-compatible", action="store_true",
                        help="sandwich intervals as arena-rank 0.1.1 computes them: 1e-5 x the number of battles "
                        "added to the Hessian's diagonal, which narrows the intervals of rarely seen models "
                        "(no effect with --ci bootstrap)")
    args = parser.parse_args(argv)
    try:
        battles = read_battles(sys.stdin if args.battles == "-" else args.battles, style=args.style,
                               format=args.format)
        ranking = rate(
            battles.model_a, battles.model_b, battles.outcome, battles.names,
            ci=args.ci, rounds=args.rounds, seed=args.seed, anchor=args.anchor,
            style=battles.style, level=args.level, arena_rank_compatible=args.arena_rank_compatible,
        )
    except (BattleFileError, DisconnectedGraphError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in one_sided_warnings(ranking):
        print(f"warning: {warning}", file=sys.stderr)
    ranking_to_csv(ranking, sys.stdout)
    if ranking.style_coefficients is not None:
        for name, c, lo, hi in zip(ranking.style_features, ranking.style_coefficients,
                                   ranking.style_coefficient_lower, ranking.style_coefficient_upper):
            print(f"style coefficient {name}: {c:.4f} [{lo:.4f}, {hi:.4f}] log-odds per sd", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
