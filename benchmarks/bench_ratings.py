"""Benchmark of ratings: accuracy against known truth, time and memory, beside FastChat and choix.

For each size (default 10k, 1M and 10M battles among 100 models) battles are drawn from Bradley-Terry with
known true scores (seeded, no ties, so the half-win rule cannot blur the comparison), saved to .npy under
/tmp and loaded back, then: aggregate to pair counts, fit, sandwich, 1,000 bootstrap rounds. Beside it,
where installed: FastChat's ``compute_mle_elo`` fit (scikit-learn LogisticRegression on the N x M design
matrix, unpenalised, no intercept; without ties it needs no row duplication) and ``choix.ilsr_pairwise``.
A competitor is skipped at a size whose design matrix would not fit in memory or whose time, extrapolated
linearly from the previous size, would pass 120 s.

    python benchmarks/bench_ratings.py                       # project venv: competitors "not installed"
    python benchmarks/bench_ratings.py   # in a virtual environment with scikit-learn and choix added

Writes the report to benchmarks/results/ratings.md (``--out`` to change, ``--out -`` for stdout only).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

from machine import machine  # benchmarks/machine.py, beside this script

import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from ratings import aggregate  # noqa: E402
from ratings.bradley_terry import (  # noqa: E402
    INIT_SCORE,
    SCALE,
    bootstrap_thetas,
    fit_bradley_terry,
    sandwich_covariance,
)

try:
    from sklearn.linear_model import LogisticRegression
except ImportError:
    LogisticRegression = None
try:
    import choix
except ImportError:
    choix = None

TIME_LIMIT_S = 120.0
MEMORY_LIMIT_BYTES = 8 * 2**30


def generate(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """True (M,) scores and (N,) int32 model_a, model_b and float32 outcomes drawn from Bradley-Terry."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 150.0, m)
    truth += INIT_SCORE - truth.mean()
    a = rng.integers(0, m, n, dtype=np.int32)
    b = ((a + rng.integers(1, m, n, dtype=np.int32)) % m).astype(np.int32)
    p = 1.0 / (1.0 + 10.0 ** ((truth[b] - truth[a]) / 400.0))
    y = (rng.random(n) < p).astype(np.float32)
    return truth, a, b, y


def accuracy(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    s = scores - scores.mean()
    t = truth - truth.mean()
    return float(np.sqrt(np.mean((s - t) ** 2))), float(spearmanr(s, t).statistic)


def ours(a, b, y, m: int, rounds: int) -> dict[str, float | np.ndarray]:
    t0 = time.perf_counter()
    counts = aggregate(a, b, y, m)
    t1 = time.perf_counter()
    counts.check_connected()
    theta = fit_bradley_terry(counts)
    sandwich_covariance(counts, theta)
    t2 = time.perf_counter()
    bootstrap_thetas(counts, theta, rounds=rounds, seed=0)
    t3 = time.perf_counter()
    return dict(aggregate=t1 - t0, fit=t2 - t1, bootstrap=t3 - t2, scores=INIT_SCORE + SCALE * theta, pairs=counts.first.size)


def peak_memory(a, b, y, m: int, rounds: int) -> float:
    """Peak bytes Python and numpy allocate during aggregate + fit + bootstrap (inputs excluded)."""
    tracemalloc.start()
    ours(a, b, y, m, rounds)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def fastchat_mle(a, b, y, m: int) -> np.ndarray:
    """FastChat's compute_mle_elo on arrays: logistic regression on the dense N x M design matrix."""
    n = a.size
    x = np.zeros((n, m))
    x[np.arange(n), a] = np.log(10.0)
    x[np.arange(n), b] = -np.log(10.0)
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6)
    lr.fit(x, y)
    return INIT_SCORE + 400.0 * lr.coef_[0]


def choix_ilsr(a, b, y, m: int) -> np.ndarray:
    won = y == 1
    winners = np.where(won, a, b)
    losers = np.where(won, b, a)
    data = list(zip(winners.tolist(), losers.tolist()))
    theta = choix.ilsr_pairwise(m, data)
    return INIT_SCORE + SCALE * (theta - theta.mean())


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000,10000000")
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of our pipeline per size; best is reported")
    parser.add_argument("--tmp", default="/tmp/bench_ratings")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "ratings.md"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    m = args.models
    os.makedirs(args.tmp, exist_ok=True)

    rows = []
    notes: list[str] = []
    last: dict[str, tuple[int, float]] = {}
    load_before = os.getloadavg()
    progress = tqdm(total=len(sizes) * 5, desc="benchmark", unit="step")
    for n in sizes:
        progress.set_postfix_str(f"{n:,} battles: generate")
        t0 = time.perf_counter()
        truth, a, b, y = generate(n, m, args.seed)
        t_gen = time.perf_counter() - t0
        path = Path(args.tmp) / f"battles_{n}.npz"
        np.save(path.with_suffix(".a.npy"), a)
        np.save(path.with_suffix(".b.npy"), b)
        np.save(path.with_suffix(".y.npy"), y)
        t0 = time.perf_counter()
        a = np.load(path.with_suffix(".a.npy"))
        b = np.load(path.with_suffix(".b.npy"))
        y = np.load(path.with_suffix(".y.npy"))
        t_load = time.perf_counter() - t0
        progress.update()

        progress.set_postfix_str(f"{n:,} battles: ours")
        # Best of --repeat runs per stage: the machine may be shared, and the minimum is the least disturbed.
        runs = [ours(a, b, y, m, args.rounds) for _ in range(args.repeat)]
        res = dict(runs[0])
        for key in ("aggregate", "fit", "bootstrap"):
            res[key] = min(r[key] for r in runs)
        rmse, rho = accuracy(res["scores"], truth)
        progress.update()
        progress.set_postfix_str(f"{n:,} battles: peak memory")
        peak = peak_memory(a, b, y, m, args.rounds)
        progress.update()
        our_fit = res["aggregate"] + res["fit"]
        row = dict(
            n=n, pairs=res["pairs"], gen=t_gen, load=t_load, agg=res["aggregate"], fit=res["fit"],
            boot=res["bootstrap"], total=our_fit + res["bootstrap"], peak=peak, rmse=rmse, rho=rho,
        )

        for name, fn, available, memory in (
            ("fastchat", fastchat_mle, LogisticRegression is not None, n * m * 8 * 2),
            ("choix", choix_ilsr, choix is not None, n * 200),
        ):
            progress.set_postfix_str(f"{n:,} battles: {name}")
            if not available:
                row[name] = "not installed"
            elif memory > MEMORY_LIMIT_BYTES:
                row[name] = "skipped"
                notes.append(f"{name} at {n:,} battles: skipped, needs about {memory / 2**30:.0f} GiB")
            elif name in last and last[name][1] * n / last[name][0] > TIME_LIMIT_S:
                row[name] = "skipped"
                est = last[name][1] * n / last[name][0]
                notes.append(f"{name} at {n:,} battles: skipped, extrapolated {est:.0f} s > {TIME_LIMIT_S:.0f} s")
            else:
                t0 = time.perf_counter()
                scores = fn(a, b, y, m)
                elapsed = time.perf_counter() - t0
                last[name] = (n, elapsed)
                c_rmse, c_rho = accuracy(scores, truth)
                diff = float(np.abs((scores - scores.mean()) - (res["scores"] - res["scores"].mean())).max())
                row[name] = f"{elapsed:.2f} s = {elapsed / our_fit:.0f}x ours; RMSE {c_rmse:.2f}, max diff to ours {diff:.2f}"
            progress.update()
        rows.append(row)
        tqdm.write(
            f"{n:>10,} battles: load {t_load:.3f}s aggregate {res['aggregate']:.3f}s fit {res['fit']:.3f}s "
            f"bootstrap {res['bootstrap']:.3f}s peak {peak / 2**20:.0f} MiB RMSE {rmse:.2f} rho {rho:.4f}"
        )
        del a, b, y
    progress.close()

    date = datetime.date.today().isoformat()
    lines = [
        "# ratings benchmark",
        "",
        f"- Date: {date}",
        f"- Machine: {machine()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}; 1-minute load average "
        f"{load_before[0]:.2f} before the run, {os.getloadavg()[0]:.2f} after (other work may share the cores)",
        f"- Command: `python benchmarks/bench_ratings.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- {m} models, true scores ~ N(1000, 150^2), pairs uniform, no ties, seed {args.seed}; "
        f"{args.rounds} bootstrap rounds; times are wall-clock seconds, ours the best of {args.repeat} runs, "
        "the others one run.",
        "- load = np.load of the three battle arrays (int32, int32, float32) from .npy under /tmp (warm page "
        "cache); fit = connectivity check + Newton fit + sandwich; total = aggregate + fit + bootstrap; "
        "peak = tracemalloc peak of aggregate + fit + bootstrap, battle arrays excluded; RMSE and Spearman "
        "rho of the fitted scores against the true scores (both centred).",
        "",
        "| battles | pairs | generate | load | aggregate | fit | bootstrap | total | total / load | peak MiB "
        "| RMSE | Spearman |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['pairs']:,} | {fmt_s(r['gen'])} | {fmt_s(r['load'])} | {fmt_s(r['agg'])} | "
            f"{fmt_s(r['fit'])} | {fmt_s(r['boot'])} | {fmt_s(r['total'])} | {r['total'] / r['load']:.0f} | "
            f"{r['peak'] / 2**20:.0f} | {r['rmse']:.2f} | {r['rho']:.4f} |"
        )
    lines += [
        "",
        "Other fits, same battles (time ratio against our aggregate + fit):",
        "",
        "| battles | FastChat compute_mle_elo (sklearn LogisticRegression) | choix.ilsr_pairwise |",
        "|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['fastchat']} | {r['choix']} |")
    big = rows[-1]
    verdict = "met" if big["total"] <= 2 * big["load"] else "not met"
    notes.insert(
        0,
        f"Target at {big['n']:,} battles: aggregate + fit + {args.rounds} bootstrap rounds = {big['total']:.2f} s, "
        f"{big['total'] / big['load']:.0f}x the {big['load']:.3f} s np.load of the arrays "
        f"(within 2x: {verdict}); the bootstrap works on the {big['pairs']:,} pair counts, so its cost does "
        "not grow with the number of battles.",
    )
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    lines += ["", f"Process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB.", ""]
    report = "\n".join(lines)
    print(report)
    if args.out != "-":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
