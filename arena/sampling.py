"""Which two models meet in an anonymous battle.

Two ways to draw, one set of rules. The configured draw takes a first model by sampling weight (an in-house one
with probability ``inhouse_share``) and its rival by sampling weight (times the rival factor in in-house battles).
The active draw (``active_strength`` > 0 with a current fit) draws the pair at once from a blend of the configured
draw's exact pair probabilities and the value of a vote on each pair for the decisions that matter
(``ratings.design``: the in-house models' gaps to their parents, board neighbours and named rivals, and the
ambiguous neighbours of the public ranking), every eligible pair keeping a floor share. In both, only the
candidates given are drawn (the caller keeps breaker and pool liveness), previews stay apart, left and right are
random, and nothing the voter sends enters the draw.

The registry's sampling knobs (FastChat's SAMPLING_BOOST_MODELS, BATTLE_TARGETS and exclusions) come in as
:class:`SamplingRules` and apply to both draws: a new model's weight times its boost until it has enough votes, a
model drawn first meeting one of its battle targets in its target share of draws, and pairs that never meet.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

import numpy as np

from models_hub.models import ModelEntry
from ratings.design import blend_pair_weights, decision_targets, pair_values


# The cache key under which the leaderboard leaves what the draw reads from its latest public snapshot.
DRAW_FIT_CACHE_KEY = "arena:draw-fit:v1"


class DrawFit(TypedDict):
    """What the latest public snapshot's overall category gives the draw: ``models`` (rows with ``model_id``,
    ``score``, ``lower``, ``upper``) and their ``covariance`` (the shape :meth:`ActiveFit.from_category` reads),
    and ``votes``, counted votes per model entry pk (left-out models included) for the boosts."""

    snapshot_id: int
    models: list[dict]
    covariance: list[list[float]]
    votes: dict[int, float]


class NoPairAvailable(Exception):
    pass


def breaker_closed(candidates: Sequence[ModelEntry], *, now: datetime) -> list[ModelEntry]:
    """The candidates whose circuit breaker lets them be drawn at `now`: a model whose recent turns keep failing
    sits out its cool-down (see models_hub.models.breaker_record), then is drawn again to show it answers."""
    return [e for e in candidates if not e.breaker_is_open(now)]


def _weighted_choice(rng: random.Random, entries: Sequence[ModelEntry], weights: Sequence[float]) -> ModelEntry:
    total = sum(weights)
    if total <= 0:
        raise NoPairAvailable("no model with a positive sampling weight")
    return rng.choices(list(entries), weights=list(weights), k=1)[0]


@dataclass(frozen=True)
class ActiveFit:
    """The current fit the active draw reads: ``model_ids`` (M,) model entry pks, ``scores`` (M,) and
    ``covariance`` (M, M) on the board's scale, ``lower``/``upper`` (M,) the board's interval bounds. Built by the
    leaderboard from its latest snapshot (server-side data only)."""

    model_ids: Sequence[int]
    scores: np.ndarray
    covariance: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def from_category(cls, category: Mapping) -> ActiveFit:
        """From one category of a leaderboard snapshot's payload (``models`` best first with ``model_id``,
        ``score``, ``lower``, ``upper``; ``covariance`` in the same order)."""
        rows = category["models"]
        return cls(
            model_ids=[int(r["model_id"]) for r in rows],
            scores=np.array([r["score"] for r in rows], dtype=np.float64),
            covariance=np.array(category["covariance"], dtype=np.float64).reshape(len(rows), len(rows)),
            lower=np.array([r["lower"] for r in rows], dtype=np.float64),
            upper=np.array([r["upper"] for r in rows], dtype=np.float64),
        )


@dataclass(frozen=True)
class SamplingRules:
    """The registry's per-model knobs, by model entry pk: ``targets`` the battle targets of a model, ``votes`` the
    counted votes the latest leaderboard gives each model (absent: none yet, so a boost applies), ``never`` the
    unordered pairs never drawn. A model's ``battle_target_share``, ``boost_factor`` and ``boost_until_votes`` are
    read from its entry."""

    targets: Mapping[int, frozenset[int]] = field(default_factory=dict)
    votes: Mapping[int, float] = field(default_factory=dict)
    never: frozenset[frozenset[int]] = frozenset()

    @classmethod
    def from_entries(cls, entries: Sequence[ModelEntry], *, votes: Mapping[int, float]) -> SamplingRules:
        """From saved entries with ``battle_targets`` and ``never_meets`` prefetched."""
        return cls(
            targets={
                e.pk: frozenset(t.pk for t in e.battle_targets.all()) for e in entries if e.battle_target_share > 0
            },
            votes=votes,
            never=frozenset(frozenset((e.pk, o.pk)) for e in entries for o in e.never_meets.all()),
        )

    def weight(self, entry: ModelEntry) -> float:
        """The sampling weight, times the boost while the model has fewer votes than its boost lasts for."""
        boosted = entry.boost_factor > 1 and self.votes.get(entry.pk, 0) < entry.boost_until_votes
        return entry.sampling_weight * (entry.boost_factor if boosted else 1.0)

    def target_share(self, entry: ModelEntry) -> float:
        return entry.battle_target_share if self.targets.get(entry.pk) else 0.0


NO_RULES = SamplingRules()


def _may_meet(a: ModelEntry, b: ModelEntry, previews_meet: bool, rules: SamplingRules = NO_RULES) -> bool:
    return (
        a.pk != b.pk and (previews_meet or not (a.is_preview and b.is_preview))
        and frozenset((a.pk, b.pk)) not in rules.never
    )


def configured_pair_probabilities(
    pool: Sequence[ModelEntry],
    *,
    inhouse_share: float = 0.0,
    rivals: Mapping[str, float] | None = None,
    previews_meet: bool = False,
    rules: SamplingRules = NO_RULES,
) -> np.ndarray:
    """(M, M) symmetric probability that the configured draw of :func:`pair_sample` picks each unordered pair of
    ``pool`` (entries with positive weight), the upper triangle summing to 1 (0 everywhere when no pair may
    meet). Computed exactly from the two-stage draw: first model by weight, then its rival by weight (one of its
    battle targets in its target share)."""
    m = len(pool)
    rivals = rivals or {}
    out = np.zeros((m, m))
    w = np.array([rules.weight(e) for e in pool], dtype=np.float64)
    meet = np.array([[_may_meet(a, b, previews_meet, rules) for b in pool] for a in pool], dtype=bool).reshape(m, m)
    targeted = np.array([[b.pk in rules.targets.get(a.pk, ()) for b in pool] for a in pool], dtype=bool).reshape(m, m)
    target_share = np.array([rules.target_share(e) for e in pool], dtype=np.float64)
    factor = np.array([rivals.get(e.slug, 1.0) for e in pool], dtype=np.float64)
    inhouse = np.array([e.is_inhouse for e in pool], dtype=bool)

    def stage(firsts: np.ndarray, partner_weight: np.ndarray, mass: float) -> None:
        fw = np.where(firsts, w, 0.0)
        if fw.sum() <= 0 or mass <= 0:
            return
        for i in np.flatnonzero(fw):
            pw = np.where(meet[i], partner_weight, 0.0)
            if pw.sum() > 0:
                rival = pw / pw.sum()
                tw = np.where(meet[i] & targeted[i], w, 0.0)
                if target_share[i] > 0 and tw.sum() > 0:
                    rival = target_share[i] * tw / tw.sum() + (1 - target_share[i]) * rival
                share = mass * fw[i] / fw.sum() * rival
                out[i] += share
                out[:, i] += share

    has_partner = (meet & (w > 0)[None, :]).any(axis=1)
    share = inhouse_share if inhouse.any() else 0.0
    stage(inhouse & has_partner, w * factor, share)
    stage(has_partner, w, 1.0 - share)
    total = np.triu(out, 1).sum()
    return out / total if total > 0 else out


def _active_pair(
    pool: Sequence[ModelEntry],
    fit: ActiveFit,
    *,
    rng: random.Random,
    strength: float,
    floor: float,
    inhouse_share: float,
    rivals: Mapping[str, float],
    previews_meet: bool,
    rules: SamplingRules,
) -> tuple[ModelEntry, ModelEntry]:
    m = len(pool)
    base = configured_pair_probabilities(
        pool, inhouse_share=inhouse_share, rivals=rivals, previews_meet=previews_meet, rules=rules
    )
    eligible = np.array([[_may_meet(a, b, previews_meet, rules) for b in pool] for a in pool], dtype=bool).reshape(m, m)
    if not eligible.any():
        raise NoPairAvailable("no two models may meet")
    where = {int(pk): k for k, pk in enumerate(fit.model_ids)}
    fitted = [where.get(e.pk) for e in pool]
    known = [k for k, f in enumerate(fitted) if f is not None]
    value = np.zeros((m, m))
    if len(known) >= 2:
        sub = np.array([fitted[k] for k in known])
        scores = np.asarray(fit.scores, dtype=np.float64)[sub]
        cov = np.asarray(fit.covariance, dtype=np.float64)[np.ix_(sub, sub)]
        local = {pool[k].pk: n for n, k in enumerate(known)}
        parents = {
            local[pool[k].pk]: local[pool[k].parent_id]
            for k in known
            if pool[k].parent_id in local
        }
        targets, weights = decision_targets(
            scores, np.asarray(fit.lower, dtype=np.float64)[sub], np.asarray(fit.upper, dtype=np.float64)[sub],
            inhouse=[n for n, k in enumerate(known) if pool[k].is_inhouse],
            parents=parents,
            rivals=[n for n, k in enumerate(known) if pool[k].slug in rivals],
        )
        value[np.ix_(known, known)] = pair_values(scores, cov, targets, weights)
    # A model the fit has not seen yet (a new version) is worth as much as the best-valued pair: its every gap is open.
    unseen = [k for k, f in enumerate(fitted) if f is None]
    if unseen:
        top = value.max() if value.max() > 0 else 1.0
        value[unseen, :] = top
        value[:, unseen] = top
    probs = blend_pair_weights(base, value, eligible, strength=strength, floor=floor)
    ia, ib = np.triu_indices(m, 1)
    k = rng.choices(range(ia.size), weights=probs[ia, ib].tolist(), k=1)[0]
    pair = [pool[int(ia[k])], pool[int(ib[k])]]
    rng.shuffle(pair)
    return pair[0], pair[1]


def pair_sample(
    candidates: Sequence[ModelEntry],
    *,
    rng: random.Random,
    inhouse_share: float = 0.0,
    rivals: dict[str, float] | None = None,
    previews_meet: bool = False,
    active_fit: ActiveFit | None = None,
    active_strength: float = 0.0,
    active_floor: float = 0.2,
    rules: SamplingRules = NO_RULES,
) -> tuple[ModelEntry, ModelEntry]:
    """Draw two distinct models and return them as (left, right) in random order.

    With probability `inhouse_share` one of them is an in-house model and its rival is drawn by sampling weight
    times the factor `rivals` gives it; otherwise both are drawn by sampling weight alone. Unless `previews_meet`,
    two preview models are never drawn together. Raises NoPairAvailable when no valid pair exists.

    With `active_strength` > 0 and an `active_fit`, the pair is drawn at once from the configured draw's pair
    probabilities blended with the value of a vote on each pair (see the module notes), every eligible pair
    keeping at least `active_floor` / (number of eligible pairs) of the draws. `rng` is the caller's
    (SystemRandom in production; a seeded `random.Random` in tests and benchmarks). `rules`: the registry's
    boosts, battle targets and pairs never drawn (see :class:`SamplingRules`), in both draws.
    """
    pool = [e for e in candidates if e.sampling_weight > 0]
    if len(pool) < 2:
        raise NoPairAvailable("fewer than two models are available")
    rivals = rivals or {}
    if active_fit is not None and active_strength > 0:
        return _active_pair(
            pool, active_fit, rng=rng, strength=active_strength, floor=active_floor,
            inhouse_share=inhouse_share, rivals=rivals, previews_meet=previews_meet, rules=rules,
        )
    inhouse = [e for e in pool if e.is_inhouse]

    weight = rules.weight

    def partners_of(first: ModelEntry) -> list[ModelEntry]:
        return [e for e in pool if _may_meet(first, e, previews_meet, rules)]

    if inhouse and rng.random() < inhouse_share:
        first = _weighted_choice(rng, inhouse, [weight(e) for e in inhouse])
        partners = partners_of(first)
        weights = [weight(e) * rivals.get(e.slug, 1.0) for e in partners]
    else:
        firsts = [e for e in pool if partners_of(e)]
        if not firsts:
            raise NoPairAvailable("no two models may meet")
        first = _weighted_choice(rng, firsts, [weight(e) for e in firsts])
        partners = partners_of(first)
        weights = [weight(e) for e in partners]
    if not partners:
        raise NoPairAvailable("no rival is available")
    share = rules.target_share(first)
    if share > 0:
        targets = [e for e in partners if e.pk in rules.targets[first.pk]]
        if targets and rng.random() < share:
            partners, weights = targets, [weight(e) for e in targets]
    second = _weighted_choice(rng, partners, weights)
    pair = [first, second]
    rng.shuffle(pair)
    return pair[0], pair[1]
