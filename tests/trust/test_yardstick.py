"""The yardstick voters are measured against, on vote tables drawn from known preferences (no database: these
test the statistics; test_risk.py drives the same code through the real websocket path).

Riggers who hide their target votes among random "cover" votes slipped a single fit of all votes: eight of
them lift their target enough that a rigger's own votes look ordinary. Each voter is now measured without its
own votes, and the fit is repeated without the voters flagged so far."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ratings import aggregate
from ratings.bradley_terry import fit_bradley_terry
from trust import risk

PREFERENCE = np.array([1.0, 0.6, 0.2, -0.2, -0.6, -1.0])  # log-odds, six models
TARGET = 4  # the second weakest


def population(seed: int, *, honest: int = 100, honest_battles: int = 10, riggers: int = 8,
               rigger_battles: int = 40) -> tuple[risk.VoteTable, risk.BattleTable, dict[str, str]]:
    """Honest voters who vote by PREFERENCE (10% ties); riggers who always vote for TARGET when it is drawn and,
    every other one, at random elsewhere (the others leave those battles unvoted). Each voter its own address;
    a battle every one to two minutes, read for 30 s: no rate or speed detector fires."""
    rng = np.random.default_rng(seed)
    m = PREFERENCE.size
    v: dict[str, list] = {k: [] for k in ("session", "left", "right", "outcome", "voted_at")}
    b: dict[str, list] = {k: [] for k in ("session", "created", "voted")}
    kinds: dict[str, str] = {}
    clock = 1.7e9

    def battle(session: str, pair: np.ndarray, outcome: float | None) -> None:
        nonlocal clock
        clock += rng.uniform(60, 120)
        b["session"].append(session)
        b["created"].append(clock)
        b["voted"].append(outcome is not None)
        if outcome is not None:
            v["session"].append(session)
            v["left"].append(int(pair[0]))
            v["right"].append(int(pair[1]))
            v["outcome"].append(outcome)
            v["voted_at"].append(clock + 30)

    for i in range(honest):
        kinds[f"honest{i}"] = "honest"
        for _ in range(honest_battles):
            pair = rng.choice(m, 2, replace=False)
            p = 1 / (1 + math.exp(PREFERENCE[pair[1]] - PREFERENCE[pair[0]]))
            battle(f"honest{i}", pair, 0.5 if rng.random() < 0.1 else float(rng.random() < p))
    for i in range(riggers):
        kind = "cover" if i % 2 else "leave"
        kinds[f"rigger{i}"] = kind
        for _ in range(rigger_battles):
            pair = rng.choice(m, 2, replace=False)
            if TARGET in pair:
                battle(f"rigger{i}", pair, float(pair[0] == TARGET))
            else:
                battle(f"rigger{i}", pair, [1.0, 0.0, 0.5][rng.integers(3)] if kind == "cover" else None)
    n, nb = len(v["session"]), len(b["session"])
    session = np.array(v["session"], dtype=object)
    votes = risk.VoteTable(
        vote_ids=np.arange(n), session=session, address=np.array([f"ip-{s}" for s in session], dtype=object),
        left=np.array(v["left"]), right=np.array(v["right"]), outcome=np.array(v["outcome"]),
        voted_at=np.array(v["voted_at"]), wait=np.full(n, 30.0), answer_chars=np.full(n, 400.0),
        model_ids=np.arange(m) + 100,
    )
    bsession = np.array(b["session"], dtype=object)
    battles = risk.BattleTable(
        session=bsession, address=np.array([f"ip-{s}" for s in bsession], dtype=object),
        created=np.array(b["created"]), voted=np.array(b["voted"]), answered=np.ones(nb, dtype=bool),
        prompt=np.array([f"question {i}" for i in range(nb)], dtype=object),
    )
    return votes, battles, kinds


def caught(votes, battles, threshold: float) -> set[str]:
    verdicts, left_out = risk.voters_settle(votes, battles, lambda verdicts: verdicts.score >= threshold)
    return {key for kind, key in verdicts.keys(left_out) if kind == "session"}


def rigged_share(votes, kinds, flagged) -> float:
    rigged = [s for s, k in kinds.items() if k != "honest"]
    total = sum(int((votes.session == s).sum()) for s in rigged)
    return sum(int((votes.session == s).sum()) for s in rigged if s in flagged) / total


def test_leaving_a_voter_out_to_first_order_matches_refitting_without_it():
    votes, _, kinds = population(1)
    keep = np.ones(votes.vote_ids.size, dtype=bool)
    yardstick = risk.Yardstick.fit(votes, keep)
    for session in ("rigger0", "rigger1", "honest3"):
        rows = np.flatnonzero(votes.session == session)
        rest = keep.copy()
        rest[rows] = False
        exact = fit_bradley_terry(aggregate(votes.left[rest], votes.right[rest], votes.outcome[rest], 6))
        approx = yardstick.without(votes, rows)
        assert np.abs(approx - exact).max() < 0.01, (session, approx, exact)
    # A rigger's own votes lift its target: without them the target is lower.
    rows = np.flatnonzero(votes.session == "rigger0")
    assert yardstick.without(votes, rows)[TARGET] < yardstick.theta[TARGET] - 0.01


def test_a_voter_who_cast_most_of_a_models_votes_is_measured_with_them():
    votes, _, _ = population(2, riggers=0)
    # Model 5's votes all come from one voter: without them it has no yardstick at all.
    only = np.flatnonzero((votes.left == 5) | (votes.right == 5))
    votes.session[only] = "newcomer"
    yardstick = risk.Yardstick.fit(votes, np.ones(votes.vote_ids.size, dtype=bool))
    assert np.array_equal(yardstick.without(votes, only), yardstick.theta)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_riggers_with_cover_votes_are_caught_and_honest_voters_are_not(seed, settings):
    votes, battles, kinds = population(seed)
    flagged = caught(votes, battles, settings.ARENA_TRUST_RISK_THRESHOLD)
    honest = {s for s in flagged if kinds[s] == "honest"}
    assert len(honest) <= 2, honest  # the goal: at most 2% of honest voters flagged (about 0.1% is usual)
    assert {s for s, k in kinds.items() if k == "leave"} <= flagged
    assert rigged_share(votes, kinds, flagged) >= 0.85, sorted(flagged)


def test_over_seeds_the_rigged_votes_caught_exceed_a_single_fit(settings, monkeypatch):
    threshold = settings.ARENA_TRUST_RISK_THRESHOLD
    tables = [population(seed) for seed in range(3, 9)]
    now = [rigged_share(v, k, caught(v, b, threshold)) for v, b, k in tables]
    assert np.mean(now) >= 0.9, now
    wrongly = sum(sum(k[s] == "honest" for s in caught(v, b, threshold)) for v, b, k in tables)
    assert wrongly <= 0.02 * 100 * len(tables), wrongly
    # The same votes against a single fit of all votes, each voter's own votes in it: many riggers slip.
    monkeypatch.setattr(risk, "ROUNDS", 1)
    monkeypatch.setattr(risk.Yardstick, "shifts", lambda self, votes, rows, voter, voters, gathered=None: np.zeros((voters, 6)))
    single = [rigged_share(v, k, caught(v, b, threshold)) for v, b, k in tables]
    assert np.mean(single) < np.mean(now) - 0.1, (single, now)


def test_a_model_that_never_wins_does_not_make_its_voters_look_unlikely(settings):
    # Model 1 loses every battle: its rating has no finite estimate, only the ridge bounds its variance. The
    # votes say just that, and must not read as "votes against model 1 where the ratings expect a coin flip".
    pairs = [(0, 1, 1.0), (1, 2, 0.0), (2, 0, 0.5)] * 10
    n = len(pairs)
    votes = risk.VoteTable(
        vote_ids=np.arange(n), session=np.array(["one"] * n, dtype=object), address=np.array([""] * n, dtype=object),
        left=np.array([p[0] for p in pairs]), right=np.array([p[1] for p in pairs]),
        outcome=np.array([p[2] for p in pairs]), voted_at=1.7e9 + 120.0 * np.arange(n), wait=np.full(n, 30.0),
        answer_chars=np.full(n, 400.0), model_ids=np.arange(3) + 1,
    )
    battles = risk.BattleTable(
        session=np.array(["one"] * n, dtype=object), address=np.array([""] * n, dtype=object),
        created=1.7e9 + 120.0 * np.arange(n), voted=np.ones(n, dtype=bool), answered=np.ones(n, dtype=bool),
        prompt=np.array([f"question {i}" for i in range(n)], dtype=object),
    )
    verdicts, _ = risk.voters_settle(votes, battles, lambda vs: np.zeros(len(vs), dtype=bool))
    (one,) = [v for v in verdicts if v.key == "one"]
    assert one.score < settings.ARENA_TRUST_RISK_THRESHOLD, one.reasons


def test_the_batched_tails_and_the_fair_coin_test_match_their_definitions() -> None:
    """The detectors' p-values: the Poisson-binomial tails of several models at once equal the one-at-a-time
    recursion (and the normal approximation past EXACT_TAIL_MAX), the fair-coin test equals scipy's binomtest."""
    from scipy.stats import binomtest

    def one_at_a_time(p: np.ndarray, k: int) -> tuple[float, float]:
        dist = np.zeros(p.size + 1)
        dist[0] = 1.0
        for q in p:
            dist[1:] = dist[1:] * (1 - q) + dist[:-1] * q
            dist[0] *= 1 - q
        return float(dist[k:].sum()), float(dist[:k + 1].sum())

    rng = np.random.default_rng(3)
    ps = [rng.random(int(n)) for n in rng.integers(1, 60, 40)] + [rng.random(risk.EXACT_TAIL_MAX + 50)]
    ks = np.array([int(rng.integers(0, p.size + 1)) for p in ps])
    upper, lower = risk.poisson_binomial_tails_many(ps, ks)
    for p, k, u, lo in zip(ps[:-1], ks, upper, lower):
        assert (u, lo) == pytest.approx(one_at_a_time(p, int(k)), abs=1e-12)
    big, k = ps[-1], int(ks[-1])
    exact_upper, exact_lower = one_at_a_time(big, k)
    assert upper[-1] == pytest.approx(exact_upper, abs=0.01) and lower[-1] == pytest.approx(exact_lower, abs=0.01)
    for n in (1, 2, 7, 30, 81):
        for k in range(n + 1):
            assert risk.binomial_two_sided_half(k, n) == pytest.approx(binomtest(k, n, 0.5).pvalue, abs=1e-12)


def test_everyone_asking_the_same_few_prompts_does_not_empty_the_yardstick(settings):
    """Tried: a bulk arena whose voters all re-ask two prompts, 20 to 40 battles each. Repeated prompts is
    supporting evidence at 0.9 of the threshold, above the suspect line; counted as suspicion it took every voter
    out of the yardstick, which was then fitted on a handful of votes and flagged every honest voter (z over 40).
    It suspects nobody on its own now, and suspicion never takes more than half the votes out of the yardstick."""
    threshold = settings.ARENA_TRUST_RISK_THRESHOLD
    votes, battles, kinds = population(4, honest=60, honest_battles=30)
    battles.prompt = np.array(["what is the capital of france"] * battles.prompt.size, dtype=object)
    flagged = caught(votes, battles, threshold)
    assert sum(kinds[s] == "honest" for s in flagged) <= 2, sorted(flagged)
    assert {s for s, k in kinds.items() if k == "leave"} <= flagged
    verdicts, _ = risk.voters_settle(votes, battles, lambda vs: vs.score >= threshold)
    repeaters = [v for v in verdicts if v.kind == "session" and kinds[v.key] == "honest"]
    assert all(any(r["detector"] == "repeated_prompts" for r in v.reasons) for v in repeaters)
    line = risk.SUSPECT_SHARE * threshold
    assert all(v.score >= line for v in repeaters)  # each would have been suspected on repeats alone
    assert sum(v.suspicion < line for v in repeaters) >= 0.9 * len(repeaters)


def test_suspicion_that_would_take_most_votes_leaves_the_yardstick_as_it_is(settings):
    """Where the suspect line would take over half the votes (here: suspect everyone), the yardstick keeps
    them and only the flagged leave it, so an arena of suspects is still measured against its own votes."""
    threshold = settings.ARENA_TRUST_RISK_THRESHOLD
    votes, battles, kinds = population(5)
    everyone = lambda vs: np.ones(len(vs), dtype=bool)  # noqa: E731
    flagging = lambda vs: vs.score >= threshold  # noqa: E731
    with_all_suspected, _ = risk.voters_settle(votes, battles, flagging, everyone)
    plain, _ = risk.voters_settle(votes, battles, flagging, lambda vs: np.zeros(len(vs), dtype=bool))
    assert [(v.key, v.score) for v in with_all_suspected] == [(v.key, v.score) for v in plain]


def varied(seed: int) -> tuple[risk.VoteTable, risk.BattleTable]:
    """population() with what the screen has to tell apart: addresses shared by three sessions, waits unknown or
    too short to read (one voter's always), voters who re-ask one prompt, battles whose answers never came, one voter who always
    votes A, and one who cast 450 votes on the top model (past the exact tails, and most of that model's votes)."""
    votes, battles, _ = population(seed, honest=60, honest_battles=25)
    rng = np.random.default_rng(seed)
    n, nb = votes.vote_ids.size, battles.session.size
    votes.address = np.array([f"ip-{int(s.lstrip('honestrig')) // 3}" for s in votes.session], dtype=object)
    battles.address = np.array([f"ip-{int(s.lstrip('honestrig')) // 3}" for s in battles.session], dtype=object)
    votes.wait = np.where(rng.random(n) < 0.1, np.nan, np.where(rng.random(n) < 0.2, 0.5, 30.0))
    votes.wait[votes.session == "honest4"] = 0.5
    votes.answer_chars = rng.uniform(50, 2000, n)
    battles.prompt = np.array(["question again" if s in ("honest1", "honest2") else f"question {i}"
                               for i, s in enumerate(battles.session)], dtype=object)
    battles.answered = rng.random(nb) < 0.9
    always_a = votes.session == "honest5"
    votes.outcome = np.where(always_a, 1.0, votes.outcome)
    grind = 450
    extra = risk.VoteTable(
        vote_ids=np.arange(n, n + grind), session=np.array(["grinder"] * grind, dtype=object),
        address=np.array(["ip-grinder"] * grind, dtype=object), left=np.zeros(grind, dtype=np.int64),
        right=rng.integers(1, 6, grind), outcome=(rng.random(grind) < 0.8).astype(float),
        voted_at=1.8e9 + 20.0 * np.arange(grind), wait=np.full(grind, 30.0), answer_chars=np.full(grind, 400.0),
        model_ids=votes.model_ids)
    joined = risk.VoteTable(**{f: (getattr(votes, f) if f == "model_ids" else
                                   np.concatenate([getattr(votes, f), getattr(extra, f)]))
                               for f in risk.VoteTable.__dataclass_fields__})
    return joined, battles


@pytest.mark.parametrize("seed", [11, 12])
def test_every_voter_at_once_matches_the_one_voter_at_a_time_definition(seed, settings):
    """The screen runs over all voters as grouped arrays; tests/trust/risk_reference.py is the same screen one
    voter at a time (the way it was first written). Every voter's score, suspicion, reasons (with their texts)
    and features agree, against the full fit and against a fit that leaves some voters out."""
    from tests.trust import risk_reference

    votes, battles = varied(seed)
    rng = np.random.default_rng(seed)
    keep = np.ones(votes.vote_ids.size, dtype=bool)
    keep[np.isin(votes.session, ["rigger0", "rigger3", "honest7"])] = False
    keep &= rng.random(keep.size) < 0.95
    for kept in (None, keep):
        fast = list(risk.voters_assess(votes, battles, keep=kept))
        slow = risk_reference.voters_assess(votes, battles, keep=kept)
        assert [(v.kind, v.key) for v in fast] == [(v.kind, v.key) for v in slow]
        assert len(fast) > 80 and any(v.score >= settings.ARENA_TRUST_RISK_THRESHOLD for v in slow)
        detectors = {r["detector"] for v in slow for r in v.reasons}
        assert detectors >= {"fast_votes", "position_bias", "favours_model", "repeated_prompts", "abandoned"}
        for one, other in zip(fast, slow):
            where = (one.kind, one.key)
            assert one.score == pytest.approx(other.score, abs=0.011), where
            assert one.suspicion == pytest.approx(other.suspicion, abs=0.011), where
            assert (one.votes, one.heavy) == (other.votes, other.heavy), where
            assert [r["detector"] for r in one.reasons] == [r["detector"] for r in other.reasons], where
            assert [r["text"] for r in one.reasons] == [r["text"] for r in other.reasons], where
            assert one.features.keys() == other.features.keys(), where
            for name, value in other.features.items():
                assert one.features[name] == pytest.approx(value, abs=0.011), (where, name)


def test_voters_keyed_by_codes_get_the_verdicts_of_voters_keyed_by_strings(settings):
    """The database readers key voters by 64-bit codes (arena.facts.key_code; 0 for no key), the other tests here
    by strings. Tried: the same votes both ways, with some votes and battles that have no address (code 0, which
    may sort anywhere among signed codes): the same voters, each with the same score, suspicion and votes."""
    import dataclasses

    from arena.facts import key_code

    votes, battles = varied(11)
    votes.address[::7] = ""
    battles.address[::5] = ""

    def coded(keys: np.ndarray) -> np.ndarray:
        return np.array([key_code(k) for k in keys.tolist()], dtype=np.int64)

    by_code = risk.voters_assess(
        dataclasses.replace(votes, session=coded(votes.session), address=coded(votes.address)),
        dataclasses.replace(battles, session=coded(battles.session), address=coded(battles.address)))
    by_string = list(risk.voters_assess(votes, battles))
    assert by_code.index.coded and len(by_code) == len(by_string) > 80
    assert by_code.index.position("address", "") is None
    for voter in by_string:
        at = by_code.index.position(voter.kind, voter.key)
        assert at is not None, (voter.kind, voter.key)
        assert by_code.score[at] == pytest.approx(voter.score, abs=1e-9), (voter.kind, voter.key)
        assert by_code.suspicion[at] == pytest.approx(voter.suspicion, abs=1e-9), (voter.kind, voter.key)
        assert by_code.votes[at] == voter.votes, (voter.kind, voter.key)
    assert by_code.index.vote_mask(np.ones(len(by_code), dtype=bool)).sum() == votes.vote_ids.size


def test_honest_voters_suspected_by_chance_do_not_stretch_the_yardstick(settings):
    """Honest voters only. Those whose votes looked unlikely under the fit (one-sided: they happened to favour its
    underdogs) were suspected and left out of the next fit, which stretched the ratings by 2-3% here (18 points
    at a million votes) and suspected more of them the round after. Left in, the settled yardstick is the fit of
    all votes to within its noise, and no more honest voters are flagged than against that fit."""
    threshold = settings.ARENA_TRUST_RISK_THRESHOLD
    for seed in range(2):
        votes, battles, _ = population(seed, honest=2000, honest_battles=20, riggers=0)
        full = risk.Yardstick.fit(votes, np.ones(votes.vote_ids.size, dtype=bool))
        verdicts, left_out = risk.voters_settle(votes, battles, lambda v: v.score >= threshold)
        apart = verdicts.index.vote_mask(left_out | risk.suspected(verdicts))
        settled = risk.Yardstick.fit(votes, ~apart)
        f, s = full.theta - full.theta.mean(), settled.theta - settled.theta.mean()
        assert abs(float(s @ f / (f @ f)) - 1.0) < 0.01, float(s @ f / (f @ f))
        first = risk.voters_assess(votes, battles, yardstick=full)
        assert left_out.sum() <= (first.score >= threshold).sum() + 1
