"""Command line: ``python -m ratings BATTLES.csv`` prints the ranking CSV; needs no database.

With no option: plain Bradley-Terry, 95% sandwich intervals, no anchor (arena-rank's defaults).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .csvio import STYLE_COLUMNS, BattleFileError, read_battles_csv
from .pairs import DisconnectedGraphError
from .ranking import CI_METHODS, rate, ranking_to_csv


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
    parser.add_argument("battles", help="CSV with columns model_a,model_b,winner ('-' for standard input); "
                        "winner is model_a, model_b, tie or tie (bothbad)")
    parser.add_argument("--ci", choices=CI_METHODS, default="sandwich", help="interval method (default sandwich)")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    parser.add_argument("--anchor", type=_anchor, metavar="MODEL=SCORE", help="pin MODEL at SCORE")
    parser.add_argument("--style", action="store_true",
                        help="also fit style control; the CSV must carry " + ",".join(STYLE_COLUMNS)
                        + "; adds style_rank,style_score,style_lower,style_upper and prints the style "
                        "coefficients to standard error")
    args = parser.parse_args(argv)
    try:
        battles = read_battles_csv(sys.stdin if args.battles == "-" else args.battles, style=args.style)
        ranking = rate(
            battles.model_a, battles.model_b, battles.outcome, battles.names,
            ci=args.ci, rounds=args.rounds, seed=args.seed, anchor=args.anchor,
            style=battles.style, level=args.level,
        )
    except (BattleFileError, DisconnectedGraphError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ranking_to_csv(ranking, sys.stdout)
    if ranking.style_coefficients is not None:
        for name, c, lo, hi in zip(ranking.style_features, ranking.style_coefficients,
                                   ranking.style_coefficient_lower, ranking.style_coefficient_upper):
            print(f"style coefficient {name}: {c:.4f} [{lo:.4f}, {hi:.4f}] log-odds per sd", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
