"""Benchmark of the style-controlled fit: ``style_features`` plus ``fit_style_controlled`` with its sandwich.

For each size (default 1M and 10M battles among 32 models) battles are drawn once with four style counts per
side (int32, as the leaderboard snapshot holds them) and saved under a temporary folder. Then each fit runs as
a whole process that loads them and fits, timed from inside (the fit alone, wall seconds) and from outside
(peak RSS by ``/usr/bin/time``, which includes the loaded arrays, about 40 bytes a battle):

- ``ours``: ``ratings.style``, the fit the leaderboard runs (chunked passes, pair sums);
- ``definition``: ``tests/ratings/reference_style.py``, the first all-at-once fit kept as its definition.

The largest differences between the two fits' scores (400-point scale) and style coefficients are reported.

    python benchmarks/bench_style.py
    python benchmarks/bench_style.py --sizes 1000000 --repeat 1 --out -

Appends nothing: writes the report to benchmarks/results/style.md (``--out -`` for stdout only).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import machine  # benchmarks/machine.py, beside this script

import numpy as np
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = 32

FIT = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[3])
data = np.load(sys.argv[1])
a, b, y, counts = data["a"], data["b"], data["y"], data["counts"]
if sys.argv[2] == "ours":
    from ratings import style as impl
else:
    from tests.ratings import reference_style as impl
start = time.perf_counter()
z = impl.style_features(counts)
fit = impl.fit_style_controlled(a, b, y, int(a.max()) + 1, z)
took = time.perf_counter() - start
print(json.dumps({"seconds": took, "theta": fit.theta.tolist(), "beta": fit.beta.tolist(),
                  "se": np.sqrt(np.diag(fit.covariance)).tolist()}))
"""


def write_battles(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 0.6, MODELS)
    verbosity = np.linspace(100, 800, MODELS)
    a = rng.integers(0, MODELS, n).astype(np.int32)
    b = ((a + rng.integers(1, MODELS, n)) % MODELS).astype(np.int32)
    counts = np.empty((n, 2, 4), dtype=np.int32)
    for side, who in ((0, a), (1, b)):
        counts[:, side, 0] = np.rint(rng.lognormal(np.log(verbosity[who]), 0.8))
        counts[:, side, 1] = rng.poisson(2, n)
        counts[:, side, 2] = rng.poisson(5, n)
        counts[:, side, 3] = rng.poisson(3, n)
    x = truth[a] - truth[b] + 0.3 * (counts[:, 0, 0] - counts[:, 1, 0]) / (counts[:, 0, 0] + counts[:, 1, 0] + 1)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-x))).astype(np.float64)
    y[rng.random(n) < 0.1] = 0.5
    np.savez(path.with_suffix(".partial.npz"), a=a, b=b, y=y, counts=counts)
    path.with_suffix(".partial.npz").rename(path)


def timed(cmd: list[str]) -> tuple[float, dict]:
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name, *cmd], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True)
        kib = tf.read().split()[-1]
    return int(kib) / 2**20, json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=os.path.join(tempfile.gettempdir(), "bench_style"))
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "style.md"))
    args = parser.parse_args()
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        path = tmp / f"style_{n}_seed{args.seed}.npz"
        if not path.exists():
            write_battles(path, n, args.seed)
        runs: dict[str, list[tuple[float, float]]] = {"ours": [], "definition": []}
        last: dict[str, dict] = {}
        for _ in tqdm(range(args.repeat), desc=f"{n:,} battles", unit="round"):
            for name in runs:
                rss, out = timed([sys.executable, "-c", FIT, str(path), name, str(REPO_ROOT)])
                runs[name].append((out["seconds"], rss))
                last[name] = out
        diff = {k: float(np.max(np.abs(np.subtract(last["ours"][k], last["definition"][k]))))
                for k in ("theta", "beta", "se")}
        cells = [f"{statistics.median(s for s, _ in v):.2f} s, {statistics.median(r for _, r in v):.2f} GiB"
                 for v in runs.values()]
        rows.append(f"| {n:,} | {cells[0]} | {cells[1]} | {400 / np.log(10) * diff['theta']:.1e} | "
                    f"{diff['beta']:.1e} | {400 / np.log(10) * diff['se']:.1e} |")
    lines = [
        "# style-controlled fit benchmark",
        "",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Machine: {machine()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}; 1-minute load average {load_before[0]:.2f} "
        f"before the run, {os.getloadavg()[0]:.2f} after",
        f"- Command: `python benchmarks/bench_style.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- {MODELS} models, four int32 style counts per side (lognormal lengths, Poisson markdown), 10% ties, seed "
        f"{args.seed}. Time: `style_features` + `fit_style_controlled` (Newton from 0 and the sandwich), median of "
        f"{args.repeat}; memory: the whole process's peak RSS, loaded battles included.",
        "",
        "| battles | ours | definition | largest score difference (points) | largest beta difference | "
        "largest standard error difference (points) |",
        "|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out != "-":
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
