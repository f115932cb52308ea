"""Regenerate the arena-rank parity fixture: many battles, a few rarely drawn models.

    python tests/ratings/data/make_rare_models.py              # counts only (any environment with numpy)
    /path/to/venv/bin/python tests/ratings/data/make_rare_models.py --arena-rank   # and arena-rank's output

Writes, beside this script:

- ``rare_models_counts.csv``: ``model_a,model_b,winner,count``, the 200,000 battles of 40 models drawn from
  Bradley-Terry with known scores (``rare_models_truth.csv``), aggregated to their distinct rows (battles are
  exchangeable, so the counts are the whole data set). 32 models share most battles; 8 are drawn rarely
  (25 to 99 battles each), where arena-rank's Hessian regularisation (1e-5 x 200,000 = 2 on the diagonal)
  narrows the intervals visibly. 10% of the battles are ties.
- ``rare_models_arena_rank.csv``: with ``--arena-rank``, arena-rank 0.1.1's ``BradleyTerry`` (defaults) with
  ``ci_method="sandwich"`` on the expanded rows: ``model,score,lower,upper,votes``. arena-rank needs jax and
  pandas, so it is run from a throwaway virtual environment with ``pip install arena-rank==0.1.1``, never
  from the project's.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RARE_VOTES = (25, 35, 50, 60, 70, 80, 90, 99)
COMMON = 32
BATTLES = 200_000
WINNERS = ("model_a", "model_b", "tie")


def generate(seed: int = 16) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model names, true scores (M,), and (N,) model_a, model_b indices and winner codes (0 a, 1 b, 2 tie)."""
    rng = np.random.default_rng(seed)
    m = COMMON + len(RARE_VOTES)
    names = [f"common-{i:02d}" for i in range(COMMON)] + [f"rare-{v:02d}" for v in RARE_VOTES]
    truth = rng.normal(1000.0, 120.0, m)
    n_rare = sum(RARE_VOTES)
    a = rng.integers(0, COMMON, BATTLES - n_rare)
    b = (a + rng.integers(1, COMMON, a.size)) % COMMON
    ra = np.repeat(np.arange(COMMON, m), RARE_VOTES)
    rb = rng.integers(0, COMMON, n_rare)
    flip = rng.random(n_rare) < 0.5
    a = np.concatenate([a, np.where(flip, rb, ra)])
    b = np.concatenate([b, np.where(flip, ra, rb)])
    p = 1.0 / (1.0 + 10.0 ** ((truth[b] - truth[a]) / 400.0))
    winner = np.where(rng.random(a.size) < p, 0, 1)
    winner[rng.random(a.size) < 0.1] = 2
    return names, truth, a, b, winner


def expand(rows: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    """The battles of a counts file, one tuple (model_a, model_b, winner) per battle."""
    return [(r["model_a"], r["model_b"], r["winner"]) for r in rows for _ in range(int(r["count"]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arena-rank", action="store_true", help="also write arena-rank 0.1.1's sandwich ranking")
    args = parser.parse_args()
    names, truth, a, b, winner = generate()
    cells, counts = np.unique(np.stack([a, b, winner], axis=1), axis=0, return_counts=True)
    with open(HERE / "rare_models_counts.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["model_a", "model_b", "winner", "count"])
        for (i, j, k), c in zip(cells, counts):
            w.writerow([names[i], names[j], WINNERS[k], int(c)])
    with open(HERE / "rare_models_truth.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["model", "score"])
        for name, s in zip(names, truth):
            w.writerow([name, f"{s:.4f}"])
    if not args.arena_rank:
        return
    import pandas as pd
    from arena_rank.models.bradley_terry import BradleyTerry
    from arena_rank.utils.data_utils import PairDataset

    with open(HERE / "rare_models_counts.csv", newline="") as fh:
        battles = pd.DataFrame(expand(list(csv.DictReader(fh))), columns=["model_a", "model_b", "winner"])
    dataset = PairDataset.from_pandas(battles)
    model = BradleyTerry(n_competitors=len(dataset.competitors))
    result = model.compute_ratings_and_cis(dataset, significance_level=0.05, ci_method="sandwich")
    votes = pd.concat([battles.model_a, battles.model_b]).value_counts()
    order = np.argsort(-np.asarray(result["ratings"]), kind="stable")
    with open(HERE / "rare_models_arena_rank.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["model", "score", "lower", "upper", "votes"])
        for i in order:
            name = result["competitors"][i]
            w.writerow([name, f"{float(result['ratings'][i]):.4f}", f"{float(result['rating_lower'][i]):.4f}",
                        f"{float(result['rating_upper'][i]):.4f}", int(votes[name])])


if __name__ == "__main__":
    main()
