"""Statistics of the arena: Bradley-Terry leaderboards from pairwise votes. Pure numpy/scipy (pyarrow to read files), no Django.

Battles are arrays: ``model_a`` (N,) and ``model_b`` (N,) integer indices into a list of M model names,
``outcome`` (N,) 1 if A won, 0 if B won, 0.5 for a tie or both-bad (half a win to each side, arena-rank's
default), optional ``weights`` (N,) frequency weights, optional ``style`` (N, 2, K) per-side style counts.

Public API
----------
``rate(model_a_idx, model_b_idx, outcome, names, *, weights=None, ci="sandwich", rounds=1000, seed=0,
anchor=None, style=None, style_names=None, level=0.95, arena_rank_compatible=False, balance_pairs=False,
prompts=None, prompt_cap=None) -> Ranking``
    The leaderboard in one call: Bradley-Terry scores on the 400 / ln(10) scale (mean 1000, or
    ``anchor=(name, score)`` pins one model), sandwich or bootstrap intervals, "Rank (UB)" ranks, votes,
    and with ``style`` the style-controlled scores and coefficients. Scores as arena-rank 0.1.1's
    ``BradleyTerry`` defaults; sandwich intervals from the plain Hessian, where arena-rank adds 1e-5 x the
    number of battles to its diagonal and so narrows the intervals of rarely seen models
    (``arena_rank_compatible=True`` reproduces arena-rank's interval widths to 0.5 points). A model that never won or
    never lost keeps a placeholder score (``Ranking.never_won()`` / ``never_lost()``,
    ``one_sided_warnings(ranking)``) and is left out of the centring. ``balance_pairs`` weights each battle by
    the inverse of its pair's frequency; ``prompts`` with ``prompt_cap`` lets a repeated prompt count for at most
    ``prompt_cap`` votes (``ratings.weights``).
``Ranking``
    Result dataclass (names, scores, lower, upper, rank, votes, covariance, pair_battles, style_* ...).
``ranking_to_csv(ranking, out=None) -> str``
    ``rank,model,score,lower,upper,votes`` (+ ``style_rank,style_score,style_lower,style_upper``), highest score first.
``head_to_head(ranking, model, rival, *, level=None, style_controlled=False) -> HeadToHead``
    P(model better), interval on the score difference, and the votes the pair still needs.
``sequential_head_to_head(ranking, model, rival, *, alpha=0.05, tuned_votes=1000, min_votes=30) -> SequentialHeadToHead``
    The always-valid answer: a confidence sequence on the difference (valid however often it is looked at),
    the verdict "better" / "worse" / "not yet", and the votes still needed from the same boundary.
    ``best_of_versions(ranking, versions, rival)`` judges the best of K versions at alpha / K;
    ``provisional(votes_since_last_sibling, fresh_votes=2000)`` marks versions still provisional.
``style_counts(text, tokenizer=None) -> (tokens, headers, list_items, bold)``
    Style features of one markdown answer, for building ``style``.
``aggregate(model_a, model_b, outcome, n_models, weights=None) -> PairCounts``
    The O(N) reduction to per-pair totals everything else works on; ``PairCounts.check_connected(names)``.
``observed_win_matrix(counts) -> (wins, battles)``, ``predicted_win_matrix(scores) -> (M, M)``
    Win-rate matrices.
``online_elo(model_a, model_b, outcome, n_models, *, k=4.0) -> (M,)``
    FastChat-style online Elo, for comparison only.
``read_battles(source, *, style=False, format=None) -> Battles``
    LMArena-shaped battle files (``model_a,model_b,winner``) in CSV, Parquet or JSON Lines, read by
    pyarrow's columnar readers; used by the command line. ``read_battles_csv`` is the same for CSV.
``DisconnectedGraphError``
    Raised when the votes do not link all models; ``.components`` names them.

Lower-level pieces (``fit_bradley_terry``, ``sandwich_covariance``, ``bootstrap_thetas``,
``rank_upper_bound``, ``fit_style_controlled``, ``style_features``) live in the submodules; their docstrings
hold the method notes.

Command line: ``python -m ratings BATTLES [--format csv|parquet|jsonl] [--ci sandwich|bootstrap] [--rounds N]
[--seed S] [--level L] [--anchor MODEL=SCORE] [--style] [--arena-rank-compatible]`` writes the ranking CSV to
standard output and warnings to standard error.
"""

from __future__ import annotations

from .bradley_terry import rank_upper_bound
from .csvio import FORMATS, Battles, BattleFileError, read_battles, read_battles_csv
from .elo import online_elo
from .head_to_head import HeadToHead, head_to_head
from .matrices import observed_win_matrix, predicted_win_matrix
from .pairs import DisconnectedGraphError, PairCounts, aggregate
from .ranking import Ranking, one_sided_warnings, rate, ranking_to_csv
from .sequential import (
    BestOfVersions,
    SequentialHeadToHead,
    best_of_versions,
    provisional,
    sequence_half_width,
    sequential_head_to_head,
    votes_still_needed,
)
from .style import STYLE_FEATURES, style_counts

__all__ = [
    "STYLE_FEATURES",
    "BattleFileError",
    "FORMATS",
    "Battles",
    "BestOfVersions",
    "DisconnectedGraphError",
    "HeadToHead",
    "PairCounts",
    "Ranking",
    "SequentialHeadToHead",
    "aggregate",
    "best_of_versions",
    "head_to_head",
    "observed_win_matrix",
    "one_sided_warnings",
    "online_elo",
    "predicted_win_matrix",
    "provisional",
    "rank_upper_bound",
    "rate",
    "ranking_to_csv",
    "read_battles",
    "read_battles_csv",
    "sequence_half_width",
    "sequential_head_to_head",
    "style_counts",
    "votes_still_needed",
]
