"""The leaderboard snapshot at many stored votes: ``manage.py compute_leaderboard --force`` timed, with its peak
memory, on a PostgreSQL cluster kept between runs.

Building ten million votes takes a quarter of an hour, so the cluster lives in ``--workdir`` and is reused: each
run starts it, adds votes (``bench_load.bulk_votes``: per vote a Battle, two Sides, two done Turns, the Vote and
its fact row, by COPY, among ``--models`` models with known Bradley-Terry strengths) until it holds ``--votes``,
times the snapshot ``--repeat`` times, checks the fitted scores against the true strengths and stops the
cluster again. ``--fresh`` starts from an empty cluster.

    .venv/bin/python benchmarks/bench_snapshot.py --votes 1000000
    .venv/bin/python benchmarks/bench_snapshot.py --votes 10000000 --repeat 2

Appends a section to benchmarks/results/snapshot.md (``--out``; ``--out -`` for stdout only).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from machine import machine  # benchmarks/machine.py, beside this script

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench_load import bulk_votes, run_checked, timed_command  # noqa: E402  (beside this script)
from devstack import PostgresCluster, _postgres_bin, free_port  # noqa: E402


def cluster_up(workdir: Path, fresh: bool) -> PostgresCluster:
    """The benchmark's cluster under ``workdir``, started; made (with database ``arena``) when absent."""
    workdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # the postgres account must be able to walk down to its data directory
        for parent in [workdir, *workdir.parents]:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
    cluster = PostgresCluster(workdir / "pg", free_port(), _postgres_bin())
    if fresh or not (cluster.data_dir / "PG_VERSION").exists():
        shutil.rmtree(workdir / "pg", ignore_errors=True)
        (workdir / "state.json").unlink(missing_ok=True)
        cluster.init()
        cluster.start()
        cluster.create_database("arena")
    else:
        cluster.start()
    return cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", type=int, default=1_000_000, help="stored votes to snapshot at")
    parser.add_argument("--models", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1, help="snapshots timed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="start from an empty cluster")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one snapshot may take")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arena-bench-snapshot"))
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "snapshot.md"))
    parser.add_argument("--note", default="", help="a line saying what this run measured")
    args = parser.parse_args()

    logs = args.workdir / "logs"
    cluster = cluster_up(args.workdir, args.fresh)
    logs.mkdir(parents=True, exist_ok=True)
    try:
        env = {**os.environ, "DATABASE_URL": cluster.url, "SECRET_KEY": "bench-only-secret", "DEBUG": "0",
               "ARENA_VAR_DIR": str(args.workdir / "var"), "LOG_LEVEL": "WARNING",
               "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1"}
        env.pop("REDIS_URL", None)
        os.environ.update(env)
        import django

        django.setup()
        from arena.models import Vote
        from models_hub.models import ModelEntry

        python = sys.executable
        run_checked([python, "manage.py", "migrate", "--noinput"], env, logs / "migrate.log")
        truth = np.random.default_rng(args.seed).normal(1000.0, 150.0, args.models)
        models = []
        for i in range(args.models):
            entry, _ = ModelEntry.objects.get_or_create(slug=f"bulk-{i:02d}", defaults=dict(
                display_name=f"Bulk {i:02d}", provider="openai", pool="bulk", base_url="http://127.0.0.1:9/v1",
                remote_model="none", sampling_weight=0.0))
            models.append(entry)
        stored = Vote.objects.count()
        built = None
        if stored < args.votes:
            print(f"{stored:,} votes stored; adding {args.votes - stored:,}", flush=True)
            built = bulk_votes(cluster.url, count=args.votes - stored, model_ids=[e.pk for e in models], truth=truth,
                               seed=args.seed + stored, skip_key_checks=True)
            stored = Vote.objects.count()
        print(f"{stored:,} votes stored; timing the snapshot", flush=True)
        runs = []
        for k in range(args.repeat):
            run = timed_command([python, "manage.py", "compute_leaderboard", "--force", "--quiet"], env,
                                logs / "snapshot.log", args.timeout)
            print(f"snapshot {k + 1}: {run}", flush=True)
            runs.append(run)
            if run["exit"] != 0:
                print((logs / "snapshot.log").read_text()[-4000:], file=sys.stderr)
                return 1
        from leaderboard.snapshots import leaderboard_latest

        latest = leaderboard_latest()
        fitted = {r["model_id"]: r["score"] for r in latest.payload["categories"]["overall"]["models"]}
        got = np.array([fitted[e.pk] for e in models if e.pk in fitted])
        true = np.array([t for e, t in zip(models, truth) if e.pk in fitted])
        rmse = float(np.sqrt(np.mean(((got - got.mean()) - (true - true.mean())) ** 2))) if got.size else float("nan")
    finally:
        cluster.stop()

    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                           capture_output=True, text=True).stdout.strip()
    lines = [
        f"\n## {datetime.date.today().isoformat()}: {stored:,} votes, commit {revision}{' (with changes)' if dirty else ''}",
        "",
        f"- Machine: {machine()}, no GPU",
        f"- Command: `python benchmarks/bench_snapshot.py --votes {args.votes} --repeat {args.repeat}`",
    ]
    if args.note:
        lines.append(f"- {args.note}")
    if built is not None:
        lines.append(f"- Votes built: {built['insert_seconds']:.0f} s by COPY")
    lines += [f"- Models fitted: {len(fitted)} of {args.models}; RMSE of the centred scores against the truth "
              f"{rmse:.1f} points", "", "| run | wall | peak RSS |", "| ---: | ---: | ---: |"]
    lines += [f"| {k + 1} | {r['seconds']:.1f} s | {r['peak_rss_mib']:.0f} MiB |" for k, r in enumerate(runs)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out != "-":
        out = Path(args.out)
        if not out.exists():
            out.write_text("# Leaderboard snapshot at many stored votes\n\n`compute_leaderboard --force --quiet` "
                           "timed by benchmarks/bench_snapshot.py (wall clock and peak resident memory of the "
                           "command's process), nothing else running.\n")
        with out.open("a") as f:
            f.write(text)
    (args.workdir / "last.json").write_text(json.dumps({"votes": stored, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
