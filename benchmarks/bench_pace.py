"""Benchmark of equal pace: can the frames a voter's browser receives before the vote tell which side is faster?

Each simulated battle pits two models of identical answer length whose speeds differ 3x (the faster side is A in
half the battles and B in the other; a base speed and first-token delays drawn per battle). Their jobs' batches go, as the channel layer
would deliver them, into the real battle socket (``arena.consumers.BattleConsumer``: its battle_token and
battle_turn handlers and, when paced, its ticker), and every frame it sends is recorded with its time and size.
The batches follow ``arena.generation.TokenBatcher``'s rule (every 80 ms). All battles run at once on one event
loop, in real time.

Classifiers see only what the browser received before the vote: per side, the times of its first and last token
frames and of its turn frame, its frame count and bytes, its bytes per second, and which side's frame came first
at each moment. They guess the faster side:

- ``ends first``: the side whose turn frame came first (A on a tie);
- ``more bytes early``: the side with more bytes in the first half of the battle's frames (A on a tie);
- ``logistic``: logistic regression on the differences of the per-side features (5-fold cross-validated).

Reported for raw streaming (ARENA_PACE=0) and equal pace (the default).

    python benchmarks/bench_pace.py
    python benchmarks/bench_pace.py --battles 50 --out -
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import sys
import time
from pathlib import Path

from machine import machine  # benchmarks/machine.py, beside this script

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret")
os.environ.setdefault("DEBUG", "0")

ANSWER_CHARS = 600
BATCH_SECONDS = 0.08  # TokenBatcher's interval


class Recorder:
    """The browser's side of one socket: every frame with its arrival time and size."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, int, dict]] = []
        self.t0 = time.monotonic()

    async def send_json(self, content: dict, close: bool = False) -> None:
        self.frames.append((time.monotonic() - self.t0, len(json.dumps(content)), content))


async def model_job(consumer, side: str, speed: float, first_token: float, text: str) -> None:
    """A generation job at ``speed`` characters a second, publishing a batch every BATCH_SECONDS."""
    await asyncio.sleep(first_token)
    sent, started = 0, time.monotonic()
    while sent < len(text):
        await asyncio.sleep(BATCH_SECONDS)
        upto = min(len(text), int((time.monotonic() - started) * speed))
        if upto > sent:
            await consumer.battle_token({"type": "battle.token", "side": side, "turn": 0, "attempt": 0,
                                         "text": text[sent:upto], "offset": sent})
            sent = upto
    await consumer.battle_turn({"type": "battle.turn", "side": side, "turn": 0, "attempt": 0, "status": "done",
                                "text": text, "html": "", "error": "", "cut": False, "stopped": False})


async def battle(rng: random.Random, paced: bool, fast_side: str) -> tuple[list[tuple[float, int, dict]], str]:
    from arena.consumers import BattleConsumer

    consumer = BattleConsumer()
    recorder = Recorder()
    consumer.send_json = recorder.send_json
    consumer._pace_for("anonymous")
    assert (consumer.pacer is not None) == paced
    state = {"battle": "b", "mode": "anonymous", "voted": None, "models": None, "sides": {
        label: [{"turn": 0, "attempt": 0, "prompt": "p", "status": "queued", "text": "", "html": "", "error": "",
                 "cut": False, "stopped": False}] for label in "AB"}}
    await recorder.send_json({"type": "started", **consumer._paced_state(state)})
    slow = rng.uniform(120, 300)  # characters a second; the faster side writes 3x as fast
    speeds = {s: slow * 3 if s == fast_side else slow for s in "AB"}
    texts = {s: "".join(rng.choice("abcdefgh ") for _ in range(ANSWER_CHARS)) for s in "AB"}
    await asyncio.gather(*(model_job(consumer, s, speeds[s], rng.uniform(0.05, 0.4), texts[s]) for s in "AB"))
    consumer._pace_stop()
    return recorder.frames, fast_side


def features(frames: list[tuple[float, int, dict]], side: str) -> list[float]:
    tokens = [(t, n) for t, n, f in frames if f["type"] == "token" and f["side"] == side]
    ended = next(t for t, n, f in frames if f["type"] == "turn" and f["side"] == side)
    first = tokens[0][0] if tokens else ended
    last = tokens[-1][0] if tokens else ended
    size = sum(n for _, n in tokens)
    half = frames[len(frames) // 2][0] if frames else 0
    early = sum(n for t, n in tokens if t <= half)
    return [first, last, ended, len(tokens), size, size / max(last - first, 1e-3), early]


def order_first(frames: list[tuple[float, int, dict]], kind: str) -> str:
    return next((f["side"] for _, _, f in frames if f["type"] == kind), "A")


def logistic_accuracy(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of an L2 logistic regression (standardised features, gradient descent).
    x: (n, d) float, y: (n,) 0/1."""
    order = np.random.default_rng(seed).permutation(len(y))
    correct = 0
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mean, std = x[train].mean(0), x[train].std(0) + 1e-9
        xt, xs = (x[train] - mean) / std, (x[test] - mean) / std
        w, b = np.zeros(x.shape[1]), 0.0
        for _ in range(2000):
            p = 1 / (1 + np.exp(-(xt @ w + b)))
            w -= 0.1 * (xt.T @ (p - y[train]) / len(train) + 0.01 * w)
            b -= 0.1 * float(np.mean(p - y[train]))
        correct += int(np.sum(((xs @ w + b) > 0) == (y[test] == 1)))
    return correct / len(y)


def run(battles: int, paced: bool, seed: int) -> dict:
    os.environ["ARENA_PACE"] = "1" if paced else "0"
    from django.conf import settings

    settings.ARENA_PACE = paced
    rng = random.Random(seed)

    async def all_battles():
        return await asyncio.gather(*(battle(random.Random(rng.random()), paced, "AB"[i % 2]) for i in range(battles)))

    started = time.monotonic()
    results = asyncio.run(all_battles())
    seconds = time.monotonic() - started
    x = np.array([np.subtract(features(f, "A"), features(f, "B")) for f, _ in results])
    y = np.array([1.0 if fast == "A" else 0.0 for _, fast in results])
    guess_end = [order_first(f, "turn") for f, _ in results]
    early = [("A" if np.subtract(features(f, "A"), features(f, "B"))[6] >= 0 else "B") for f, _ in results]
    truth = [fast for _, fast in results]
    return {
        "ends first": float(np.mean([g == t for g, t in zip(guess_end, truth)])),
        "more bytes early": float(np.mean([g == t for g, t in zip(early, truth)])),
        "logistic": logistic_accuracy(x, y),
        "fast is A": float(np.mean([t == "A" for t in truth])),
        "frames": float(np.mean([len(f) for f, _ in results])),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--battles", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "pace.md"))
    args = parser.parse_args()
    import django

    django.setup()
    from django.conf import settings

    rows = {"raw streaming": run(args.battles, False, args.seed), "equal pace": run(args.battles, True, args.seed)}
    lines = [
        "# Equal pace: telling the faster side from the frames",
        "",
        f"{datetime.date.today().isoformat()}, {machine()}. `python benchmarks/bench_pace.py --battles {args.battles}`.",
        "",
        f"{args.battles} simulated anonymous battles per mode: identical answer lengths ({ANSWER_CHARS} characters), one "
        "side 3x as fast as the other (A in half the battles, B in the other half; a base speed of 120-300 characters a second and first-token "
        "delays of 0.05-0.4 s drawn per battle). The batches go through the battle socket's own handlers; each "
        "classifier sees every frame the browser receives before the vote (time, size, side, order) and guesses "
        f"the faster side. Pace: {settings.ARENA_PACE_CHARS_PER_SECOND} characters a second at most, a tick every "
        f"{settings.ARENA_PACE_TICK_MS} ms. 50% is a coin toss; a guess that always says A scores the share of "
        "battles whose faster side is A (last column), which is what the two simple rules fall back to at equal "
        "pace, where both ends and both sides' frames of a tick always come A first.",
        "",
        "| mode | ends first | more bytes early | logistic (5-fold) | frames a battle | wall s | faster side is A |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['ends first']:.1%} | {r['more bytes early']:.1%} | {r['logistic']:.1%} | "
                     f"{r['frames']:.0f} | {r['seconds']:.1f} | {r['fast is A']:.1%} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out != "-":
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
