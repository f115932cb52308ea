"""Benchmark of the voter risk score on simulated attacks, played through the real path.

A throwaway PostgreSQL and Redis (devstack), the arena's ASGI application in this process with generation on
in-process threads, and six stand-in models answering in recognisable styles (tests/standin.py). Simulated
voters (trust/simulate.py) open a session with the battle page, solve the proof of work and play over the
battle websocket:

- honest voters with one known preference (Bradley-Terry strengths per style), reading before they vote;
- rigging voters who recognise the target by its style and always vote for it: half leave battles without
  the target unvoted, half vote at random there as cover; all read like honest voters;
- a few always-A and random voters (bots, voting at once).

Then one leaderboard snapshot (which recomputes the risk and leaves flagged voters out) and the figures: the
share of rigged votes left out, the share of honest voters wrongly flagged, and the target's score from the
honest votes alone, with all votes, and with the flagged votes left out.

    .venv/bin/python benchmarks/bench_trust.py                # 100 honest voters, 8 riggers (about 6 minutes)
    .venv/bin/python benchmarks/bench_trust.py --honest 30 --riggers 4 --out -   # quick

Writes benchmarks/results/trust.md (``--out -`` for stdout only).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import time
from pathlib import Path

from machine import machine  # benchmarks/machine.py, beside this script

import numpy as np
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

STRENGTHS = {"tulip": 1.0, "cedar": 0.6, "fern": 0.2, "birch": -0.2, "maple": -0.6, "heron": -1.0}
TARGET = "maple"


def honest_only_ranking(voters, models):
    """The ratings library on the honest voters' votes alone: the score the target should have."""
    from arena.models import Vote
    from ratings import rate

    index = {m.pk: i for i, m in enumerate(models)}
    outcome = {"left": 1.0, "right": 0.0, "tie": 0.5, "bothbad": 0.5}
    rows = []
    for vote in Vote.objects.filter(session_key__in=[v.session_key for v in voters]).select_related("battle"):
        sides = {s.position: s.model_id for s in vote.battle.sides.all()}
        rows.append((index[sides["left"]], index[sides["right"]], outcome[vote.choice]))
    a, b, y = (np.array(c) for c in zip(*rows))
    return rate(a, b, y, [str(m.pk) for m in models])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--honest", type=int, default=100)
    parser.add_argument("--honest-battles", type=int, default=10)
    parser.add_argument("--riggers", type=int, default=8)
    parser.add_argument("--rigger-battles", type=int, default=40)
    parser.add_argument("--bots", type=int, default=2, help="always-A voters, and as many random voters")
    parser.add_argument("--bot-battles", type=int, default=20)
    parser.add_argument("--reading", type=float, default=20.0, help="words a second the readers read")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arena-bench-trust"))
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "trust.md"))
    args = parser.parse_args()

    from devstack import services

    with services(args.workdir) as (postgres, redis):
        os.environ.update({
            "DATABASE_URL": postgres.url, "REDIS_URL": redis.url, "SECRET_KEY": "bench-only-secret", "DEBUG": "0",
            "SECURE_COOKIES": "0", "ARENA_INPROCESS_WORKERS": "1", "ARENA_RATE_LIMIT_BATTLES": "0",
            "ARENA_RATE_LIMIT_VOTES": "0", "ARENA_VAR_DIR": str(args.workdir / "var"), "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "config.settings", "ARENA_SNAPSHOT_TIMER": "0",
        })
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        call_command("migrate", "--noinput", verbosity=0)
        return run(args, settings)


def run(args, settings) -> int:
    from arena.models import Vote
    from leaderboard.snapshots import leaderboard_snapshot_create
    from models_hub.models import ModelEntry
    from trust.models import VoterRisk
    from trust.pow import pow_challenge, pow_solve
    from trust.simulate import AlwaysAVoter, HonestVoter, RandomVoter, RiggingVoter, varied_prompts, voters_play

    from tests.standin import StandinEndpoint

    standin = StandinEndpoint().start()
    models = [
        ModelEntry.objects.create(
            slug=f"sim-{style}", display_name=f"Sim {i}", organization=f"Lab {i}", provider="openai",
            base_url=standin.base_url, remote_model=f"style-{style}", temperature=0.0, max_new_tokens=64,
        )
        for i, style in enumerate(STRENGTHS)
    ]
    target = models[list(STRENGTHS).index(TARGET)]
    honest = [HonestVoter(preference=STRENGTHS, prompts=varied_prompts(1000 + i, args.honest_battles),
                          client=f"10.1.{i // 250}.{i % 250}", seed=1000 + i, reading_wps=args.reading)
              for i in range(args.honest)]
    riggers = [RiggingVoter(target=TARGET, cover=i % 2 == 1, prompts=varied_prompts(2000 + i, args.rigger_battles),
                            client=f"10.2.0.{i}", seed=2000 + i, reading_wps=args.reading)
               for i in range(args.riggers)]
    bots = [cls(prompts=varied_prompts(3000 + 10 * k + i, args.bot_battles), client=f"10.3.{k}.{i}", seed=3000 + i)
            for k, cls in enumerate((AlwaysAVoter, RandomVoter)) for i in range(args.bots)]
    everyone = honest + riggers + bots
    total = sum(len(v.prompts) for v in everyone)

    started = time.monotonic()
    with tqdm(total=total, desc="battles", unit="battle") as bar:
        asyncio.run(voters_play(everyone, lambda v: len(v.prompts), concurrency=args.concurrency,
                                on_battle=lambda: bar.update(1)))
    played_s = time.monotonic() - started
    refused = sum(len(v.refused) for v in everyone)

    snap_started = time.monotonic()
    snapshot = leaderboard_snapshot_create(force=True)
    snapshot_s = time.monotonic() - snap_started
    note = snapshot.payload["trust"]

    excluded = {kind_key for kind_key in VoterRisk.objects.filter(state="flagged").values_list("kind", "key")}
    from arena.ratelimit import ip_hash

    def out(voter) -> bool:
        return ("session", voter.session_key) in excluded or ("address", ip_hash(voter.client)) in excluded

    def caught_votes(group) -> tuple[int, int]:
        return sum(len(v.votes) for v in group if out(v)), sum(len(v.votes) for v in group)

    rig_caught, rig_total = caught_votes(riggers)
    per_kind = {
        "rigger, leaves other battles": caught_votes([r for r in riggers if not r.cover]),
        "rigger, cover votes elsewhere": caught_votes([r for r in riggers if r.cover]),
        "always A": caught_votes([b for b in bots if b.kind == "always_a"]),
        "random": caught_votes([b for b in bots if b.kind == "random"]),
    }
    honest_flagged = sum(1 for v in honest if out(v))

    truth = honest_only_ranking(honest, models)
    ti = models.index(target)
    shift = {s["model_id"]: s for s in note["shift"]}[target.pk]
    excluded_score = shift["score"]
    rigged_score = shift["with_flagged"]
    lower, upper = float(truth.lower[ti]), float(truth.upper[ti])
    within = lower <= excluded_score <= upper

    solve_times = []
    for i in range(20):
        t = time.perf_counter()
        pow_solve(pow_challenge(f"bench-session-{i}"), settings.ARENA_POW_BITS)
        solve_times.append(time.perf_counter() - t)

    votes_total = Vote.objects.count()
    goals = {
        "rigged votes caught >= 90%": rig_caught / max(1, rig_total) >= 0.9,
        "honest voters flagged <= 2%": honest_flagged / max(1, len(honest)) <= 0.02,
        "target back within its honest-only interval": within,
    }
    lines = [
        "# Trust: voter risk on simulated attacks",
        "",
        f"Run {datetime.date.today().isoformat()} on {machine()}, by `benchmarks/bench_trust.py` "
        f"(`--honest {args.honest} --riggers {args.riggers} --bots {args.bots} --reading {args.reading:g}`).",
        "",
        f"Every vote went through the real path: the battle page (session), the proof of work "
        f"({settings.ARENA_POW_BITS} bits), the battle websocket and PostgreSQL, against six stand-in models "
        f"answering in recognisable styles. {total} battles in {played_s:.0f} s ({refused} refused), {votes_total} "
        f"votes; risk threshold {settings.ARENA_TRUST_RISK_THRESHOLD:g} (-log10 p), at most "
        f"{settings.ARENA_TRUST_MAX_VOTES_PER_HOUR} votes an hour per session.",
        "",
        f"Honest voters: {args.honest} x {args.honest_battles} battles, one preference "
        f"({', '.join(f'{k} {v:+.1f}' for k, v in STRENGTHS.items())}, log-odds), 10% ties, reading "
        f"{args.reading:g} words a second. Riggers: {args.riggers} x {args.rigger_battles} battles, target "
        f"`{TARGET}` (second weakest), half leaving other battles unvoted, half voting at random there as cover, "
        f"reading like the honest voters. Bots: {args.bots} always-A and {args.bots} random voters, "
        f"{args.bot_battles} battles each, voting at once.",
        "",
        "## Results",
        "",
        "| measure | value | goal |",
        "| --- | --- | --- |",
        f"| rigged votes left out | {rig_caught} of {rig_total} ({rig_caught / max(1, rig_total):.1%}) | >= 90% |",
        f"| honest voters wrongly flagged | {honest_flagged} of {len(honest)} "
        f"({honest_flagged / max(1, len(honest)):.1%}) | <= 2% |",
        f"| target score, honest votes only (95% interval) | {truth.scores[ti]:.1f} ({lower:.1f} to {upper:.1f}) | |",
        f"| target score, all votes (rigging counted) | {rigged_score:.1f} | |",
        f"| target score, flagged votes left out | {excluded_score:.1f} | within the interval above: "
        f"{'yes' if within else 'no'} |",
        "",
        "Votes left out by kind of voter:",
        "",
        "| voter | votes left out |",
        "| --- | --- |",
        *[f"| {kind} | {c} of {n} |" for kind, (c, n) in per_kind.items()],
        "",
        f"The snapshot (risk recomputed, {note['voters_scored']} sessions and addresses scored, refitted until the flagged set settled) took "
        f"{snapshot_s:.2f} s; it left out {note['excluded_votes']} votes of {note['flagged_sessions']} sessions "
        f"and {note['flagged_addresses']} addresses. The proof of work takes {np.median(solve_times) * 1000:.0f} ms "
        f"(median of 20, max {max(solve_times) * 1000:.0f} ms) to solve in Python on this machine.",
        "",
        "Goals: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in goals.items()) + ".",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out != "-":
        Path(args.out).write_text(report)
    standin.stop()
    from inference.dispatch import inprocess_idle

    inprocess_idle()
    return 0


if __name__ == "__main__":
    sys.exit(main())
