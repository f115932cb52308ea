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
threshold, not counting the supporting-only repeated prompts nor the one-sided unlikely votes, ``NEVER_SUSPECTS``:
they still count on the board; and only while the
yardstick keeps ``YARDSTICK_MIN_SHARE`` of the votes), until both sets stop changing or the fit stops moving (no model by ``STILL``, a hundredth of a point; at most
``ROUNDS`` fits), so a rigging crowd does not set the yardstick it is measured with either. A voter who cast most of some
model's votes it met (over ``LEAVE_OUT_MAX_SHARE``, a tenth) is measured against the full fit: without its
votes the rest are too few to stand as a yardstick (their noise would flag honest voters of a small arena). Imported battles
(session ``import:...``) are judged where they were collected and left alone here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Length
from django.utils import timezone
# The distributions' ufuncs, not scipy.stats' objects: a snapshot calls them for every voter, and each
# scipy.stats call spends some 100 us checking its arguments.
from scipy.special import bdtr, bdtrc, ndtr

from arena.facts import copy_columns, copy_timestamps, key_code, memory_release, prompt_code as prompt_key_code
from arena.models import Battle, Turn, Vote
from arena.selectors import Epoch, row_chunks, with_side_models
from ratings import aggregate
from ratings.bradley_terry import SCALE, fit_bradley_terry, hessian

from .models import VoterRisk

FAST_READ_CHARS_PER_SECOND = 180.0  # ~30 words a second
FAST_MIN_VOTES = 5
FAST_SHARE = 0.5
REPEAT_MIN_BATTLES = 20
REPEAT_SHARE = 0.9
SUPPORTING = 0.9
SUPPORTING_ONLY = frozenset({"repeated_prompts"})  # never flags, nor suspects, a voter on its own
# Flags, but never suspects: its test is one-sided against the yardstick (votes less likely than the fit expects),
# so the honest voters it suspects by chance are those who happened to favour the fit's underdogs, and leaving them
# out of the next fit stretches it (2-3% on honest voters alone, 18 points at a million votes), which suspects more
# of them the round after. Riggers leave the yardstick through the two-sided tests (favoured models, position).
NEVER_SUSPECTS = SUPPORTING_ONLY | {"unlikely_votes"}
# Suspected voters leave the yardstick only while it keeps at least this share of the votes: where suspicion
# would take most of them, the rest are too few to measure anyone by.
YARDSTICK_MIN_SHARE = 0.5
ADDRESS_RATE_FACTOR = 5
MIN_DECISIVE = 5
ROUNDS = 5
# A round whose fit rates every model within this of the last one's (natural units: 0.01 points) ends the rounds:
# among hundreds of thousands of voters, the few at the edge of suspicion swap places every round without moving
# the ratings, so the sets would not settle, and the verdicts no longer change.
STILL = 0.01 / SCALE
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
    session: np.ndarray  # session keys (object), or their codes (int64: arena.facts.key_code), as the readers give them
    address: np.ndarray  # address hashes ("" when unknown), or their codes (0)
    left: np.ndarray
    right: np.ndarray
    outcome: np.ndarray
    voted_at: np.ndarray  # Unix seconds
    wait: np.ndarray  # seconds from both answers done to the vote; nan when unknown
    answer_chars: np.ndarray  # characters of one turn of both answers, averaged over the turns
    model_ids: np.ndarray

    @classmethod
    def from_columns(cls, *, vote_ids: np.ndarray, session: np.ndarray, address: np.ndarray, left: np.ndarray,
                     right: np.ndarray, outcome: np.ndarray, voted_at: np.ndarray, done: np.ndarray,
                     chars: np.ndarray, turns: np.ndarray) -> "VoteTable":
        """From per-vote columns: ``left``/``right`` model entry ids, ``done`` when the battle's last turn finished
        (nan when none did), ``chars`` and ``turns`` its answers' characters and turns summed over both sides."""
        left, right = np.asarray(left), np.asarray(right)
        if left.dtype.kind not in "iu" or right.dtype.kind not in "iu":  # the ORM reader's float columns
            left, right = left.astype(np.int64), right.astype(np.int64)
        model_ids = np.unique(np.concatenate([np.unique(left), np.unique(right)])).astype(np.int64)
        # Model indices in the narrowest integer that holds them, through a table of the ids where they are small
        # (model entry ids are).
        index = _model_index(model_ids)
        narrow = _model_dtype(model_ids.size)
        # Outcomes (0, 0.5, 1), seconds and characters in 32-bit floats: exact, and the fast-vote test compares
        # times and lengths to within a few per cent.
        return cls(
            vote_ids=np.asarray(vote_ids, dtype=np.int64), session=session, address=address,
            left=index(left).astype(narrow), right=index(right).astype(narrow),
            outcome=np.asarray(outcome, dtype=np.float32), voted_at=np.asarray(voted_at, dtype=np.float64),
            wait=(voted_at - done).astype(np.float32),  # nan where no turn has finished
            answer_chars=np.where(turns > 0, 2.0 * chars / np.maximum(turns, 1), 0.0).astype(np.float32),
            model_ids=model_ids,
        )


def columns_empty(table: Any, names: Iterable[str]) -> None:
    """Replace these array columns of ``table`` by empty ones of their dtype, freeing what only they held: for a
    caller done with columns of a table others still hold."""
    for name in names:
        setattr(table, name, getattr(table, name)[:0].copy())


def _model_index(model_ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function from model ids (all among the sorted ``model_ids``) to their int32 positions there."""
    if model_ids.size and 0 <= model_ids[0] and model_ids[-1] < 1 << 24:
        table = np.zeros(int(model_ids[-1]) + 1, dtype=np.int32)
        table[model_ids] = np.arange(model_ids.size, dtype=np.int32)
        return lambda ids: table[ids]
    return lambda ids: np.searchsorted(model_ids, ids).astype(np.int32)


@dataclass
class BattleTable:
    """Every anonymous battle of a live voter: (B,) arrays.

    ``of_votes``: the first ``of_votes`` battles are those of the vote table's rows, in its order (as the snapshot
    builds it from the votes' fact rows: ``with_vote_battles``); their voters are the votes' own, so ``session``
    and ``address`` hold only the battles after them."""

    session: np.ndarray
    address: np.ndarray
    created: np.ndarray
    voted: np.ndarray
    answered: np.ndarray  # both sides' last turns done
    prompt: np.ndarray  # normalised first prompt: strings, or codes (arena.facts.prompt_code; 0 for not known)
    of_votes: int = 0

    def with_vote_battles(self, votes: "VoteTable", started: np.ndarray, prompt: np.ndarray) -> "BattleTable":
        """The battles of ``votes`` (each vote's battle: when it started, its prompt code), then these (the
        battles none of the votes is on, as ``battle_table(beyond_votes=True)`` reads them)."""
        if self.of_votes:
            raise ValueError("the table already holds the votes' battles")
        n = votes.vote_ids.size
        return BattleTable(
            session=self.session, address=self.address,
            created=np.concatenate([started, self.created]), voted=np.concatenate([np.ones(n, bool), self.voted]),
            answered=np.concatenate([np.ones(n, bool), self.answered]),
            prompt=np.concatenate([prompt, self.prompt]), of_votes=n,
        )


@dataclass
class Verdict:
    kind: str
    key: str
    score: float
    reasons: list[Reason]
    features: dict[str, Any]
    votes: int
    heavy: bool = False  # cast over LEAVE_OUT_MAX_SHARE of some model's votes: never only suspected
    suspicion: float = 0.0  # the score without NEVER_SUSPECTS' evidence: what suspects a voter


@dataclass
class RiskResult:
    """What the snapshot job needs: the vote ids to leave out, and who was flagged."""

    excluded_vote_ids: set[int] = field(default_factory=set)
    flagged: list[Verdict] = field(default_factory=list)
    voters: int = 0


def vote_table(vote_ids: Iterable[int] | None = None) -> VoteTable:
    """The anonymous votes of live voters, restricted to ``vote_ids`` (the votes the leaderboard counts).

    Two streamed reads and no per-row datetimes: each vote with both sides' models, then every turn of a live
    anonymous battle (when it finished, its answer's characters), summed per battle here. Summed by the database
    instead, the grouping sorts every turn, spilling to disk at a million votes."""
    wanted = None if vote_ids is None else np.unique(np.fromiter((int(v) for v in vote_ids), dtype=np.int64))
    anonymous = Vote.objects.filter(battle__mode=Battle.Mode.ANONYMOUS).exclude(
        battle__session_key__startswith="import:")
    queryset = (
        with_side_models(anonymous)
        .filter(left_side__model_id__gt=0, right_side__model_id__gt=0)
        .annotate(voted_at=Epoch("created_at"))
        .order_by("id")
        .values_list("id", "choice", "battle__session_key", "battle__ip_hash", "battle_id", "left_side__model_id",
                     "right_side__model_id", "voted_at")
    )
    codes: dict[str, int] = {}
    ids, outcome, numbers, session, address = [], [], [], [], []
    for rows in row_chunks(queryset):
        if wanted is not None:
            keep = np.isin(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), wanted)
            rows = [r for r, k in zip(rows, keep.tolist()) if k]
        for r in rows:
            ids.append(r[0])
            outcome.append(OUTCOME[r[1]])
            session.append(codes[r[2]] if r[2] in codes else codes.setdefault(r[2], key_code(r[2])))
            address.append(codes[r[3] or ""] if (r[3] or "") in codes else codes.setdefault(r[3] or "", key_code(r[3])))
        numbers.append(np.array([r[4:] for r in rows], dtype=np.float64).reshape(-1, 4))
    table = np.concatenate(numbers) if numbers else np.zeros((0, 4))
    battle_ids = table[:, 0].astype(np.int64)
    order = np.argsort(battle_ids, kind="stable")
    sorted_ids = battle_ids[order]
    n = battle_ids.size
    done = np.full(n, -np.inf)
    chars, turns = np.zeros(n), np.zeros(n)
    turns_qs = (
        Turn.objects.filter(side__battle__mode=Battle.Mode.ANONYMOUS)
        .exclude(side__battle__session_key__startswith="import:")
        .order_by()
        .annotate(done=Epoch("finished_at"), chars=Length("response"))
        .values_list("side__battle_id", "done", "chars")
    )
    for rows in row_chunks(turns_qs):
        chunk = np.array(rows, dtype=np.float64).reshape(-1, 3)
        at = np.searchsorted(sorted_ids, chunk[:, 0].astype(np.int64))
        found = at < n
        found[found] = sorted_ids[at[found]] == chunk[found, 0].astype(np.int64)
        i = order[at[found]]  # a battle has one vote
        np.maximum.at(done, i, np.nan_to_num(chunk[found, 1], nan=-np.inf))
        np.add.at(chars, i, np.nan_to_num(chunk[found, 2]))
        np.add.at(turns, i, 1.0)
    return VoteTable.from_columns(
        vote_ids=np.array(ids, dtype=np.int64), session=np.array(session, dtype=np.int64),
        address=np.array(address, dtype=np.int64), left=table[:, 1], right=table[:, 2],
        outcome=np.array(outcome, dtype=np.float64), voted_at=table[:, 3].copy(),
        done=np.where(np.isfinite(done), done, np.nan), chars=chars, turns=turns,
    )


def battle_table(*, beyond_votes: bool = False) -> BattleTable:
    """Every live anonymous battle: its voter's codes (arena.facts.key_code), when it started, whether it was
    voted, whether both sides' last answers were in, and its normalised first prompt's code. Streamed as numbers;
    the first prompts are read only of battles written before their prompt's code was (prompt code 0).

    ``beyond_votes``: only the battles none of the text board's counted votes is on (the unvoted ones, and those
    whose vote counts on no board or on another), for a caller that has those votes' battles from their fact rows
    (``BattleTable.with_vote_battles``): at ten million votes, reading every battle took PostgreSQL seconds."""
    from arena.models import VoteFact

    live = Battle.objects.filter(mode=Battle.Mode.ANONYMOUS).exclude(session_key__startswith="import:")
    if beyond_votes:
        live = live.exclude(vote__fact__counted=True, vote__fact__modality="text", vote__fact__simulated=False)
    queryset = (
        live.order_by("id")
        .annotate(created=Epoch("created_at"), has_vote=Exists(Vote.objects.filter(battle=OuterRef("pk"))))
        .values_list("id", "session_code", "address_code", "prompt_code", "created", "has_vote")
    )
    if connection.vendor == "postgresql":
        # One binary COPY, written by hand: a join instead of a subquery per battle, and the timestamps as they are
        # stored (microseconds since 2000) instead of converted to seconds per row; each roughly halves what
        # PostgreSQL spends on ten million battles.
        battle, vote, fact = Battle._meta.db_table, Vote._meta.db_table, VoteFact._meta.db_table
        columns = "b.id, b.session_code, b.address_code, b.prompt_code, b.created_at"
        live_sql = "b.mode = %s AND b.session_key NOT LIKE %s"
        if beyond_votes:
            # The unvoted battles through their partial index (a battle whose flag is behind is taken unless a
            # fact row says it was voted), then those whose vote is off the text board, through the facts' partial
            # index of such votes. The conditions are the indexes' own, as written.
            sql = (f"SELECT {columns}, EXISTS (SELECT 1 FROM {vote} v WHERE v.battle_id = b.id) FROM {battle} b "
                   f"WHERE NOT b.voted AND {live_sql} AND NOT EXISTS (SELECT 1 FROM {vote} v JOIN {fact} f "
                   f"ON f.vote_id = v.id WHERE v.battle_id = b.id) "
                   f"UNION ALL SELECT {columns}, true FROM {fact} f JOIN {battle} b ON b.id = f.battle_id "
                   f"WHERE NOT (f.counted AND f.modality = 'text' AND NOT f.simulated) AND {live_sql} ORDER BY 1")
            params = [Battle.Mode.ANONYMOUS, "import:%"] * 2
        else:
            # The vote's battle id, not its id: the join then reads only the votes' battle index.
            sql = (f"SELECT {columns}, v.battle_id IS NOT NULL FROM {battle} b LEFT JOIN {vote} v "
                   f"ON v.battle_id = b.id WHERE {live_sql} ORDER BY b.id")
            params = [Battle.Mode.ANONYMOUS, "import:%"]
        got = copy_columns(sql, params, (("id", ">i8"), ("session", ">i8"), ("address", ">i8"), ("prompt", ">i8"),
                                         ("created", ">i8"), ("voted", "?")))
        battle_ids, session, address, prompt, created, voted = got.values()
        created = copy_timestamps(created)
    else:
        codes, numbers = [], []
        for rows in row_chunks(queryset):
            codes.append(np.array([r[:4] for r in rows], dtype=np.int64).reshape(-1, 4))
            numbers.append(np.array([(r[4], r[5]) for r in rows], dtype=np.float64).reshape(-1, 2))
        keys = np.concatenate(codes) if codes else np.zeros((0, 4), dtype=np.int64)
        table = np.concatenate(numbers) if numbers else np.zeros((0, 2))
        battle_ids, session, address, created = keys[:, 0], keys[:, 1].copy(), keys[:, 2].copy(), table[:, 0].copy()
        voted = table[:, 1] > 0
        prompt = keys[:, 3].copy()
    unknown = battle_ids[prompt == 0].tolist()
    for start in range(0, len(unknown), 5000):
        first = (Turn.objects.filter(side__battle_id__in=unknown[start:start + 5000], side__position="left", index=0)
                 .values_list("side__battle_id", "prompt"))
        for battle_id, text in first:
            prompt[np.searchsorted(battle_ids, battle_id)] = prompt_key_code(text)
    # Unvoted battles: were both sides' last answers in?
    unvoted = battle_ids[~voted].tolist()
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
    answered = voted.copy()
    if unvoted:
        complete = np.array([b in last and b not in undone for b in unvoted], dtype=bool)
        answered[np.flatnonzero(~voted)] = complete
    return BattleTable(
        session=session,
        address=address,
        created=created,
        voted=voted,
        answered=answered,
        prompt=prompt,
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

    def still(self, other: "Yardstick") -> bool:
        """Whether ``other`` rates every model as this one does, to within ``STILL``: measuring against it would
        give these verdicts again, to within rounding."""
        if self.inverse_hessian is None or other.inverse_hessian is None:
            return self.inverse_hessian is None and other.inverse_hessian is None
        return bool(np.max(np.abs(self.theta - other.theta)) < STILL)

    def shifts(self, votes: VoteTable, rows: np.ndarray, voter: np.ndarray, voters: int,
               gathered: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(voters, M): how far each voter's kept votes among ``rows`` (``voter[i]`` is row i's, in
        ``range(voters)``) move the fit, to first order: the fit without them is ``theta + shifts[v]``. Zero for the
        models a voter's kept votes never met (their change is second order and unused by the detectors), and for
        a voter who cast over LEAVE_OUT_MAX_SHARE of some model's kept votes (measured with its own votes).
        ``gathered``: the rows' (left, right, outcome) where the caller already holds them."""
        m = self.theta.size
        out = np.zeros((voters, m))
        kept = self.keep[rows]
        if self.inverse_hessian is None or not kept.any():
            return out
        left, right, outcome = gathered if gathered is not None else (
            votes.left[rows], votes.right[rows], votes.outcome[rows])
        v, a, b, y = voter[kept], left[kept], right[kept], outcome[kept]
        own = _per_voter_model(v, a, b, None, voters, m)
        r = 1.0 / (1.0 + np.exp(self.theta[b] - self.theta[a])) - y  # d(NLL)/d(theta_a) of each vote
        g = _per_voter_model(v, a, b, r, voters, m)
        out = g @ self.inverse_hessian  # symmetric: row v is H^-1 g_v
        heavy = np.any(own > LEAVE_OUT_MAX_SHARE * self.model_votes, axis=1)
        out *= (own > 0) & ~heavy[:, None]
        return out

    def without(self, votes: VoteTable, rows: np.ndarray) -> np.ndarray:
        """(M,) the fit without the kept votes among ``rows`` (one voter's), to first order."""
        return self.theta + self.shifts(votes, rows, np.zeros(rows.size, dtype=np.int64), 1)[0]


def _per_voter_model(v: np.ndarray, a: np.ndarray, b: np.ndarray, weight: np.ndarray | None, voters: int,
                     m: int) -> np.ndarray:
    """(voters, m): per voter and model, the votes that model was in (``weight`` None), or the sum of ``weight``
    with the left model's sign (a gradient)."""
    size = voters * m
    first = np.bincount(v * m + a, weight, minlength=size)
    second = np.bincount(v * m + b, weight, minlength=size)
    return (first + second if weight is None else first - second).reshape(voters, m)


# ---------------------------------------------------------------------------------------------------------------
# Detectors, for every voter of a kind at once: grouped numpy over the rows sorted by voter (a snapshot screens
# tens of thousands of voters per million votes, up to ROUNDS times).


def _evidence(p: np.ndarray | float) -> np.ndarray:
    """-log10(p) where p < 1, else 0 (p floored at 1e-300)."""
    p = np.asarray(p, dtype=np.float64)
    return np.where(p < 1, -np.log10(np.maximum(p, 1e-300)), 0.0)


def poisson_binomial_tails(p: np.ndarray, k: int) -> tuple[float, float]:
    """P(X >= k) and P(X <= k) for X a sum of independent Bernoulli(p_i); exact up to EXACT_TAIL_MAX terms."""
    upper, lower = poisson_binomial_tails_many([p], np.array([k]))
    return float(upper[0]), float(lower[0])


def poisson_binomial_tails_many(ps: list[np.ndarray], ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """poisson_binomial_tails for several (p, k) at once."""
    sizes = np.array([p.size for p in ps], dtype=np.int64)
    flat = np.concatenate(ps) if ps else np.zeros(0)
    return _tails_grouped(flat, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64), sizes,
                          np.asarray(ks, dtype=np.int64))


def _tails_grouped(flat: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
                   ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(X_g >= k_g) and P(X_g <= k_g) for groups g of ``flat`` (``flat[starts[g]:starts[g] + sizes[g]]``): exact
    up to EXACT_TAIL_MAX terms, one recursion for all the groups of similar length; the normal approximation past
    that."""
    n = sizes.size
    upper, lower = np.zeros(n), np.zeros(n)
    if not n:
        return upper, lower
    group = np.repeat(np.arange(n, dtype=_index_dtype(n)), sizes)
    big = sizes > EXACT_TAIL_MAX
    if big.any():
        mu = np.bincount(group, flat, n)[big]
        sd = np.sqrt(np.maximum(np.bincount(group, flat * (1 - flat), n)[big], 1e-12))
        upper[big], lower[big] = ndtr(-(ks[big] - 0.5 - mu) / sd), ndtr((ks[big] + 0.5 - mu) / sd)
    within = np.arange(flat.size, dtype=_index_dtype(flat.size)) - np.repeat(starts.astype(_index_dtype(flat.size)),
                                                                              sizes)
    shorter, width = -1, 8
    while shorter < EXACT_TAIL_MAX:  # lengths in (shorter, width]
        these = np.flatnonzero(~big & (sizes <= width) & (sizes > shorter))
        if these.size:
            q = np.zeros((these.size, width))  # padded with zeros: a Bernoulli(0) leaves the distribution as it is
            slot = np.full(n, -1, dtype=group.dtype)
            slot[these] = np.arange(these.size)
            at = slot[group]
            entries = at >= 0
            q[at[entries], within[entries]] = flat[entries]
            del at
            longest = int(sizes[these].max())
            dist = np.zeros((these.size, longest + 1))
            dist[:, 0] = 1.0
            for column in range(longest):
                c = q[:, column:column + 1]
                # After `column` trials only counts 0..column are possible: the rest of each row is still zero.
                # In place, one temporary: at a million groups the whole-row version was a third of a round.
                moved = dist[:, :column + 1] * c
                dist[:, 1:column + 2] *= 1 - c
                dist[:, 1:column + 2] += moved
                dist[:, 0] *= 1 - c[:, 0]
            cumulative = np.cumsum(dist, axis=1)
            k = ks[these]
            rows = np.arange(these.size)
            below = np.where(k > 0, cumulative[rows, np.maximum(k - 1, 0)], 0.0)
            upper[these] = cumulative[:, -1] - below
            lower[these] = cumulative[rows, np.minimum(k, longest)]
        shorter, width = width, min(2 * width, EXACT_TAIL_MAX)
    return upper, lower


def binomial_two_sided_half(k, n):
    """The two-sided exact binomial test of k successes in n against a fair coin (scipy's binomtest with p=0.5,
    whose distribution is symmetric): twice the smaller tail, at most 1. Scalars or arrays."""
    k, n = np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64)
    p = np.minimum(1.0, 2.0 * bdtr(np.minimum(k, n - k), n, 0.5))
    return float(p) if p.ndim == 0 else p


def _starts(sorted_codes: np.ndarray) -> np.ndarray:
    """Where each run of equal values begins in a sorted array."""
    if not sorted_codes.size:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate([[True], sorted_codes[1:] != sorted_codes[:-1]]))


def _group_max(values: np.ndarray, sorted_codes: np.ndarray, voters: int) -> np.ndarray:
    out = np.zeros(voters, dtype=values.dtype)
    starts = _starts(sorted_codes)
    if starts.size:
        out[sorted_codes[starts]] = np.maximum.reduceat(values, starts)
    return out


DETECTORS = ("votes_per_hour", "fast_votes", "position_bias", "unlikely_votes", "favours_model", "repeated_prompts",
             "abandoned")


@dataclass
class VoterIndex:
    """Every voter, sessions then addresses (each kind's keys sorted), and each vote's and battle's voter of each
    kind (-1 for none): built once per screening, shared by its rounds."""

    kind: np.ndarray  # (V,) object
    key: np.ndarray  # (V,) object
    kinds: dict[str, tuple[int, int]]  # kind -> the range of its voters
    vote_voter: dict[str, np.ndarray]  # kind -> (N,) global voter index or -1
    battle_voter: dict[str, np.ndarray]  # kind -> (B,); emptied once the static columns are made
    prompt_code: np.ndarray  # (B,) the battle's normalised first prompt, as an integer; likewise
    positions: dict[tuple[str, Any], int]  # (kind, key) -> voter, where ``key`` holds strings (codes: searched)
    votes: int
    static: dict[str, Any] | None = None  # the columns every round shares (voters_assess)

    names: dict[int, str] = field(default_factory=dict)  # voter -> its key, where ``key`` holds codes

    @classmethod
    def build(cls, votes: VoteTable, battles: BattleTable) -> "VoterIndex":
        """(``battles.of_votes``: the first battles are the votes' own, in their order; the vote table's keys are
        then theirs.) Keys may be strings ("" for none) or, as the database readers give them, 64-bit codes
        (arena.facts.key_code, 0 for none): codes are grouped with numpy, without a Python object per vote."""
        kinds, vote_voter, battle_voter, all_kinds, all_keys = {}, {}, {}, [], []
        positions: dict[tuple[str, Any], int] = {}
        for kind, vkeys, bkeys in ((str(VoterRisk.Kind.SESSION), votes.session, battles.session),
                                   (str(VoterRisk.Kind.ADDRESS), votes.address, battles.address)):
            offset = sum(len(k) for k in all_keys)
            if vkeys.dtype.kind in "iu" and bkeys.dtype.kind in "iu":
                # One hashing pass over the vote and battle rows gives the voters (sorted) and each row's voter at
                # once: pandas' factorize, three times numpy's sort-based unique on twenty million codes.
                inverse, distinct = pd.factorize(np.concatenate([vkeys, bkeys]), sort=True)
                none = distinct == 0  # code 0 is no key (codes are signed, so it may sort anywhere)
                voter = np.cumsum(~none, dtype=np.int64) - 1 + offset
                voter[none] = -1
                voter = voter.astype(_index_dtype(offset + distinct.size))[inverse]  # narrow: four rows per vote
                del inverse
                distinct = distinct[~none]
                # The votes' own battles first (of_votes): their voters are the votes'.
                vote_voter[kind] = voter[:vkeys.size]
                battle_voter[kind] = voter if battles.of_votes else voter[vkeys.size:]
                all_keys.append(distinct)
            else:
                distinct = sorted((set(vkeys.tolist()) | set(bkeys.tolist())) - {""})
                local = {k: offset + i for i, k in enumerate(distinct)}
                vote_voter[kind] = np.fromiter((local.get(k, -1) for k in vkeys.tolist()), np.int64, vkeys.size)
                battle_voter[kind] = np.fromiter((local.get(k, -1) for k in bkeys.tolist()), np.int64, bkeys.size)
                if battles.of_votes:
                    battle_voter[kind] = np.concatenate([vote_voter[kind], battle_voter[kind]])
                positions.update(((kind, k), i) for k, i in local.items())
                all_keys.append(np.array(distinct, dtype=object))
            kinds[kind] = (offset, offset + len(distinct))
            all_kinds += [kind] * len(distinct)
        if battles.prompt.dtype.kind in "iu":
            # Codes; 0 (not known) never repeats: each such battle gets a code of its own.
            prompt_code = pd.factorize(battles.prompt)[0].astype(_index_dtype(2 * battles.prompt.size))
            unknown = battles.prompt == 0
            prompt_code[unknown] = prompt_code.max(initial=0) + 1 + np.arange(int(unknown.sum()), dtype=prompt_code.dtype)
        else:
            prompts: dict[str, int] = {}
            prompt_code = np.fromiter((prompts.setdefault(p, len(prompts)) for p in battles.prompt.tolist()), np.int64,
                                      battles.prompt.size)
        coded = all(k.dtype.kind in "iu" for k in all_keys)
        key = (np.concatenate(all_keys) if coded else np.concatenate([k.astype(object) for k in all_keys])
               ) if all_keys else np.zeros(0, dtype=object)
        return cls(np.array(all_kinds, dtype=object), key, kinds, vote_voter,
                   battle_voter, prompt_code, positions, votes.vote_ids.size)

    @property
    def coded(self) -> bool:
        return self.key.dtype.kind in "iu"

    def position(self, kind: str, key: str) -> int | None:
        """The voter with this key, or None."""
        if not self.coded:
            return self.positions.get((kind, key))
        if kind not in self.kinds:
            return None
        lo, hi = self.kinds[kind]  # a kind's codes are sorted
        code = key_code(key)
        at = lo + int(np.searchsorted(self.key[lo:hi], code))
        return at if at < hi and int(self.key[at]) == code and code != 0 else None

    def key_of(self, i: int) -> str:
        """Voter ``i``'s key (for a coded index, as ``key_names`` resolved it)."""
        return self.names[i] if self.coded else str(self.key[i])

    def key_names(self, voters: Iterable[int]) -> None:
        """Resolve the keys of coded ``voters`` from the battles that carry their codes."""
        if not self.coded:
            return
        wanted = [int(i) for i in voters if int(i) not in self.names]
        sessions = {int(self.key[i]): i for i in wanted if self.kind[i] == VoterRisk.Kind.SESSION}
        addresses = {int(self.key[i]): i for i in wanted if self.kind[i] == VoterRisk.Kind.ADDRESS}
        s_codes, a_codes = list(sessions), list(addresses)
        # Both kinds in one read per chunk: the codes have no index, so each read is a scan of the battles.
        for start in range(0, max(len(s_codes), len(a_codes)), 5000):
            s_part, a_part = s_codes[start:start + 5000], a_codes[start:start + 5000]
            found = Battle.objects.filter(Q(session_code__in=s_part) | Q(address_code__in=a_part)).values_list(
                "session_code", "session_key", "address_code", "ip_hash").distinct()
            for s_code, s_key, a_code, a_key in found:
                if s_code in sessions:
                    self.names[sessions[s_code]] = s_key
                if a_code in addresses:
                    self.names[addresses[a_code]] = a_key
        missing = [i for i in wanted if i not in self.names]
        if missing:
            raise LookupError(f"no battle carries the key of {len(missing)} voters")

    def __len__(self) -> int:
        return self.key.size

    def vote_mask(self, voters: np.ndarray) -> np.ndarray:
        """(N,) True for the votes of any voter ``voters`` marks, by session or by address."""
        out = np.zeros(self.votes, dtype=bool)
        for codes in self.vote_voter.values():
            has = codes >= 0
            out[has] |= voters[codes[has]]
        return out


@dataclass
class Verdicts:
    """Every voter's verdict, as columns over VoterIndex's voters; ``verdicts[i]`` (or iterating) gives one
    voter's Verdict with its reasons and features, built on demand."""

    index: VoterIndex
    score: np.ndarray
    suspicion: np.ndarray  # the score without NEVER_SUSPECTS' evidence: what suspects a voter
    heavy: np.ndarray  # cast over LEAVE_OUT_MAX_SHARE of some model's votes: never only suspected
    votes: np.ndarray
    evidence: dict[str, np.ndarray]  # detector -> (V,)
    tested: dict[str, np.ndarray]  # detector -> (V,) whether it was applied (its evidence is then a feature)
    figures: dict[str, np.ndarray]  # what the texts and features quote
    rate_limit: np.ndarray
    abandon_rate: float
    model_ids: np.ndarray

    def __len__(self) -> int:
        return self.score.size

    def __iter__(self) -> Iterator[Verdict]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> Verdict:
        f = {name: values[i] for name, values in self.figures.items()}
        reasons: list[Reason] = []
        features: dict[str, Any] = {"votes": int(self.votes[i]), "battles": int(f["battles"]),
                                    "busiest_hour": int(f["busiest"]), "fast_votes": int(f["fast"]),
                                    "decisive": int(f["decisive"]), "for_a": int(f["for_a"])}
        if self.tested["unlikely_votes"][i]:
            features["unlikely_z"] = round(float(f["z"]), 2)
        if self.tested["favours_model"][i]:
            features["favoured_model_id"] = int(self.model_ids[int(f["favoured"])])
        if f["battles"]:
            features["repeated_prompts"] = int(f["repeats"])
            features["abandoned"], features["answered_battles"] = int(f["gone"]), int(f["answered"])
        direction = "for" if f["favoured_wins"] > f["favoured_expected"] else "against"
        texts = {
            "votes_per_hour": lambda: f"{int(f['busiest'])} votes within one hour (limit {int(self.rate_limit[i])})",
            "fast_votes": lambda: f"{int(f['fast'])} of {int(f['known'])} votes came faster than the answers can "
                                  f"be read",
            "position_bias": lambda: f"{int(f['for_a'])} of {int(f['decisive'])} decisive votes for A "
                                     f"(p = {f['p_position']:.2g})",
            "unlikely_votes": lambda: f"decisive votes much less likely under the ratings than an ordinary voter's "
                                      f"(z = {f['z']:.1f})",
            "favours_model": lambda: f"votes {direction} model #{int(self.model_ids[int(f['favoured'])])}: "
                                     f"{int(f['favoured_wins'])} wins in {int(f['favoured_votes'])} decisive votes "
                                     f"where the ratings expect {f['favoured_expected']:.1f} "
                                     f"(p = {f['p_favours']:.2g})",
            "repeated_prompts": lambda: f"{int(f['repeats'])} of {int(f['battles'])} battles repeat an earlier prompt",
            "abandoned": lambda: f"{int(f['gone'])} of {int(f['answered'])} battles left unvoted once both answers "
                                 f"were in (arena-wide {self.abandon_rate:.0%}, p = {f['p_abandoned']:.2g})",
        }
        for detector in DETECTORS:
            if not self.tested[detector][i]:
                continue
            evidence = float(self.evidence[detector][i])
            features[f"{detector}_evidence"] = round(evidence, 2)
            if evidence > 0:
                reasons.append({"detector": detector, "evidence": round(evidence, 2), "text": texts[detector]()})
        reasons.sort(key=lambda r: -r["evidence"])
        return Verdict(str(self.index.kind[i]), self.index.key_of(i), float(self.score[i]), reasons, features,
                       int(self.votes[i]), bool(self.heavy[i]), float(self.suspicion[i]))

    def keys(self, mask: np.ndarray) -> set[tuple[str, str]]:
        """(kind, key) of the voters ``mask`` marks."""
        rows = np.flatnonzero(mask)
        self.index.key_names(rows.tolist())
        return {(str(self.index.kind[i]), self.index.key_of(i)) for i in rows}


LEAVE_OUT_CHUNK = 1 << 20  # voters x models per chunk of the leave-one-out shifts (8 MiB a matrix)
YARDSTICK_DETECTORS = ("unlikely_votes", "favours_model")  # the rest do not depend on the fit
YARDSTICK_FIGURES = ("z", "favoured", "favoured_wins", "favoured_votes", "favoured_expected", "p_favours")


@dataclass
class KindRows:
    """One kind's vote rows grouped by voter, and the (voter, model) groups of their decisive votes: the same in
    every round, so sorted once."""

    span: tuple[int, int]
    rows: np.ndarray  # vote rows of a voter of this kind, by voter then time
    voter: np.ndarray  # (len(rows),) the voter, local to span
    decisive: np.ndarray  # (len(rows),)
    enough: np.ndarray  # (voters,) at least MIN_DECISIVE decisive votes
    met: np.ndarray  # (voters,) models met in decisive votes
    # Gathered once, read every round (narrow: they stay for the whole screening): the rows' models and outcomes.
    left: np.ndarray  # (len(rows),) int32
    right: np.ndarray
    outcome: np.ndarray  # float32 (1, 0 or 0.5)
    # The favoured-model test's (voter, model) groups: only those of at least MIN_DECISIVE decisive votes of a voter
    # with enough of them (few: most voters meet each model once or twice), each group's entries together.
    test_row: np.ndarray  # (entries,) the decisive vote, as an index into rows
    test_left: np.ndarray  # (entries,) the group's model was that vote's left one
    test_group: np.ndarray  # (entries,)
    group_voter: np.ndarray  # (groups,)
    group_model: np.ndarray
    group_size: np.ndarray
    wins: np.ndarray


def _static_kind(votes: VoteTable, battles: BattleTable, codes: np.ndarray, bcodes: np.ndarray,
                 prompt_code: np.ndarray, span: tuple[int, int], out: dict[str, Any], ctx: "Context") -> KindRows:
    """Fill ``out``'s columns that do not depend on the yardstick for the voters in ``span`` (their global
    indices), from the vote and battle rows whose voter (``codes``/``bcodes``) is one of them. Each detector's
    part is a function of its own, so that its temporaries are gone before the next one's (at ten million votes
    each is a few hundred megabytes)."""
    lo, hi = span
    nv = hi - lo
    m = votes.model_ids.size
    cut = slice(lo, hi)

    rows, c, stamp = _kind_rows(codes, lo, ctx.vote_ms)
    out["votes"][cut] = np.bincount(c, minlength=nv)
    _rate_columns(votes, rows, c, stamp, nv, cut, out, ctx)
    del stamp
    narrow = _model_dtype(m)
    left_rows, right_rows = votes.left[rows].astype(narrow), votes.right[rows].astype(narrow)
    y_rows = votes.outcome[rows].astype(np.float32)
    decisive, enough = _position_columns(y_rows, c, nv, cut, out)
    out["heavy"][cut] = _heavy(votes, c, left_rows, right_rows, nv, m)
    # Kept for every round, so narrow: 32-bit rows, voters, entries and counts halve what the screen holds.
    rows_t = _index_dtype(votes.vote_ids.size)
    groups = _favoured_groups(c, decisive, enough, left_rows, right_rows, y_rows, nv, m, rows_t)
    _battle_columns(battles, bcodes, prompt_code, lo, nv, cut, out, ctx)
    return KindRows(span=span, rows=rows.astype(rows_t, copy=False), voter=c.astype(_index_dtype(nv), copy=False),
                    decisive=decisive, enough=enough, left=left_rows, right=right_rows, outcome=y_rows, **groups)


def _kind_rows(codes: np.ndarray, lo: int, ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of a voter of this kind, by voter then time (``ms``: milliseconds since the first vote; equal times
    in row order), each one's voter local to the kind, and the sorted key: the voter above 42 bits of time."""
    rows = np.flatnonzero(codes >= 0).astype(_index_dtype(codes.size))
    c = codes[rows] - lo
    stamp = (c.astype(np.int64) << 42) | ms[rows]
    order = np.argsort(stamp, kind="stable")  # one sort of 64-bit keys, stable for equal times
    stamp = stamp[order]
    rows, c = rows[order], c[order]
    return rows, c, stamp


def _rate_columns(votes: VoteTable, rows: np.ndarray, c: np.ndarray, stamp: np.ndarray, nv: int, cut: slice,
                  out: dict[str, Any], ctx: "Context") -> None:
    """Votes in the busiest hour, and votes faster than their answers can be read. ``stamp``: the rows' sorted
    keys, voter then milliseconds (_kind_rows)."""
    threshold = settings.ARENA_TRUST_RISK_THRESHOLD
    ev, tested, fig = out["evidence"], out["tested"], out["figures"]
    if rows.size:
        within = np.searchsorted(stamp, stamp + 3_600_000, side="left") - np.arange(rows.size)
        busiest = _group_max(within, c, nv)
    else:
        busiest = np.zeros(nv, dtype=np.int64)
    fig["busiest"][cut] = busiest
    ev["votes_per_hour"][cut] = threshold * busiest / ctx.rate_limit
    tested["votes_per_hour"][cut] = True
    wait = votes.wait[rows]
    known = ~np.isnan(wait)
    fast = known & (wait < votes.answer_chars[rows] / FAST_READ_CHARS_PER_SECOND)
    n_known, n_fast = np.bincount(c, known, nv), np.bincount(c, fast, nv)
    fig["fast"][cut], fig["known"][cut] = n_fast, n_known
    share = n_fast / np.maximum(n_known, 1)
    tested["fast_votes"][cut] = n_known >= FAST_MIN_VOTES
    ev["fast_votes"][cut] = np.where((n_known >= FAST_MIN_VOTES) & (share >= FAST_SHARE),
                                     threshold * share / FAST_SHARE, 0.0)


def _position_columns(y: np.ndarray, c: np.ndarray, nv: int, cut: slice,
                      out: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Position bias, on decisive votes; returns which rows are decisive and which voters have enough of them."""
    ev, tested, fig = out["evidence"], out["tested"], out["figures"]
    decisive = y != 0.5
    n = np.bincount(c, decisive, nv).astype(np.int64)
    k_left = np.bincount(c, decisive & (y == 1.0), nv).astype(np.int64)
    fig["decisive"][cut], fig["for_a"][cut] = n, k_left
    p = binomial_two_sided_half(k_left, n)
    fig["p_position"][cut] = p
    tested["position_bias"][cut] = n > 0
    ev["position_bias"][cut] = np.where(n > 0, _evidence(p), 0.0)
    return decisive, n >= MIN_DECISIVE


def _heavy(votes: VoteTable, c: np.ndarray, left_rows: np.ndarray, right_rows: np.ndarray, nv: int,
           m: int) -> np.ndarray:
    """(nv,) cast over LEAVE_OUT_MAX_SHARE of some model's votes (chunks of voters)."""
    everyone = np.bincount(votes.left, minlength=m) + np.bincount(votes.right, minlength=m)
    heavy = np.zeros(nv, dtype=bool)
    for first, last, part in _voter_chunks(c, nv, m):
        a, b = left_rows[part], right_rows[part]
        heavy[first:last] = np.any(_per_voter_model(c[part] - first, a, b, None, last - first, m)
                                   > LEAVE_OUT_MAX_SHARE * everyone, axis=1)
    return heavy


def _favoured_groups(c: np.ndarray, decisive: np.ndarray, enough: np.ndarray, left_rows: np.ndarray,
                     right_rows: np.ndarray, y: np.ndarray, nv: int, m: int, rows_t: np.dtype) -> dict[str, np.ndarray]:
    """The (voter, model) groups the favoured-model test takes: a voter with enough decisive votes, a model it met
    in at least MIN_DECISIVE of them. Counted per voter and model in chunks of voters, so that only the entries of
    such groups are sorted and kept. Returns those fields of KindRows (``met`` and the ``test_``/``group_`` ones),
    rows as ``rows_t``."""
    drows = np.flatnonzero(decisive)
    drows = drows[enough[c[drows]]]
    dv, da, db = c[drows], left_rows[drows], right_rows[drows]
    mm = max(m, 1)
    met = np.zeros(nv, dtype=np.int64)
    big_left, big_right = np.zeros(drows.size, dtype=bool), np.zeros(drows.size, dtype=bool)
    for first, last, part in _voter_chunks(dv, nv, m):
        at_a, at_b = (dv[part] - first) * mm + da[part], (dv[part] - first) * mm + db[part]
        met_count = np.bincount(at_a, minlength=(last - first) * mm) + np.bincount(at_b, minlength=(last - first) * mm)
        met[first:last] = np.count_nonzero(met_count.reshape(last - first, mm), axis=1)
        big_left[part], big_right[part] = met_count[at_a] >= MIN_DECISIVE, met_count[at_b] >= MIN_DECISIVE
    # Entries as the test reads them: each such group's left-side votes, then its right-side ones, each in time order.
    e_row = np.concatenate([drows[big_left], drows[big_right]])
    e_left = np.concatenate([np.ones(int(big_left.sum()), dtype=bool), np.zeros(int(big_right.sum()), dtype=bool)])
    key = np.concatenate([dv[big_left], dv[big_right]]).astype(np.int64) * mm + np.concatenate([da[big_left],
                                                                                                db[big_right]])
    order = np.argsort(key, kind="stable")
    e_row, e_left, key = e_row[order], e_left[order], key[order]
    starts = _starts(key)
    sizes = np.diff(np.concatenate([starts, [key.size]])).astype(np.int64)
    group = np.repeat(np.arange(starts.size, dtype=np.int64), sizes)
    wins = np.bincount(group, (y[e_row] == 1.0) == e_left, starts.size).astype(np.int64)
    return {"met": met, "test_row": e_row.astype(rows_t), "test_left": e_left,
            "test_group": group.astype(_index_dtype(starts.size)), "group_voter": (key[starts] // mm).astype(
                _index_dtype(nv)), "group_model": key[starts] % mm, "group_size": sizes, "wins": wins}


def _battle_columns(battles: BattleTable, bcodes: np.ndarray, prompt_code: np.ndarray, lo: int, nv: int,
                    cut: slice, out: dict[str, Any], ctx: "Context") -> None:
    """Battles: repeated prompts, and battles left after the answers."""
    threshold = settings.ARENA_TRUST_RISK_THRESHOLD
    ev, tested, fig = out["evidence"], out["tested"], out["figures"]
    brows = np.flatnonzero(bcodes >= 0).astype(_index_dtype(bcodes.size))
    bc = bcodes[brows] - lo
    nb = np.bincount(bc, minlength=nv)
    fig["battles"][cut] = nb
    prompts = max(1, int(prompt_code.max()) + 1) if prompt_code.size else 1
    pair = bc.astype(np.int64) * prompts  # (voter, prompt) as one 64-bit code
    pair += prompt_code[brows]
    distinct = np.bincount(pd.unique(pair) // prompts, minlength=nv)
    del pair
    repeats = nb - distinct
    fig["repeats"][cut] = repeats
    repeated = (nb >= REPEAT_MIN_BATTLES) & (repeats >= REPEAT_SHARE * np.maximum(nb, 1))
    tested["repeated_prompts"][cut] = repeated
    # Supporting evidence only, just under the threshold: people do re-ask their own test prompt.
    ev["repeated_prompts"][cut] = np.where(repeated, SUPPORTING * threshold, 0.0)
    # Each voter's latest battle (the last row among equal start times), found without sorting the battles
    created = battles.created[brows]
    newest = np.full(nv, -np.inf)
    np.maximum.at(newest, bc, created)
    at_newest = np.flatnonzero(created == newest[bc])
    del created, newest
    last_row = np.full(nv, -1, dtype=brows.dtype)
    np.maximum.at(last_row, bc[at_newest], brows[at_newest])
    eligible = np.ones(brows.size, dtype=bool)  # the latest battle may still be voted on
    eligible[at_newest[brows[at_newest] == last_row[bc[at_newest]]]] = False
    del at_newest, last_row
    answered = battles.answered[brows]
    gone = np.bincount(bc[eligible], (answered & ~battles.voted[brows])[eligible], nv).astype(np.int64)
    n_answered = np.bincount(bc[eligible], answered[eligible], nv).astype(np.int64)
    fig["gone"][cut], fig["answered"][cut] = gone, n_answered
    p = np.where(gone > 0, bdtrc(np.maximum(gone - 1, 0), n_answered, ctx.abandon_rate), 1.0)
    fig["p_abandoned"][cut] = p
    tested["abandoned"][cut] = (nb > 0) & (n_answered > 0)
    ev["abandoned"][cut] = np.where(tested["abandoned"][cut], _evidence(p), 0.0)


def _voter_chunks(voter: np.ndarray, voters: int, m: int) -> Iterator[tuple[int, int, slice]]:
    """(first, last, rows) for runs of voters of at most LEAVE_OUT_CHUNK voter-model cells, over rows sorted by
    voter."""
    bounds = np.searchsorted(voter, np.arange(0, voters + 1))
    step = max(1, LEAVE_OUT_CHUNK // max(m, 1))
    for first in range(0, voters, step):
        last = min(voters, first + step)
        yield first, last, slice(bounds[first], bounds[last])


def _yardstick_kind(votes: VoteTable, yardstick: Yardstick, kr: KindRows, out: dict[str, Any]) -> None:
    """Fill the columns of the detectors measured against ``yardstick``: unlikely votes and favoured models."""
    lo, hi = kr.span
    nv = hi - lo
    m = votes.model_ids.size
    ev, tested, fig = out["evidence"], out["tested"], out["figures"]
    cut = slice(lo, hi)
    rows, c = kr.rows, kr.voter

    # Each vote's chance of going left, under the fit without its voter's votes, and the likelihood of the
    # decisive ones: a chunk of voters at a time, keeping only the chances the favoured-model test reads.
    cov = yardstick.inverse_hessian
    theta = yardstick.theta
    if cov is not None:
        # The yardstick is itself an estimate: predict with its uncertainty (the probit approximation of the
        # logistic integrated over a normal d), so a voter is not blamed for what the ratings cannot know yet.
        # Capped: a model that never won (or never lost) has no finite estimate, and the ridge alone bounds
        # its variance, which would pull every prediction about it back to a coin flip. Per pair of models, once.
        diag = np.diag(cov)
        var_pair = np.clip(diag[:, None] + diag[None, :] - 2 * cov, 0.0, MAX_PREDICTIVE_VARIANCE)
        shrink = 1.0 / np.sqrt(1.0 + np.pi * var_pair / 8.0)
    loglik, expected, variance = np.zeros(nv), np.zeros(nv), np.zeros(nv)
    p_entry = np.zeros(kr.test_row.size)
    entry_voter = kr.group_voter[kr.test_group]  # entries are sorted by voter
    for first, last, part in _voter_chunks(c, nv, m):
        pr, pv = rows[part], c[part] - first
        a, b, y = kr.left[part], kr.right[part], kr.outcome[part]
        shift = yardstick.shifts(votes, pr, pv, last - first, (a, b, y))
        d = theta[a] + shift[pv, a] - theta[b] - shift[pv, b]
        del shift
        if cov is not None:
            d *= shrink[a, b]
        p_left = np.clip(1.0 / (1.0 + np.exp(-d)), 1e-6, 1 - 1e-6)
        del d
        e_lo, e_hi = np.searchsorted(entry_voter, [first, last])
        p_entry[e_lo:e_hi] = p_left[kr.test_row[e_lo:e_hi] - part.start]
        decisive = kr.decisive[part]
        dc, dp, won_left = pv[decisive], p_left[decisive], y[decisive] == 1.0
        log_left, log_right = np.log(dp), np.log1p(-dp)  # two logarithms a vote, shared by the three sums
        loglik[first:last] = np.bincount(dc, np.where(won_left, log_left, log_right), last - first)
        expected[first:last] = np.bincount(dc, dp * log_left + (1 - dp) * log_right, last - first)
        variance[first:last] = np.bincount(dc, dp * (1 - dp) * (log_left - log_right) ** 2, last - first)
    applies = kr.enough & (variance > 1e-9)
    z = np.where(applies, (expected - loglik) / np.sqrt(np.where(applies, variance, 1.0)), 0.0)
    fig["z"][cut] = z
    tested["unlikely_votes"][cut] = applies
    ev["unlikely_votes"][cut] = np.where(applies, _evidence(ndtr(-z)), 0.0)

    # Favoured (or disfavoured) models: per voter and model met, its wins against the predicted chances
    chance = np.where(kr.test_left, p_entry, 1 - p_entry)
    sizes, wins = kr.group_size, kr.wins
    mean = np.bincount(kr.test_group, chance, sizes.size)
    upper, lower = _tails_grouped(chance, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64), sizes, wins)
    p_pair = np.minimum(1.0, 2 * np.minimum(upper, lower))
    g_voter, g_model = kr.group_voter, kr.group_model
    best = np.lexsort((g_model, p_pair, g_voter))  # per voter: the smallest p, then the lowest model
    first = best[_starts(g_voter[best])]
    first = first[p_pair[first] < 1.0]
    bv = g_voter[first]
    has = np.zeros(nv, dtype=bool)
    has[bv] = True
    p_fav = np.ones(nv)
    p_fav[bv] = np.minimum(1.0, p_pair[first] * kr.met[bv])
    for name, values in (("favoured", g_model[first]), ("favoured_wins", wins[first]),
                         ("favoured_votes", sizes[first]), ("favoured_expected", mean[first])):
        column = np.zeros(nv)
        column[bv] = values
        fig[name][cut] = column
    fig["p_favours"][cut] = p_fav
    tested["favours_model"][cut] = has
    ev["favours_model"][cut] = np.where(has, _evidence(p_fav), 0.0)


@dataclass
class Context:
    rate_limit: int
    abandon_rate: float
    vote_ms: np.ndarray  # (N,) int64 milliseconds from the first vote to each


def _model_dtype(models: int) -> np.dtype:
    """The narrowest signed integer that indexes ``models`` models."""
    return np.dtype(np.int8 if models < 2**7 else np.int16 if models < 2**15 else np.int32)


def _index_dtype(bound: int) -> np.dtype:
    """The narrowest of int32 and int64 that holds ``range(-1, bound)``."""
    return np.dtype(np.int32 if bound < 2**31 else np.int64)


def _static_columns(votes: VoteTable, battles: BattleTable, index: VoterIndex) -> dict[str, Any]:
    """The columns that stay the same in every round (rates, position bias, battles), and each kind's rows; made
    once per index."""
    if index.static is not None:
        return index.static
    rate = float(np.sum(battles.answered & ~battles.voted) / max(1, battles.answered.sum()))
    abandon_rate = min(0.5, max(0.05, rate))
    first = votes.voted_at.min() if votes.voted_at.size else 0.0
    vote_ms = np.round((votes.voted_at - first) * 1000).astype(np.int64)
    v = len(index)
    out: dict[str, Any] = {
        "votes": np.zeros(v, dtype=np.int64), "heavy": np.zeros(v, dtype=bool), "rate_limit": np.zeros(v, np.int64),
        "abandon_rate": abandon_rate, "kinds": [],
        "evidence": {d: np.zeros(v) for d in DETECTORS}, "tested": {d: np.zeros(v, dtype=bool) for d in DETECTORS},
        "figures": {name: np.zeros(v) for name in (
            "battles", "busiest", "fast", "known", "decisive", "for_a", "p_position", "repeats", "gone", "answered",
            "p_abandoned")},
    }
    for kind, limit in ((str(VoterRisk.Kind.SESSION), settings.ARENA_TRUST_MAX_VOTES_PER_HOUR),
                        (str(VoterRisk.Kind.ADDRESS), settings.ARENA_TRUST_MAX_VOTES_PER_HOUR * ADDRESS_RATE_FACTOR)):
        span = index.kinds[kind]
        out["rate_limit"][span[0]:span[1]] = limit
        out["kinds"].append(_static_kind(votes, battles, index.vote_voter[kind], index.battle_voter[kind],
                                         index.prompt_code, span, out,
                                         Context(limit, abandon_rate, vote_ms)))
    index.static = out
    # The battles' voters and prompts serve these columns only: not kept through the rounds.
    index.battle_voter = {kind: np.zeros(0, dtype=np.int32) for kind in index.battle_voter}
    index.prompt_code = np.zeros(0, dtype=np.int32)
    return out


def voters_assess(votes: VoteTable, battles: BattleTable, *, keep: np.ndarray | None = None,
                  index: VoterIndex | None = None, yardstick: Yardstick | None = None) -> Verdicts:
    """Every voter's verdict (sessions and addresses), each measured against the ratings fitted on the ``keep``
    votes without its own (``yardstick``: that fit, where the caller has made it)."""
    index = VoterIndex.build(votes, battles) if index is None else index
    static = _static_columns(votes, battles, index)
    if yardstick is None:
        yardstick = Yardstick.fit(votes, np.ones(votes.vote_ids.size, dtype=bool) if keep is None else keep)
    v = len(index)
    out: dict[str, Any] = {
        "evidence": {**static["evidence"], **{d: np.zeros(v) for d in YARDSTICK_DETECTORS}},
        "tested": {**static["tested"], **{d: np.zeros(v, dtype=bool) for d in YARDSTICK_DETECTORS}},
        "figures": {**static["figures"], **{name: np.zeros(v) for name in YARDSTICK_FIGURES}},
    }
    for kind_rows in static["kinds"]:
        _yardstick_kind(votes, yardstick, kind_rows, out)
    rounded = {d: np.round(out["evidence"][d], 2) for d in DETECTORS}
    score = np.max(np.stack([np.maximum(e, 0.0) for e in rounded.values()]), axis=0) if v else np.zeros(0)
    suspicion = (np.max(np.stack([np.maximum(e, 0.0) for d, e in rounded.items() if d not in NEVER_SUSPECTS]),
                        axis=0) if v else np.zeros(0))
    return Verdicts(index, score, suspicion, static["heavy"], static["votes"], out["evidence"], out["tested"],
                    out["figures"], static["rate_limit"], static["abandon_rate"], votes.model_ids)


def suspected(verdicts: Verdicts) -> np.ndarray:
    """Kept out of the yardstick (not off the board): a suspicion of SUSPECT_SHARE of the threshold, unless the
    voter cast over LEAVE_OUT_MAX_SHARE of some model's votes."""
    return (verdicts.suspicion >= SUSPECT_SHARE * settings.ARENA_TRUST_RISK_THRESHOLD) & ~verdicts.heavy


def voters_settle(
    votes: VoteTable, battles: BattleTable, excluding: Callable[[Verdicts], np.ndarray],
    suspecting: Callable[[Verdicts], np.ndarray] | None = None, *, consume: bool = False,
) -> tuple[Verdicts, np.ndarray]:
    """Assess every voter, then again against a fit without the voters ``excluding`` leaves out and those
    ``suspecting`` names (by default: a suspicion of at least ``SUSPECT_SHARE`` of the threshold), until both sets
    stop changing or the next fit would rate every model as the last did (``Yardstick.still``; at most ``ROUNDS``
    fits): the last verdicts and who they leave out (a (V,) mask over them).
    Suspected voters stay on the board; they only stay out of the yardstick, so that riggers just under the line
    do not prop each other up. ``consume``: empty the battle table's columns, and the vote table's voter keys, once
    read (the voters' keys and the prompts by the index, the rest by the first assessment; the rounds read none of
    them), so that a caller with no further use for them does not hold them meanwhile."""
    suspecting = suspected if suspecting is None else suspecting
    index = VoterIndex.build(votes, battles)
    if consume:
        columns_empty(battles, ("session", "address", "prompt"))
        columns_empty(votes, ("session", "address"))
        _static_columns(votes, battles, index)  # kept by the index for every round
        columns_empty(battles, ("created", "voted", "answered"))
        memory_release()  # the detectors' temporaries

    def yardstick_out(verdicts: Verdicts, left: np.ndarray) -> np.ndarray:
        apart = left | suspecting(verdicts)
        if votes.vote_ids.size and (~index.vote_mask(apart)).mean() < YARDSTICK_MIN_SHARE:
            return left
        return apart

    yardstick = Yardstick.fit(votes, np.ones(votes.vote_ids.size, dtype=bool))
    verdicts = voters_assess(votes, battles, index=index, yardstick=yardstick)
    left_out = excluding(verdicts)
    apart = yardstick_out(verdicts, left_out)
    for _ in range(ROUNDS - 1):
        following = Yardstick.fit(votes, ~index.vote_mask(apart))
        if yardstick.still(following):
            break  # the verdicts against it would be these, to within a hundredth of a point
        yardstick = following
        verdicts = voters_assess(votes, battles, index=index, yardstick=yardstick)
        now = excluding(verdicts)
        apart_now = yardstick_out(verdicts, now)
        if np.array_equal(now, left_out) and np.array_equal(apart_now, apart):
            break
        left_out, apart = now, apart_now
    return verdicts, left_out


def risk_recompute(vote_ids: Iterable[int] | None = None, *, votes: VoteTable | None = None,
                   battles: BattleTable | None = None) -> RiskResult:
    """Score every live voter of the counted votes (``votes``, as the snapshot read them; else read here, only
    ``vote_ids`` if given), store the records of those at or above the threshold, and return the vote ids the
    leaderboard should leave out (flagged and confirmed voters; never cleared). ``battles``: battle_table(), where
    the caller has read it already; its columns are emptied once screened (at ten million battles, a third of a
    gigabyte the rounds do not need)."""
    threshold = settings.ARENA_TRUST_RISK_THRESHOLD
    votes = vote_table(vote_ids) if votes is None else votes
    battles = battle_table() if battles is None else battles
    reviewed = {(r.kind, r.key): r.state for r in VoterRisk.objects.exclude(
        state__in=[VoterRisk.State.FLAGGED, VoterRisk.State.LAPSED]).only("kind", "key", "state")}
    states: dict[str, np.ndarray] = {}

    def state_is(verdicts: Verdicts, state: str) -> np.ndarray:
        if state not in states:
            mask = np.zeros(len(verdicts), dtype=bool)
            for (kind, key), value in reviewed.items():
                at = verdicts.index.position(kind, key) if value == state else None
                if at is not None:
                    mask[at] = True
            states[state] = mask
        return states[state]

    def excluding(verdicts: Verdicts) -> np.ndarray:
        cleared = state_is(verdicts, VoterRisk.State.CLEARED)
        return state_is(verdicts, VoterRisk.State.CONFIRMED) | (~cleared & (verdicts.score >= threshold))

    def suspecting(verdicts: Verdicts) -> np.ndarray:
        return ~state_is(verdicts, VoterRisk.State.CLEARED) & suspected(verdicts)

    verdicts, excluding_now = voters_settle(votes, battles, excluding, suspecting, consume=True)
    excluded = verdicts.index.vote_mask(excluding_now)
    verdicts.index.key_names(np.flatnonzero(verdicts.score >= threshold).tolist())
    _store(verdicts, threshold)
    return RiskResult(
        excluded_vote_ids=set(votes.vote_ids[excluded].tolist()),
        flagged=[verdicts[i] for i in np.flatnonzero((verdicts.score >= threshold) & excluding_now)],
        voters=len(verdicts),
    )


def _store(verdicts: Verdicts, threshold: float) -> None:
    """Write the records: new ones flagged; flagged ones lapse below the threshold and come back above it;
    staff decisions (cleared, confirmed) stay, with the score kept current."""
    now = timezone.now()
    index = verdicts.index
    with transaction.atomic():
        existing = {(r.kind, r.key): r for r in VoterRisk.objects.select_for_update()}
        new = []
        for i in np.flatnonzero(verdicts.score >= threshold):
            if (str(index.kind[i]), index.key_of(i)) not in existing:
                v = verdicts[i]
                new.append(VoterRisk(kind=v.kind, key=v.key, state=VoterRisk.State.FLAGGED, score=v.score,
                                     reasons=v.reasons, features=v.features, votes=v.votes, computed_at=now))
        # In batches: a snapshot of ten million votes writes a thousand records or more, each a round trip alone.
        VoterRisk.objects.bulk_create(new, batch_size=500)
        changed = []
        for (kind, key), record in existing.items():
            at = index.position(kind, key)
            if at is None:
                continue  # a voter with no counted votes any more keeps its record as it was
            index.names.setdefault(at, key)
            v = verdicts[at]
            record.score, record.reasons, record.features, record.votes = v.score, v.reasons, v.features, v.votes
            record.computed_at = now
            if record.state in (VoterRisk.State.FLAGGED, VoterRisk.State.LAPSED):
                record.state = VoterRisk.State.FLAGGED if v.score >= threshold else VoterRisk.State.LAPSED
            changed.append(record)
        VoterRisk.objects.bulk_update(changed, ["score", "reasons", "features", "votes", "computed_at", "state"],
                                      batch_size=500)


def risk_review(record: VoterRisk, *, state: str, by: str) -> None:
    """Staff's decision on a record: cleared (count the votes) or confirmed (leave them out), or back to flagged."""
    if state not in (VoterRisk.State.CLEARED, VoterRisk.State.CONFIRMED, VoterRisk.State.FLAGGED):
        raise ValueError(f"unknown review state {state!r}")
    VoterRisk.objects.filter(pk=record.pk).update(state=state, reviewed_by=by[:150], reviewed_at=timezone.now())
