"""Benchmark of decisions: how soon the head-to-head verdict comes, and how often it is wrong, under peeking.

Simulated voters with known Bradley-Terry strengths vote in an arena of 8 models (no server). Every run is one
arena; all runs of a cell advance together as arrays: every ``--check-every`` votes each run's Bradley-Terry fit is
updated (batched Newton steps from the last fit, the production ridge), its sandwich covariance computed, and the
verdicts read off :mod:`ratings.sequential` (the confidence sequence at alpha, and beside it the fixed-sample 95%
interval, both waiting for 30 votes on the pair). Pairs are drawn either by the configured weights (equal sampling
weights, in-house share 0.5, previews kept apart: the exact pair probabilities of ``arena.sampling``'s configured
draw) or by active sampling: after each check every run's pair distribution is recomputed from its own fit with
:mod:`ratings.design` (``decision_targets``, ``pair_values``, ``blend_pair_weights``: what ``arena.sampling``
does with ``ARENA_ACTIVE_SAMPLING``), strength ``--strength``, floor ``--floor``.

Cells:
(a) A/A: the in-house version equals its parent; looked at every 10 votes up to 3,000 arena votes; the share of
    runs ever declared different (sequence and fixed interval), in the arena and on a lone pair that gets every vote.
(b) true gaps of 30 and 60 points: votes (arena-wide) until the first verdict, its correctness, active vs configured.
(c) best of K = 5 versions identical to their parent: the share of runs where "the best beats the parent" is ever
    declared, with the sequences at alpha / K (and, for comparison, at alpha).
(d) scores after 5,000 votes under active sampling (the gap-30 runs): bias against the truth and the coverage of
    the 95% sandwich intervals.

    nice -n 10 python benchmarks/bench_decisions.py              # 200 runs a cell (400 for the A/A cells)
    python benchmarks/bench_decisions.py --runs 40 --out -       # a quick look

Writes benchmarks/results/decisions.md (``--out`` to change, ``--out -`` for stdout only).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from machine import machine  # benchmarks/machine.py, beside this script

import numpy as np
from scipy.special import expit
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from ratings.bradley_terry import DEFAULT_RIDGE, MAX_NEWTON_STEP, SCALE, z_value  # noqa: E402
from ratings.design import blend_pair_weights, decision_targets, pair_values  # noqa: E402
from ratings.sequential import DEFAULT_MIN_VOTES, sequence_half_width  # noqa: E402

M = 8
IA, IB = np.triu_indices(M, 1)
P = IA.size
E = np.zeros((P, M))
E[np.arange(P), IA] = 1.0
E[np.arange(P), IB] = -1.0
ALPHA = 0.05


def configured_pairs(inhouse: list[int], eligible: np.ndarray, share: float = 0.5) -> np.ndarray:
    """(M, M) pair probabilities of the configured draw with equal sampling weights: with probability ``share``
    an in-house model first, else any model; then a partner uniformly among those it may meet
    (arena.sampling.configured_pair_probabilities for equal weights)."""
    out = np.zeros((M, M))
    for firsts, mass in ((inhouse, share), (list(range(M)), 1.0 - share)):
        for i in firsts:
            partners = np.flatnonzero(eligible[i])
            out[i, partners] += mass / len(firsts) / partners.size
    out = out + out.T
    return out / np.triu(out, 1).sum()


def pair_matrix(h: np.ndarray, diag_extra: float = 0.0) -> np.ndarray:
    """(R, M, M) sum over pairs of h[:, p] u_p u_p^T."""
    out = np.einsum("pm,rp,pn->rmn", E, h, E)
    if diag_extra:
        out += diag_extra * np.eye(M)
    return out


def newton(theta: np.ndarray, wins: np.ndarray, total: np.ndarray, iters: int) -> np.ndarray:
    """Batched Newton steps on the penalised Bradley-Terry likelihood (the production ridge and step clip)."""
    for _ in range(iters):
        p = expit(theta[:, IA] - theta[:, IB])
        grad = (total * p - wins) @ E + DEFAULT_RIDGE * theta
        grad -= grad.mean(axis=1, keepdims=True)
        h = pair_matrix(total * p * (1.0 - p), DEFAULT_RIDGE)
        step = np.linalg.solve(h, grad[:, :, None])[:, :, 0]
        big = np.max(np.abs(step), axis=1)
        step *= np.minimum(1.0, MAX_NEWTON_STEP / np.maximum(big, 1e-300))[:, None]
        theta = theta - step
        theta -= theta.mean(axis=1, keepdims=True)
    return theta


def centre(cov: np.ndarray) -> np.ndarray:
    c = cov - cov.mean(axis=1, keepdims=True)
    return c - c.mean(axis=2, keepdims=True)


def sandwich(theta: np.ndarray, wins: np.ndarray, total: np.ndarray) -> np.ndarray:
    """(R, M, M) sandwich covariance in score points squared (as ratings.bradley_terry.sandwich_covariance)."""
    p = expit(theta[:, IA] - theta[:, IB])
    inv = centre(np.linalg.inv(pair_matrix(total * p * (1.0 - p), DEFAULT_RIDGE)))
    meat = pair_matrix(wins * (1.0 - p) ** 2 + (total - wins) * p**2)
    cov = inv @ meat @ inv
    return centre(0.5 * (cov + np.swapaxes(cov, 1, 2))) * SCALE**2


@dataclass
class Contrast:
    """A score difference i - j watched at every look: the first look at which each method gave a verdict."""

    i: int
    j: int
    alpha: float
    seq_vote: np.ndarray = field(default=None)
    seq_sign: np.ndarray = field(default=None)
    fix_vote: np.ndarray = field(default=None)
    fix_sign: np.ndarray = field(default=None)

    def start(self, runs: int) -> None:
        self.seq_vote = np.full(runs, -1)
        self.seq_sign = np.zeros(runs, dtype=np.int8)
        self.fix_vote = np.full(runs, -1)
        self.fix_sign = np.zeros(runs, dtype=np.int8)

    def look(self, votes: int, scores: np.ndarray, cov: np.ndarray, total: np.ndarray) -> None:
        i, j = self.i, self.j
        d = scores[:, i] - scores[:, j]
        var = np.maximum(cov[:, i, i] + cov[:, j, j] - 2.0 * cov[:, i, j], 0.0)
        k = np.flatnonzero((IA == min(i, j)) & (IB == max(i, j)))[0]
        ready = total[:, k] >= DEFAULT_MIN_VOTES
        half = sequence_half_width(var, alpha=self.alpha)
        fixed = z_value(1.0 - self.alpha) * np.sqrt(var)
        for vote, sign, width in ((self.seq_vote, self.seq_sign, half), (self.fix_vote, self.fix_sign, fixed)):
            new = ready & (vote < 0) & (np.abs(d) > width)
            vote[new] = votes
            sign[new] = np.sign(d[new]).astype(np.int8)


@dataclass
class Arena:
    truth: np.ndarray
    inhouse: list[int]
    parents: dict[int, int]
    previews: list[int]

    def eligible(self) -> np.ndarray:
        ok = ~np.eye(M, dtype=bool)
        for a in self.previews:
            for b in self.previews:
                ok[a, b] = False
        return ok


def run(
    arena: Arena,
    contrasts: list[Contrast],
    *,
    runs: int,
    max_votes: int,
    check_every: int,
    active: bool,
    strength: float,
    floor: float,
    seed: int,
    stop_when_decided: bool = False,
    snapshot_at: int | None = None,
    label: str = "",
    sharpness: float = 4.0,
    neighbour_weight: float = 0.25,
    public_weight: float = 0.1,
) -> dict:
    rng = np.random.default_rng(seed)
    eligible = arena.eligible()
    base = configured_pairs(arena.inhouse, eligible)
    q = np.tile(base[IA, IB], (runs, 1))
    true_p = expit((arena.truth[IA] - arena.truth[IB]) / SCALE)
    wins = np.zeros((runs, P))
    total = np.zeros((runs, P))
    theta = np.zeros((runs, M))
    for c in contrasts:
        c.start(runs)
    snap = None
    offsets = (np.arange(runs) * P)[:, None]
    for step in tqdm(range(1, max_votes // check_every + 1), desc=label, leave=False, mininterval=2.0):
        cum = np.cumsum(q, axis=1)
        cum /= cum[:, -1:]
        u = rng.random((runs, check_every))
        idx = np.minimum((u[:, :, None] > cum[:, None, :]).sum(axis=2), P - 1)
        won = rng.random((runs, check_every)) < true_p[idx]
        flat = (idx + offsets).ravel()
        total += np.bincount(flat, minlength=runs * P).reshape(runs, P)
        wins += np.bincount(flat, weights=won.ravel(), minlength=runs * P).reshape(runs, P)
        theta = newton(theta, wins, total, iters=3)
        cov = sandwich(theta, wins, total)
        scores = 1000.0 + SCALE * theta
        votes = step * check_every
        for c in contrasts:
            c.look(votes, scores, cov, total)
        if snapshot_at is not None and votes == snapshot_at:
            final = newton(theta, wins, total, iters=20)
            votes_each = (total @ np.abs(E)).mean(axis=0)
            snap = (1000.0 + SCALE * final, sandwich(final, wins, total), votes_each)
        if active:
            sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0))
            for r in range(runs):
                targets, weights = decision_targets(
                    scores[r], scores[r] - 1.96 * sd[r], scores[r] + 1.96 * sd[r],
                    inhouse=arena.inhouse, parents=arena.parents,
                    neighbour_weight=neighbour_weight, public_weight=public_weight,
                )
                value = pair_values(scores[r], cov[r], targets, weights)
                q[r] = blend_pair_weights(base, value, eligible, strength=strength, floor=floor,
                                          sharpness=sharpness)[IA, IB]
        if stop_when_decided and (snapshot_at is None or votes >= snapshot_at) and all((c.seq_vote >= 0).all() for c in contrasts):
            break
    return {"snapshot": snap, "votes": votes}


def two_model_aa(runs: int, max_votes: int, check_every: int, seed: int) -> tuple[float, float]:
    """A lone pair of identical models getting every vote: share of runs ever declared different."""
    rng = np.random.default_rng(seed)
    wins = np.cumsum(rng.random((runs, max_votes)) < 0.5, axis=1).astype(float)
    looks = np.arange(check_every, max_votes + 1, check_every)
    looks = looks[looks >= DEFAULT_MIN_VOTES] - 1
    w = wins[:, looks]
    n = looks + 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        d = SCALE * np.log(w / (n - w))
        var = SCALE**2 * n / (w * (n - w))
    seq = np.any(np.abs(d) > sequence_half_width(var), axis=1).mean()
    fix = np.any(np.abs(d) > 1.959964 * np.sqrt(var), axis=1).mean()
    return float(seq), float(fix)


def medians(vote: np.ndarray) -> str:
    decided = vote[vote >= 0]
    if decided.size * 2 <= vote.size:
        return f"> {vote.max() if vote.max() > 0 else 0:,} (under half decided)"
    v = np.where(vote >= 0, vote, np.iinfo(np.int64).max)
    return f"{int(np.median(v)):,}"


NOTES = """## Reading the figures

- (a) and (c): the sequence's rate of false "different" verdicts stays under alpha however often it is looked at;
  the fixed-sample interval checked the same way is wrong in a third to a half of the runs. The sequence is
  conservative (the normal-mixture bound is not tight, and the verdict waits for 30 votes on the pair).
- (b): active sampling spends most battles on the open gap (the in-house version against its parent) and draws the
  settled pairs at the floor's share; the configured draw gives the pair under a tenth of the votes, and most of what
  it learns about the gap comes through third models.
- (d): the intervals are the usual sandwich intervals, not the sequence. Under the active draw which pairs get votes
  depends on the current estimates: a model estimated far from its neighbours draws fewer votes that would correct
  it, so the least-drawn models lean outward and the in-house gap's interval covers a little less often than 95%.
  The floor bounds this; decisions should rest on the confidence sequence, which holds under any draw that depends
  only on past votes.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--aa-runs", type=int, default=400)
    parser.add_argument("--check-every", type=int, default=10)
    parser.add_argument("--strength", type=float, default=0.9)
    parser.add_argument("--floor", type=float, default=0.2)
    parser.add_argument("--sharpness", type=float, default=4.0)
    parser.add_argument("--neighbour-weight", type=float, default=0.25)
    parser.add_argument("--public-weight", type=float, default=0.1)
    parser.add_argument("--max-votes", type=int, default=20000, help="cap for cell (b)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--cells", default="abcd", help="which cells to run (d needs b)")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "decisions.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    others = np.array([1150.0, 1100.0, 1050.0, 960.0, 920.0, 870.0])
    lines: list[str] = []
    say = lines.append
    ce = args.check_every

    if "a" in args.cells:
        # (a) A/A
        say("## (a) A/A: a version identical to its parent, looked at every %d votes up to 3,000" % ce)
        say("")
        say("| where | draw | runs | declared different: sequence (target <= 5%) | fixed-sample 95% interval |")
        say("| --- | --- | --- | --- | --- |")
        seq, fix = two_model_aa(args.aa_runs * 5, 3000, ce, args.seed)
        say(f"| lone pair, every vote on it | - | {args.aa_runs * 5} | {seq:.1%} | {fix:.1%} |")
        aa = Arena(np.concatenate([[1000.0, 1000.0], others]), inhouse=[0], parents={0: 1}, previews=[0])
        for active in (False, True):
            c = Contrast(0, 1, ALPHA)
            run(aa, [c], runs=args.aa_runs, max_votes=3000, check_every=ce, active=active, strength=args.strength,
                floor=args.floor, sharpness=args.sharpness,
            neighbour_weight=args.neighbour_weight, public_weight=args.public_weight, seed=args.seed + 1 + active, label=f"A/A {'active' if active else 'configured'}")
            say(f"| arena of 8 | {'active' if active else 'configured'} | {args.aa_runs} | "
                f"{(c.seq_vote >= 0).mean():.1%} | {(c.fix_vote >= 0).mean():.1%} |")
        say("")

    if "b" in args.cells:
        # (b) gaps, and (d) scores under active sampling
        say(f"## (b) true gaps: arena votes to the first verdict of the sequence (cap {args.max_votes:,})")
        say("")
        say("| gap | draw | runs | median votes to a verdict | decided by 5,000 | wrong verdicts | votes on the pair at the median run |")
        say("| --- | --- | --- | --- | --- | --- | --- |")
        summary: dict[tuple[int, bool], np.ndarray] = {}
        snapshots: dict[bool, tuple] = {}
        for gap in (30, 60):
            truth = np.concatenate([[1000.0 + gap, 1000.0], others])
            arena = Arena(truth, inhouse=[0], parents={0: 1}, previews=[0])
            for active in (False, True):
                c = Contrast(0, 1, ALPHA)
                out = run(arena, [c], runs=args.runs, max_votes=args.max_votes, check_every=ce, active=active,
                          strength=args.strength, floor=args.floor, sharpness=args.sharpness,
            neighbour_weight=args.neighbour_weight, public_weight=args.public_weight, seed=args.seed + 10 * gap + active,
                          stop_when_decided=True, snapshot_at=5000 if gap == 30 else None,
                          label=f"gap {gap} {'active' if active else 'configured'}")
                if gap == 30:
                    snapshots[active] = (out["snapshot"], truth)
                vote = c.seq_vote
                summary[(gap, active)] = vote
                decided = vote >= 0
                wrong = decided & (c.seq_sign < 0)
                share = configured_pairs([0], arena.eligible())[0, 1]
                say(f"| {gap} | {'active' if active else 'configured'} | {args.runs} | {medians(vote)} | "
                    f"{((vote >= 0) & (vote <= 5000)).mean():.1%} | {wrong.sum() / max(1, decided.sum()):.1%} | "
                    f"{'-' if active else f'{share:.1%} of the votes'} |")
        say("")
        for gap in (30, 60):
            a, b = summary[(gap, True)], summary[(gap, False)]
            if (a >= 0).mean() > 0.5 and (b >= 0).mean() > 0.5:
                ma = np.median(np.where(a >= 0, a, 10**9))
                mb = np.median(np.where(b >= 0, b, 10**9))
                say(f"- gap {gap}: active sampling needs {1 - ma / mb:.0%} fewer votes (median {ma:,.0f} vs {mb:,.0f}; target at least 40% fewer).")
            else:
                say(f"- gap {gap}: the configured draw left over half the runs undecided at the cap; the saving is at least "
                    f"{1 - np.median(np.where(a >= 0, a, 10**9)) / args.max_votes:.0%}.")
        say("")

    if "c" in args.cells:
        # (c) best of K
        k = 5
        say(f"## (c) best of K = {k} versions identical to their parent, looked at every {ce} votes up to 3,000")
        say("")
        say("| draw | runs | 'best beats parent' with the sequences at alpha/K (target <= 5%) | at alpha, no correction | fixed 95% intervals, no correction |")
        say("| --- | --- | --- | --- | --- |")
        truth = np.array([1000.0] * k + [1000.0, 1100.0, 900.0])
        arena = Arena(truth, inhouse=list(range(k)), parents={v: k for v in range(k)}, previews=list(range(k)))
        for active in (False, True):
            corrected = [Contrast(v, k, ALPHA / k) for v in range(k)]
            plain = [Contrast(v, k, ALPHA) for v in range(k)]
            run(arena, corrected + plain, runs=args.runs, max_votes=3000, check_every=ce, active=active,
                strength=args.strength, floor=args.floor, sharpness=args.sharpness,
            neighbour_weight=args.neighbour_weight, public_weight=args.public_weight, seed=args.seed + 500 + active,
                label=f"best of {k} {'active' if active else 'configured'}")
            better = np.any([(c.seq_vote >= 0) & (c.seq_sign > 0) for c in corrected], axis=0).mean()
            naive = np.any([(c.seq_vote >= 0) & (c.seq_sign > 0) for c in plain], axis=0).mean()
            fixed = np.any([(c.fix_vote >= 0) & (c.fix_sign > 0) for c in plain], axis=0).mean()
            say(f"| {'active' if active else 'configured'} | {args.runs} | {better:.1%} | {naive:.1%} | {fixed:.1%} |")
        say("")

    if "d" in args.cells and "b" in args.cells:
        # (d) bias and coverage
        say("## (d) scores after 5,000 votes (the gap-30 runs), against the truth")
        say("")
        say("Bias: mean of (fitted - true) over the runs; width: mean width of the 95% sandwich interval; the truth "
            "centred like the fit (mean 1000). Configured draw beside the active one, for comparison.")
        say("")
        names = ["ours (in-house)", "parent"] + [f"other {i}" for i in range(1, 7)]
        for active in (True, False):
            (scores, cov, votes_each), truth = snapshots[active]
            truth_c = truth - truth.mean() + 1000.0
            sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
            width = 2 * 1.959964 * sd
            err = scores - truth_c
            cover = np.abs(err) <= 1.959964 * sd
            say(f"**{'Active' if active else 'Configured'} draw** ({args.runs} runs)")
            say("")
            say("| model | true score | mean votes | bias | mean 95% width | bias / width (target <= 0.10) | coverage (target 93-97%) |")
            say("| --- | --- | --- | --- | --- | --- | --- |")
            for m in range(M):
                say(f"| {names[m]} | {truth_c[m]:.0f} | {votes_each[m]:,.0f} | {err[:, m].mean():+.1f} | "
                    f"{width[:, m].mean():.1f} | {abs(err[:, m].mean()) / width[:, m].mean():.3f} | {cover[:, m].mean():.1%} |")
            d = scores[:, 0] - scores[:, 1]
            dsd = np.sqrt(cov[:, 0, 0] + cov[:, 1, 1] - 2 * cov[:, 0, 1])
            say(f"| ours - parent | 30 | | {(d - 30).mean():+.1f} | {2 * 1.959964 * dsd.mean():.1f} | "
                f"{abs((d - 30).mean()) / (2 * 1.959964 * dsd.mean()):.3f} | {(np.abs(d - 30) <= 1.959964 * dsd).mean():.1%} |")
            say(f"| all models | | | | | max {np.max(np.abs(err.mean(axis=0)) / width.mean(axis=0)):.3f} | {cover.mean():.1%} |")
            say("")
    elapsed = time.perf_counter() - started

    header = [
        "# Decisions: verdicts under peeking, active sampling, best of K",
        "",
        f"Run {datetime.date.today().isoformat()} on {machine()}; `nice -n 10 python benchmarks/bench_decisions.py "
        f"--runs {args.runs} --aa-runs {args.aa_runs} --strength {args.strength} --floor {args.floor} --sharpness {args.sharpness} "
        f"--neighbour-weight {args.neighbour_weight} --public-weight {args.public_weight}` "
        f"in {elapsed / 60:.1f} min.",
        "",
        "Arena of 8 models: the in-house version (a preview), its parent at 1000, and six others at 1150, 1100, 1050, "
        "960, 920 and 870. Verdicts: the confidence sequence of `ratings.sequential` (alpha 0.05, tuned for 1,000 "
        "votes, 30 votes on the pair before any verdict), looked at every "
        f"{ce} arena votes. Configured draw: equal weights, in-house share 0.5. Active draw: `ratings.design` "
        f"from each run's own fit after every look, strength {args.strength}, floor {args.floor}.",
        "",
    ]
    text = "\n".join(header + lines) + "\n" + NOTES
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
