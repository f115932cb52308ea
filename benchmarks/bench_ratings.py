"""Benchmark of ratings: the whole ``python -m ratings`` command from a CSV, beside arena-rank and FastChat.

For each size (default 200k, 1M, 10M and 60M battles among 100 models) a battle CSV is written under a temporary
folder (``model_a,model_b,winner``, names ``m00`` to ``m99``, ~17 bytes a row, so 60M rows are about 1 GB;
drawn from Bradley-Terry with known scores, 10% ties and 5% both-bad, seeded; reused when already there).
Then, interleaved (every command once, then every command again, ...), each as a whole process, timed from
outside (wall time and peak RSS by ``/usr/bin/time``):

- ``pandas.read_csv(engine="pyarrow")`` of the file, nothing else: the speed of reading;
- ``python -m ratings FILE``: fit and 95% sandwich intervals (the default);
- ``python -m ratings FILE --ci bootstrap --rounds 1000``;
- arena-rank 0.1.1: ``pandas.read_csv``, ``PairDataset.from_pandas``, ``BradleyTerry`` sandwich intervals;
- FastChat's current ``compute_bt`` (no interval): ``pandas.read_csv``, then the algorithm of
  ``fastchat/serve/monitor/rating_systems.py`` (lm-sys/FastChat, ``preprocess_for_bt`` + ``fit_bt``:
  ``pd.factorize`` of the names, ``np.unique`` of (A, B, outcome) rows with counts, scipy L-BFGS-B with
  gtol 1e-6 and at most 100 iterations), written out here in the same steps since FastChat's release on
  PyPI predates that file.

pandas, arena-rank (which needs jax) and FastChat's steps run in a separate virtual environment given by
``--other-python`` (e.g. ``python -m venv /tmp/v && /tmp/v/bin/pip install arena-rank==0.1.1``; it brings
pandas and scipy), never in the project's. Without it only our command is timed. arena-rank and FastChat are
timed up to ``--others-max`` battles (default 10M). Medians are reported; scores of the others are compared
with ours (largest difference of the centred scores).

    python benchmarks/bench_ratings.py --other-python /tmp/v/bin/python
    python benchmarks/bench_ratings.py --sizes 200000,1000000 --repeat 1 --out -

Writes the report to benchmarks/results/ratings.md (``--out`` to change, ``--out -`` for stdout only).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import machine  # benchmarks/machine.py, beside this script

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = 100
WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")

ARENA_RANK = """
import sys, pandas as pd
from arena_rank.models.bradley_terry import BradleyTerry
from arena_rank.utils.data_utils import PairDataset
df = pd.read_csv(sys.argv[1], engine="pyarrow")
data = PairDataset.from_pandas(df)
out = BradleyTerry(n_competitors=len(data.competitors)).compute_ratings_and_cis(data, ci_method="sandwich")
pd.DataFrame({"model": out["competitors"], "score": out["ratings"]}).to_csv(sys.argv[2], index=False)
"""

# The steps of FastChat's compute_bt (fastchat/serve/monitor/rating_systems.py, lm-sys/FastChat), in our words.
FASTCHAT = """
import math, sys, numpy as np, pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
df = pd.read_csv(sys.argv[1], engine="pyarrow")
n = len(df)
codes, models = pd.factorize(pd.concat([df["model_a"], df["model_b"]]))
rows = np.ones((n, 3), dtype=np.int32)
rows[:, 0], rows[:, 1] = codes[:n], codes[n:]
rows[(df["winner"] == "model_a").to_numpy(), 2] = 2
rows[(df["winner"] == "model_b").to_numpy(), 2] = 0
cells, weights = np.unique(rows, return_counts=True, axis=0)
pairs, outcomes, weights = cells[:, :2], cells[:, 2] / 2.0, weights.astype(np.float64)
alpha = math.log(10.0)

def loss_and_grad(r):
    p = expit(alpha * (r[pairs[:, 0]] - r[pairs[:, 1]]))
    loss = -((np.log(p) * outcomes + np.log(1.0 - p) * (1.0 - outcomes)) * weights).sum()
    g = -alpha * (outcomes - p) * weights
    grad = np.zeros_like(r)
    np.add.at(grad, pairs, g[:, None] * np.array([1.0, -1.0]))
    return loss, grad

x = minimize(loss_and_grad, np.zeros(len(models)), jac=True, method="L-BFGS-B",
             options={"maxiter": 100, "gtol": 1e-6})["x"]
pd.DataFrame({"model": list(models), "score": 1000 + 400 * x}).to_csv(sys.argv[2], index=False)
"""

READ_ONLY = """
import sys, pandas as pd
pd.read_csv(sys.argv[1], engine="pyarrow")
"""


def write_battles(path: Path, n: int, seed: int) -> None:
    """A Bradley-Terry battle CSV of ``n`` rows, written in chunks so that 60M rows need little memory."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 150.0, MODELS)
    names = pa.array([f"m{i:02d}" for i in range(MODELS)])
    winners = pa.array(WINNERS)
    tmp = path.with_suffix(".partial")
    writer = None
    chunk = 2_000_000
    for start in tqdm(range(0, n, chunk), desc=f"write {n:,} battles", unit="chunk", leave=False):
        k = min(chunk, n - start)
        a = rng.integers(0, MODELS, k)
        b = (a + rng.integers(1, MODELS, k)) % MODELS
        p = 1.0 / (1.0 + 10.0 ** ((truth[b] - truth[a]) / 400.0))
        u = rng.random(k)
        kind = np.where(u < 0.10, 2, np.where(u < 0.15, 3, np.where(rng.random(k) < p, 0, 1)))

        def text(codes: np.ndarray, values: pa.Array) -> pa.Array:
            return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), values).cast(pa.string())

        table = pa.table({"model_a": text(a, names), "model_b": text(b, names), "winner": text(kind, winners)})
        if writer is None:
            writer = pa_csv.CSVWriter(tmp, table.schema, write_options=pa_csv.WriteOptions(quoting_style="none"))
        writer.write_table(table)
    writer.close()
    tmp.rename(path)


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, peak RSS in GiB, the finished process) of one whole command."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        done = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", tf.name, *cmd], cwd=cwd,
                              capture_output=True, text=True)
        wall, kib = tf.read().split()[-2:]
    return float(wall), int(kib) / 2**20, done


def scores_of(path: Path, column: str = "score") -> dict[str, float]:
    with open(path, newline="") as fh:
        return {r["model"]: float(r[column]) for r in csv.DictReader(fh)}


def max_diff(ours: dict[str, float], other: dict[str, float]) -> float:
    names = sorted(ours)
    x = np.array([ours[n] for n in names])
    y = np.array([other[n] for n in names])
    return float(np.abs((x - x.mean()) - (y - y.mean())).max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200000,1000000,10000000,60000000")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every command per size (median reported)")
    parser.add_argument("--big-repeat", type=int, default=2, help="runs per command at sizes above --others-max")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--other-python", help="python of a virtual environment with pandas and arena-rank")
    parser.add_argument("--others-max", type=int, default=10_000_000)
    parser.add_argument("--tmp", default=os.path.join(tempfile.gettempdir(), "bench_ratings"))
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "ratings.md"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    ours = [sys.executable, "-m", "ratings"]
    load_before = os.getloadavg()

    results: dict[int, dict[str, list[tuple[float, float]]]] = {}
    diffs: dict[int, dict[str, float]] = {}
    failures: list[str] = []
    for n in sizes:
        path = tmp / f"battles_{n}_seed{args.seed}.csv"
        if not path.exists():
            write_battles(path, n, args.seed)
        commands: dict[str, list[str]] = {}
        if args.other_python:
            commands["pandas.read_csv"] = [args.other_python, "-c", READ_ONLY, str(path)]
        commands["ours, sandwich"] = [*ours, str(path)]
        commands["ours, 1,000 bootstrap rounds"] = [*ours, str(path), "--ci", "bootstrap", "--rounds", "1000"]
        if args.other_python and n <= args.others_max:
            commands["arena-rank 0.1.1, sandwich"] = [args.other_python, "-c", ARENA_RANK, str(path), str(tmp / "arena_rank.csv")]
            commands["FastChat compute_bt"] = [args.other_python, "-c", FASTCHAT, str(path), str(tmp / "fastchat.csv")]
        repeat = args.repeat if n <= args.others_max else args.big_repeat
        results[n] = {name: [] for name in commands}
        diffs[n] = {}
        progress = tqdm(total=repeat * len(commands), desc=f"{n:,} battles", unit="run")
        for _ in range(repeat):
            for name, cmd in commands.items():
                progress.set_postfix_str(name)
                wall, rss, done = timed(cmd, REPO_ROOT)
                if done.returncode != 0:
                    failures.append(f"{name} at {n:,} battles failed: {done.stderr.strip().splitlines()[-1:]}")
                else:
                    results[n][name].append((wall, rss))
                    if name == "ours, sandwich":
                        (tmp / "ours.csv").write_text(done.stdout)
                progress.update()
        progress.close()
        if (tmp / "ours.csv").exists():
            mine = scores_of(tmp / "ours.csv")
            for name, file in (("arena-rank 0.1.1, sandwich", "arena_rank.csv"), ("FastChat compute_bt", "fastchat.csv")):
                if name in commands and (tmp / file).exists():
                    diffs[n][name] = max_diff(mine, scores_of(tmp / file))
                    (tmp / file).unlink()
        tqdm.write(f"{n:,}: " + "; ".join(
            f"{k} {statistics.median(w for w, _ in v):.2f} s" for k, v in results[n].items() if v))

    names = list(dict.fromkeys(k for r in results.values() for k in r))
    lines = [
        "# ratings benchmark",
        "",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Machine: {machine()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, pyarrow {pa.__version__}; 1-minute load "
        f"average {load_before[0]:.2f} before the run, {os.getloadavg()[0]:.2f} after (other work shares the cores)",
        f"- Command: `python benchmarks/bench_ratings.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- {MODELS} models, true scores ~ N(1000, 150^2), pairs uniform, 10% ties and 5% both-bad, seed {args.seed}; "
        "CSV `model_a,model_b,winner` with names m00..m99 (~17 bytes a row). Every cell: the whole process "
        "(interpreter start, imports, reading the CSV, fitting, writing the output), wall seconds and peak RSS "
        f"from /usr/bin/time, median of {args.repeat} interleaved runs ({args.big_repeat} above "
        f"{args.others_max:,} battles).",
        "",
        "| battles | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for n, res in results.items():
        cells = []
        for name in names:
            runs = res.get(name) or []
            cells.append("-" if not runs else
                         f"{statistics.median(w for w, _ in runs):.2f} s, {statistics.median(r for _, r in runs):.2f} GiB")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    lines += ["", "Ratios (median wall time):", ""]
    for n, res in results.items():
        med = {k: statistics.median(w for w, _ in v) for k, v in res.items() if v}
        parts = []
        boot = med.get("ours, 1,000 bootstrap rounds")
        if boot and "pandas.read_csv" in med:
            parts.append(f"ours with 1,000 bootstrap rounds = {boot / med['pandas.read_csv']:.1f}x pandas.read_csv")
        sandwich = med.get("ours, sandwich")
        for other in ("arena-rank 0.1.1, sandwich", "FastChat compute_bt"):
            if sandwich and other in med:
                parts.append(f"{other} = {med[other] / sandwich:.1f}x ours (sandwich)")
        for other, d in diffs[n].items():
            parts.append(f"{other}'s scores within {d:.2f} points of ours")
        if parts:
            lines.append(f"- {n:,} battles: " + "; ".join(parts) + ".")
    if failures:
        lines += ["", *[f"- {f}" for f in failures]]
    lines.append("")
    report = "\n".join(lines)
    print(report)
    if args.out != "-":
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
