"""Risk per voter, by session and by address hash, recomputed with every leaderboard snapshot.

Each detector gives its evidence in -log10(p) units (a p-value of 1e-4 is evidence 4) or, for the rate-like
ones, scaled so that reaching its limit is exactly the threshold. A voter's score is its strongest evidence;
at ``ARENA_TRUST_RISK_THRESHOLD`` (3.5 by default: about three honest voters in ten thousand per detector) the
voter is flagged and its votes are left out of the leaderboard until staff clear it.

Detectors (decisive votes are A or B better; ties and both-bad count only for rates):

- ``votes_per_hour``: most votes in any 60 minutes, against ``ARENA_TRUST_MAX_VOTES_PER_HOUR`` (five times that
  for an address, which many people may share).
- ``fast_votes``: share of votes cast sooner after both answers finished than the answers can be read
  (``FAST_READ_CHARS_PER_SECOND``, about three times a fast reader); at least half of 5 or more votes.
- ``position_bias``: decisive votes for A against a fair coin (exact binomial test, two-sided).
- ``unlikely_votes``: how likely the voter's decisive votes are under the current ratings, against what
  votes drawn from those ratings would give (log-likelihood, normal approximation, one-sided).
- ``favours_model``: per model the voter met, its wins in the voter's decisive votes against what the ratings
  predict (exact Poisson-binomial tails, two-sided, Bonferroni over the models): a rigging voter's target,
  or the rivals it votes against.
- ``repeated_prompts``: nearly all of 20 or more battles repeat an earlier prompt of the voter's. Listed as a
  reason, but never enough on its own to flag (people re-ask their own test prompt).
- ``abandoned``: battles left unvoted once both answers were in, when the voter went on to another battle,
  against the arena-wide share (one-sided binomial): a rigging voter skips battles without its target.

"The current ratings" are a Bradley-Terry fit of the counted votes, and each voter is measured against that fit
without its own votes (leave-one-out, to first order: one Newton step from the full fit, ``theta + H^-1 g``
with the voter's gradient ``g``), so a rigger's own votes do not lift the target it is measured on. The fit is
then repeated without the voters flagged so far, and without those suspected (at ``SUSPECT_SHARE`` of the
threshold, not counting the supporting-only repeated prompts: they still count on the board; and only while the
yardstick keeps ``YARDSTICK_MIN_SHARE`` of the votes), until both sets stop changing (at most ``ROUNDS`` fits), so a
rigging crowd does not set the yardstick it is measured with either. A voter who cast most of some
model's votes it met (over ``LEAVE_OUT_MAX_SHARE``, a tenth) is measured against the full fit: without its
votes the rest are too few to stand as a yardstick (their noise would flag honest voters of a small arena). Imported battles
(session ``import:...``) are judged where they were collected and left alone here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, FloatField, Func, Max, Sum
from django.db.models.functions import Length
from django.utils import timezone
# The distributions' ufuncs, not scipy.stats' objects: a snapshot calls them for every voter, and each
# scipy.stats call spends some 100 us checking its arguments.
from scipy.special import bdtr, bdtrc, ndtr

from arena.models import Battle, Turn, Vote
from arena.selectors import row_chunks, with_side_models
from ratings import aggregate
from ratings.bradley_terry import fit_bradley_terry, hessian

from .models import VoterRisk

FAST_READ_CHARS_PER_SECOND = 180.0  # ~30 words a second
FAST_MIN_VOTES = 5
FAST_SHARE = 0.5
REPEAT_MIN_BATTLES = 20
REPEAT_SHARE = 0.9
SUPPORTING = 0.9
SUPPORTING_ONLY = frozenset({"repeated_prompts"})  # never flags, nor suspects, a voter on its own
# Suspected voters leave the yardstick only while it keeps at least this share of the votes: where suspicion
# would take most of them, the rest are too few to measure anyone by.
YARDSTICK_MIN_SHARE = 0.5
ADDRESS_RATE_FACTOR = 5
MIN_DECISIVE = 5
ROUNDS = 5
# Voters at half the threshold stay out of the yardstick (not off the board), unless they cast over a tenth of
# some model's votes: in a small arena that would leave too few honest votes to judge by.
SUSPECT_SHARE = 0.5
MAX_PREDICTIVE_VARIANCE = 1.0  # of a rating difference, natural units (one unit is 174 points)
LEAVE_OUT_MAX_SHARE = 0.1
EXACT_TAIL_MAX = 400
OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5, "bothbad": 0.5}


class Reason(TypedDict):
    detector: str
    evidence: float
    text: str


@dataclass
class VoteTable:
    """The counted votes, one row each: (N,) arrays. ``left``/``right`` index ``model_ids``."""

    vote_ids: np.ndarray
    session: np.ndarray  # object: session keys
    address: np.ndarray  # object: address hashes ("" when unknown)
    left: np.ndarray
    right: np.ndarray
    outcome: np.ndarray
    voted_at: np.ndarray  # Unix seconds
    wait: np.ndarray  # seconds from both answers done to the vote; nan when unknown
    answer_chars: np.ndarray  # characters of one turn of both answers, averaged over the turns
    model_ids: np.ndarray


@dataclass
class BattleTable:
    """Every anonymous battle of a live voter: (B,) arrays."""

    session: np.ndarray
    address: np.ndarray
    created: np.ndarray
    voted: np.ndarray
    answered: np.ndarray  # both sides' last turns done
    prompt: np.ndarray  # normalised first prompt


@dataclass
class Verdict:
    kind: str
    key: str
    score: float
    reasons: list[Reason]
    features: dict[str, Any]
    votes: int
    heavy: bool = False  # cast over LEAVE_OUT_MAX_SHARE of some model's votes: never only suspected
    suspicion: float = 0.0  # the score without supporting-only evidence (repeated prompts): what suspects a voter


@dataclass
class RiskResult:
    """What the snapshot job needs: the vote ids to leave out, and who was flagged."""

    excluded_vote_ids: set[int] = field(default_factory=set)
    flagged: list[Verdict] = field(default_factory=list)
    voters: int = 0


def _normalise(prompt: str) -> str:
    return re.sub(r"\W+", " ", prompt.lower()).strip()


def _live(session_key: str) -> bool:
    return not session_key.startswith("import:")


class Epoch(Func):
    """Seconds since 1970 of a datetime, computed by the database (no datetime objects per row)."""

    output_field = FloatField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)::float8", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)",
                           **extra)


def vote_table(vote_ids: Iterable[int] | None = None) -> VoteTable:
    """The anonymous votes of live voters, restricted to ``vote_ids`` (the votes the leaderboard counts).

    One streamed query: each vote with both sides' models and its battle's turns summed (last finished, answer
    characters, how many), so a million votes cost one pass and no per-row datetimes."""
    wanted = None if vote_ids is None else np.unique(np.fromiter((int(v) for v in vote_ids), dtype=np.int64))
    queryset = (
        with_side_models(Vote.objects.filter(battle__mode=Battle.Mode.ANONYMOUS)
                         .exclude(battle__session_key__startswith="import:"))
        .filter(left_side__model_id__gt=0, right_side__model_id__gt=0)
        .values("id", "choice", "battle__session_key", "battle__ip_hash", "left_side__model_id",
                "right_side__model_id")
        .annotate(voted_at=Epoch("created_at"), done=Epoch(Max("battle__sides__turns__finished_at")),
                  chars=Sum(Length("battle__sides__turns__response")), turns=Count("battle__sides__turns__id"))
        .order_by("id")
        .values_list("id", "choice", "battle__session_key", "battle__ip_hash", "left_side__model_id",
                     "right_side__model_id", "voted_at", "done", "chars", "turns")
    )
    shared: dict[str, str] = {}
    ids, outcome, numbers, session, address = [], [], [], [], []
    for rows in row_chunks(queryset):
        if wanted is not None:
            keep = np.isin(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), wanted)
            rows = [r for r, k in zip(rows, keep.tolist()) if k]
        for r in rows:
            ids.append(r[0])
            outcome.append(OUTCOME[r[1]])
            session.append(shared.setdefault(r[2], r[2]))
            address.append(shared.setdefault(r[3] or "", r[3] or ""))
        numbers.append(np.array([r[4:] for r in rows], dtype=np.float64).reshape(-1, 6))
    table = np.concatenate(numbers) if numbers else np.zeros((0, 6))
    left, right = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    model_ids = np.unique(np.concatenate([left, right]))
    done, turns = table[:, 3], table[:, 5]
    return VoteTable(
        vote_ids=np.array(ids, dtype=np.int64),
        session=np.array(session, dtype=object),
        address=np.array(address, dtype=object),
        left=np.searchsorted(model_ids, left),
        right=np.searchsorted(model_ids, right),
        outcome=np.array(outcome, dtype=np.float64),
        voted_at=table[:, 2].copy(),
        wait=table[:, 2] - done,  # nan where no turn has finished
        answer_chars=np.where(turns > 0, 2.0 * np.nan_to_num(table[:, 4]) / np.maximum(turns, 1), 0.0),
        model_ids=model_ids,
    )


def battle_table() -> BattleTable:
    battles = list(
        Battle.objects.filter(mode=Battle.Mode.ANONYMOUS).exclude(session_key__startswith="import:")
        .order_by("id").values_list("id", "session_key", "ip_hash", "created_at")
        .annotate(voted=Count("vote"))
    )
    first_prompt = dict(
        Turn.objects.filter(side__battle__mode=Battle.Mode.ANONYMOUS, side__position="left", index=0)
        .exclude(side__battle__session_key__startswith="import:")
        .values_list("side__battle_id", "prompt")
    )
    # Unvoted battles: were both sides' last answers in?
    unvoted = [b[0] for b in battles if not b[4]]
    last: dict[int, int] = {}
    undone: set[int] = set()
    statuses: list[tuple[int, int, str]] = []
    for start in range(0, len(unvoted), 5000):
        statuses += list(Turn.objects.filter(side__battle_id__in=unvoted[start:start + 5000])
                         .values_list("side__battle_id", "index", "status"))
    for battle_id, idx, _ in statuses:
        last[battle_id] = max(last.get(battle_id, -1), idx)
    for battle_id, idx, status in statuses:
        if idx == last[battle_id] and status != Turn.Status.DONE:
            undone.add(battle_id)
    return BattleTable(
        session=np.array([b[1] for b in battles], dtype=object),
        address=np.array([b[2] or "" for b in battles], dtype=object),
        created=np.array([b[3].timestamp() for b in battles], dtype=np.float64),
        voted=np.array([bool(b[4]) for b in battles], dtype=bool),
        answered=np.array([bool(b[4]) or (b[0] in last and b[0] not in undone) for b in battles], dtype=bool),
        prompt=np.array([_normalise(first_prompt.get(b[0], "")) for b in battles], dtype=object),
    )


@dataclass
class Yardstick:
    """The ratings voters are measured against: a fit of the kept votes, and what one voter's votes weigh in it."""

    theta: np.ndarray  # (M,) log-strengths of the full fit
    inverse_hessian: np.ndarray | None  # (M, M), None when there is nothing to fit
    model_votes: np.ndarray  # (M,) kept votes per model
    keep: np.ndarray

    @classmethod
    def fit(cls, votes: VoteTable, keep: np.ndarray) -> "Yardstick":
        m = votes.model_ids.size
        if m < 2 or not keep.any():
            return cls(np.zeros(m), None, np.zeros(m), keep)
        counts = aggregate(votes.left[keep], votes.right[keep], votes.outcome[keep], m)
        theta = fit_bradley_terry(counts)
        return cls(theta, np.linalg.inv(hessian(counts, theta)), counts.votes(), keep)

    def without(self, votes: VoteTable, rows: np.ndarray) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------------------------
# Detectors: each takes one voter's rows and returns (evidence, text, features)


def _evidence(p: float) -> float:
    return float(-math.log10(max(p, 1e-300))) if p < 1 else 0.0


def _busiest_hour(times: np.ndarray) -> int:
    t = np.sort(times)
    ends = np.searchsorted(t, t + 3600.0, side="left")
    return int((ends - np.arange(t.size)).max()) if t.size else 0


def poisson_binomial_tails(p: np.ndarray, k: int) -> tuple[float, float]:
    """P(X >= k) and P(X <= k) for X a sum of independent Bernoulli(p_i); exact up to EXACT_TAIL_MAX terms."""
    upper, lower = poisson_binomial_tails_many([p], np.array([k]))
    return float(upper[0]), float(lower[0])


def poisson_binomial_tails_many(ps: list[np.ndarray], ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """poisson_binomial_tails for several (p, k) at once: one pass over the longest p for all the exact ones."""
    upper, lower = np.zeros(len(ps)), np.zeros(len(ps))
    exact = [i for i, p in enumerate(ps) if p.size <= EXACT_TAIL_MAX]
    for i in set(range(len(ps))) - set(exact):
        p, k = ps[i], ks[i]
        mu, sd = float(p.sum()), float(math.sqrt(max((p * (1 - p)).sum(), 1e-12)))
        upper[i], lower[i] = ndtr(-(k - 0.5 - mu) / sd), ndtr((k + 0.5 - mu) / sd)
    if exact:
        longest = max(ps[i].size for i in exact)
        q = np.zeros((len(exact), longest))  # padded with zeros: a Bernoulli(0) leaves the distribution as it is
        for row, i in enumerate(exact):
            q[row, :ps[i].size] = ps[i]
        dist = np.zeros((len(exact), longest + 1))
        dist[:, 0] = 1.0
        for column in range(longest):
            c = q[:, column:column + 1]
            dist[:, 1:] = dist[:, 1:] * (1 - c) + dist[:, :-1] * c
            dist[:, 0] *= 1 - c[:, 0]
        cumulative = np.cumsum(dist, axis=1)
        k = ks[exact].astype(np.int64)
        rows = np.arange(len(exact))
        below = np.where(k > 0, cumulative[rows, np.maximum(k - 1, 0)], 0.0)
        upper[exact] = cumulative[:, -1] - below
        lower[exact] = cumulative[rows, np.minimum(k, longest)]
    return upper, lower


def binomial_two_sided_half(k: int, n: int) -> float:
    """The two-sided exact binomial test of k successes in n against a fair coin (scipy's binomtest with p=0.5,
    whose distribution is symmetric): twice the smaller tail, at most 1."""
    return float(min(1.0, 2.0 * bdtr(min(k, n - k), n, 0.5)))


@dataclass
class Context:
    theta: np.ndarray
    covariance: np.ndarray | None  # (M, M) of theta, or None: theta taken as exact
    model_ids: np.ndarray
    abandon_rate: float
    rate_limit: int


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
            ctx = Context(theta=yardstick.without(votes, rows), covariance=yardstick.inverse_hessian,
                          model_ids=votes.model_ids,
                          abandon_rate=abandon_rate, rate_limit=limit)
            reasons, features = detect(votes, rows, battles, brows, ctx)
            score = max((r["evidence"] for r in reasons), default=0.0)
            own = np.bincount(votes.left[rows], minlength=m) + np.bincount(votes.right[rows], minlength=m)
            heavy = bool(np.any(own > LEAVE_OUT_MAX_SHARE * everyone))
            suspicion = max((r["evidence"] for r in reasons if r["detector"] not in SUPPORTING_ONLY), default=0.0)
            verdicts.append(Verdict(str(kind), key, float(score), reasons, features, int(rows.size), heavy,
                                    float(suspicion)))
    return verdicts


def suspected(verdict: Verdict) -> bool:
    """Kept out of the yardstick (not off the board): a suspicion of SUSPECT_SHARE of the threshold, unless the
    voter cast over LEAVE_OUT_MAX_SHARE of some model's votes."""
    return verdict.suspicion >= SUSPECT_SHARE * settings.ARENA_TRUST_RISK_THRESHOLD and not verdict.heavy


def _excluded_mask(votes: VoteTable, flagged: dict[tuple[str, str], bool]) -> np.ndarray:
    """True for votes of voters whose records exclude them."""
    out = np.zeros(votes.vote_ids.size, dtype=bool)
    for kind, keys in (("session", votes.session), ("address", votes.address)):
        distinct, inverse = _codes(keys)
        if distinct:
            out |= np.array([bool(k) and flagged.get((kind, k), False) for k in distinct], dtype=bool)[inverse]
    return out


Keys = dict[tuple[str, str], bool]


def voters_settle(
    votes: VoteTable, battles: BattleTable, excluding: Callable[[list[Verdict]], Keys],
    suspecting: Callable[[list[Verdict]], Keys] | None = None,
) -> tuple[list[Verdict], Keys]:
    """Assess every voter, then again against a fit without the voters ``excluding`` leaves out and those
    ``suspecting`` names (by default: a suspicion of at least ``SUSPECT_SHARE`` of the threshold), until both sets
    stop changing (at most ``ROUNDS`` fits): the last verdicts and who they leave out. Suspected voters stay on
    the board; they only stay out of the yardstick, so that riggers just under the line do not prop each other
    up."""
    if suspecting is None:
        suspecting = lambda verdicts: {(v.kind, v.key): suspected(v) for v in verdicts}  # noqa: E731

    def yardstick_out(verdicts: list[Verdict], left: Keys) -> Keys:
        suspected = suspecting(verdicts)
        apart = {key: out or suspected.get(key, False) for key, out in left.items()}
        if votes.vote_ids.size and (~_excluded_mask(votes, apart)).mean() < YARDSTICK_MIN_SHARE:
            return left
        return apart

    verdicts = voters_assess(votes, battles)
    left_out = excluding(verdicts)
    apart = yardstick_out(verdicts, left_out)
    for _ in range(ROUNDS - 1):
        verdicts = voters_assess(votes, battles, keep=~_excluded_mask(votes, apart))
        now = excluding(verdicts)
        apart_now = yardstick_out(verdicts, now)
        if now == left_out and apart_now == apart:
            break
        left_out, apart = now, apart_now
    return verdicts, left_out


def risk_recompute(vote_ids: Iterable[int] | None = None) -> RiskResult:
    """Score every live voter of the counted votes, store the records of those at or above the threshold,
    and return the vote ids the leaderboard should leave out (flagged and confirmed voters; never cleared)."""
    threshold = settings.ARENA_TRUST_RISK_THRESHOLD
    votes = vote_table(vote_ids)
    battles = battle_table()
    reviewed = {(r.kind, r.key): r.state for r in VoterRisk.objects.exclude(
        state__in=[VoterRisk.State.FLAGGED, VoterRisk.State.LAPSED]).only("kind", "key", "state")}

    def excluding(verdicts: list[Verdict]) -> dict[tuple[str, str], bool]:
        out = {}
        for v in verdicts:
            state = reviewed.get((v.kind, v.key))
            out[(v.kind, v.key)] = state == VoterRisk.State.CONFIRMED or (
                state != VoterRisk.State.CLEARED and v.score >= threshold)
        return out

    def suspecting(verdicts: list[Verdict]) -> Keys:
        return {(v.kind, v.key): reviewed.get((v.kind, v.key)) != VoterRisk.State.CLEARED and suspected(v)
                for v in verdicts}

    verdicts, excluding_now = voters_settle(votes, battles, excluding, suspecting)
    excluded = _excluded_mask(votes, excluding_now)
    flagged = [v for v in verdicts if v.score >= threshold]
    _store(verdicts, threshold)
    return RiskResult(
        excluded_vote_ids=set(votes.vote_ids[excluded].tolist()),
        flagged=[v for v in flagged if excluding_now[(v.kind, v.key)]],
        voters=len(verdicts),
    )


def _store(verdicts: list[Verdict], threshold: float) -> None:
    """Write the records: new ones flagged; flagged ones lapse below the threshold and come back above it;
    staff decisions (cleared, confirmed) stay, with the score kept current."""
    now = timezone.now()
    current = {(v.kind, v.key): v for v in verdicts}
    with transaction.atomic():
        existing = {(r.kind, r.key): r for r in VoterRisk.objects.select_for_update()}
        for key, v in current.items():
            record = existing.get(key)
            if record is None:
                if v.score >= threshold:
                    VoterRisk.objects.create(kind=v.kind, key=v.key, state=VoterRisk.State.FLAGGED, score=v.score,
                                             reasons=v.reasons, features=v.features, votes=v.votes, computed_at=now)
                continue
            record.score, record.reasons, record.features, record.votes = v.score, v.reasons, v.features, v.votes
            record.computed_at = now
            if record.state in (VoterRisk.State.FLAGGED, VoterRisk.State.LAPSED):
                record.state = VoterRisk.State.FLAGGED if v.score >= threshold else VoterRisk.State.LAPSED
            record.save()
    # A voter with no counted votes any more keeps its record as it was.


def risk_review(record: VoterRisk, *, state: str, by: str) -> None:
    """Staff's decision on a record: cleared (count the votes) or confirmed (leave them out), or back to flagged."""
    if state not in (VoterRisk.State.CLEARED, VoterRisk.State.CONFIRMED, VoterRisk.State.FLAGGED):
        raise ValueError(f"unknown review state {state!r}")
    VoterRisk.objects.filter(pk=record.pk).update(state=state, reviewed_by=by[:150], reviewed_at=timezone.now())
