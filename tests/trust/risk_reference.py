"""The voter screen's definition, one voter at a time: trust.risk computes the same for every voter at once
(grouped numpy), and tests/trust/test_yardstick.py checks that the two agree on every voter, feature and text.
This is the straightforward reading of each detector; trust.risk's docstring says what each one means."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from scipy.special import bdtrc, ndtr

from trust.models import VoterRisk
from trust.risk import (
    ADDRESS_RATE_FACTOR, FAST_MIN_VOTES, FAST_READ_CHARS_PER_SECOND, FAST_SHARE, LEAVE_OUT_MAX_SHARE,
    MAX_PREDICTIVE_VARIANCE, MIN_DECISIVE, NEVER_SUSPECTS, REPEAT_MIN_BATTLES, REPEAT_SHARE, SUPPORTING, SUPPORTING_ONLY,
    BattleTable, Reason, Verdict, VoteTable, Yardstick, binomial_two_sided_half, poisson_binomial_tails_many,
)


def _evidence(p: float) -> float:
    return float(-math.log10(max(p, 1e-300))) if p < 1 else 0.0


def _busiest_hour(times: np.ndarray) -> int:
    t = np.sort(times)
    ends = np.searchsorted(t, t + 3600.0, side="left")
    return int((ends - np.arange(t.size)).max()) if t.size else 0


@dataclass
class Context:
    theta: np.ndarray
    covariance: np.ndarray | None
    model_ids: np.ndarray
    abandon_rate: float
    rate_limit: int


def without(self: Yardstick, votes: VoteTable, rows: np.ndarray) -> np.ndarray:
    """(M,) the fit without the kept votes among ``rows``, to first order; the models they never met keep
    the full fit's values (their change is second order here and unused by the detectors)."""
    kept = rows[self.keep[rows]] if rows.size else rows
    if self.inverse_hessian is None or not kept.size:
        return self.theta
    a, b, y = votes.left[kept], votes.right[kept], votes.outcome[kept]
    met = np.unique(np.concatenate([a, b]))
    own = np.bincount(a, minlength=self.theta.size) + np.bincount(b, minlength=self.theta.size)
    if np.any(own[met] > LEAVE_OUT_MAX_SHARE * self.model_votes[met]):
        return self.theta
    r = 1.0 / (1.0 + np.exp(self.theta[b] - self.theta[a])) - y  # d(NLL)/d(theta_a) of each vote
    g = np.bincount(a, r, self.theta.size) - np.bincount(b, r, self.theta.size)
    out = self.theta.copy()
    out[met] += self.inverse_hessian[np.ix_(met, met)] @ g[met]
    return out



def detect(votes: VoteTable, rows: np.ndarray, battles: BattleTable, brows: np.ndarray,
           ctx: Context) -> tuple[list[Reason], dict[str, Any]]:
    threshold = settings.ARENA_TRUST_RISK_THRESHOLD
    reasons: list[Reason] = []
    features: dict[str, Any] = {"votes": int(rows.size), "battles": int(brows.size)}

    def add(detector: str, evidence: float, text: str) -> None:
        features[f"{detector}_evidence"] = round(evidence, 2)
        if evidence > 0:
            reasons.append({"detector": detector, "evidence": round(float(evidence), 2), "text": text})

    # Rates
    busiest = _busiest_hour(votes.voted_at[rows])
    features["busiest_hour"] = busiest
    add("votes_per_hour", threshold * busiest / ctx.rate_limit,
        f"{busiest} votes within one hour (limit {ctx.rate_limit})")
    wait = votes.wait[rows]
    known = ~np.isnan(wait)
    need = votes.answer_chars[rows] / FAST_READ_CHARS_PER_SECOND
    fast = int(np.sum(known & (wait < need)))
    features["fast_votes"] = fast
    if known.sum() >= FAST_MIN_VOTES:
        share = fast / int(known.sum())
        add("fast_votes", threshold * share / FAST_SHARE if share >= FAST_SHARE else 0.0,
            f"{fast} of {int(known.sum())} votes came faster than the answers can be read")

    # Position bias and likelihood, on decisive votes
    y = votes.outcome[rows]
    decisive = y != 0.5
    n = int(decisive.sum())
    k_left = int(np.sum(y[decisive] == 1.0))
    features["decisive"], features["for_a"] = n, k_left
    if n:
        p = binomial_two_sided_half(k_left, n)
        add("position_bias", _evidence(p), f"{k_left} of {n} decisive votes for A (p = {p:.2g})")
    a, b = votes.left[rows][decisive], votes.right[rows][decisive]
    won_left = y[decisive] == 1.0
    d = ctx.theta[a] - ctx.theta[b]
    if ctx.covariance is not None and n:
        # The yardstick is itself an estimate: predict with its uncertainty (the probit approximation of the
        # logistic integrated over a normal d), so a voter is not blamed for what the ratings cannot know yet.
        # Capped: a model that never won (or never lost) has no finite estimate, and the ridge alone bounds its
        # variance, which would pull every prediction about it back to a coin flip.
        cov = ctx.covariance
        var_d = np.clip(cov[a, a] + cov[b, b] - 2 * cov[a, b], 0.0, MAX_PREDICTIVE_VARIANCE)
        d = d / np.sqrt(1.0 + np.pi * var_d / 8.0)
    p_left = 1.0 / (1.0 + np.exp(-d)) if n else np.zeros(0)
    p_left = np.clip(p_left, 1e-6, 1 - 1e-6)
    if n >= MIN_DECISIVE:
        chosen = np.where(won_left, p_left, 1 - p_left)
        loglik = float(np.log(chosen).sum())
        expected = float(np.sum(p_left * np.log(p_left) + (1 - p_left) * np.log(1 - p_left)))
        variance = float(np.sum(p_left * (1 - p_left) * np.log(p_left / (1 - p_left)) ** 2))
        if variance > 1e-9:
            z = (expected - loglik) / math.sqrt(variance)
            p = float(ndtr(-z))
            features["unlikely_z"] = round(z, 2)
            add("unlikely_votes", _evidence(p),
                f"decisive votes much less likely under the ratings than an ordinary voter's (z = {z:.1f})")
    # Favoured (or disfavoured) models
    if n >= MIN_DECISIVE:
        met = np.unique(np.concatenate([a, b]))
        best = (1.0, None, 0, 0, 0.0)
        tested, p_wins, wins_of = [], [], []
        for m in met:
            as_left, as_right = a == m, b == m
            p_win = np.concatenate([p_left[as_left], 1 - p_left[as_right]])
            if p_win.size < MIN_DECISIVE:
                continue
            tested.append(int(m))
            p_wins.append(p_win)
            wins_of.append(int(won_left[as_left].sum() + (~won_left[as_right]).sum()))
        if tested:
            uppers, lowers = poisson_binomial_tails_many(p_wins, np.array(wins_of))
            for m, p_win, wins, upper, lower in zip(tested, p_wins, wins_of, uppers, lowers):
                p = min(1.0, 2 * min(float(upper), float(lower)))
                if p < best[0]:
                    best = (p, m, wins, int(p_win.size), float(p_win.sum()))
        if best[1] is not None:
            p = min(1.0, best[0] * met.size)
            model_id = int(ctx.model_ids[best[1]])
            features["favoured_model_id"] = model_id
            direction = "for" if best[2] > best[4] else "against"
            add("favours_model", _evidence(p),
                f"votes {direction} model #{model_id}: {best[2]} wins in {best[3]} decisive votes where the "
                f"ratings expect {best[4]:.1f} (p = {p:.2g})")

    # Battles: repeated prompts and battles left after the answers
    nb = int(brows.size)
    if nb:
        prompts = battles.prompt[brows]
        repeats = nb - len(set(prompts.tolist()))
        features["repeated_prompts"] = repeats
        if nb >= REPEAT_MIN_BATTLES and repeats / nb >= REPEAT_SHARE:
            # Supporting evidence only, just under the threshold: people do re-ask their own test prompt.
            add("repeated_prompts", SUPPORTING * threshold, f"{repeats} of {nb} battles repeat an earlier prompt")
        order = np.argsort(battles.created[brows])
        eligible = brows[order][:-1]  # the latest battle may still be voted on
        gone = int(np.sum(battles.answered[eligible] & ~battles.voted[eligible]))
        answered = int(battles.answered[eligible].sum())
        features["abandoned"], features["answered_battles"] = gone, answered
        if answered:
            p = float(bdtrc(gone - 1, answered, ctx.abandon_rate)) if gone else 1.0
            add("abandoned", _evidence(p),
                f"{gone} of {answered} battles left unvoted once both answers were in "
                f"(arena-wide {ctx.abandon_rate:.0%}, p = {p:.2g})")
    reasons.sort(key=lambda r: -r["evidence"])
    return reasons, features


def _codes(keys: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(distinct keys in order of first appearance, each row's index into them) of an object array of keys."""
    index: dict[str, int] = {}
    inverse = np.fromiter((index.setdefault(k, len(index)) for k in keys.tolist()), dtype=np.int64, count=keys.size)
    return list(index), inverse


def _groups(keys: np.ndarray) -> dict[str, np.ndarray]:
    distinct, inverse = _codes(keys)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(distinct) + 1))
    return {k: order[bounds[i]:bounds[i + 1]] for i, k in enumerate(distinct) if k}


def voters_assess(votes: VoteTable, battles: BattleTable, *, keep: np.ndarray | None = None) -> list[Verdict]:
    """Every voter's verdict (sessions and addresses), each measured against the ratings fitted on the ``keep``
    votes without its own."""
    yardstick = Yardstick.fit(votes, np.ones(votes.vote_ids.size, dtype=bool) if keep is None else keep)
    rate = float(np.sum(battles.answered & ~battles.voted) / max(1, battles.answered.sum()))
    abandon_rate = min(0.5, max(0.05, rate))
    verdicts = []
    empty = np.zeros(0, dtype=np.int64)
    m = votes.model_ids.size
    everyone = np.bincount(votes.left, minlength=m) + np.bincount(votes.right, minlength=m)
    for kind, vkeys, bkeys, limit in (
        (VoterRisk.Kind.SESSION, votes.session, battles.session, settings.ARENA_TRUST_MAX_VOTES_PER_HOUR),
        (VoterRisk.Kind.ADDRESS, votes.address, battles.address,
         settings.ARENA_TRUST_MAX_VOTES_PER_HOUR * ADDRESS_RATE_FACTOR),
    ):
        by_vote, by_battle = _groups(vkeys), _groups(bkeys)
        for key in sorted(set(by_vote) | set(by_battle)):
            rows, brows = by_vote.get(key, empty), by_battle.get(key, empty)
            ctx = Context(theta=without(yardstick, votes, rows), covariance=yardstick.inverse_hessian,
                          model_ids=votes.model_ids,
                          abandon_rate=abandon_rate, rate_limit=limit)
            reasons, features = detect(votes, rows, battles, brows, ctx)
            score = max((r["evidence"] for r in reasons), default=0.0)
            own = np.bincount(votes.left[rows], minlength=m) + np.bincount(votes.right[rows], minlength=m)
            heavy = bool(np.any(own > LEAVE_OUT_MAX_SHARE * everyone))
            suspicion = max((r["evidence"] for r in reasons if r["detector"] not in NEVER_SUSPECTS), default=0.0)
            verdicts.append(Verdict(str(kind), key, float(score), reasons, features, int(rows.size), heavy,
                                    float(suspicion)))
    return verdicts
