"""Inference figures for the default models on this machine: load time, peak memory, tokens per second.

    python benchmarks/bench_inference.py [--new-tokens 64] [--runs 3]

Each model runs in a fresh subprocess (so peak RSS is its own): load from the converted checkpoint through the
model cache, one warm-up answer, then single-stream and 4-concurrent-thread generation of exactly --new-tokens
greedy tokens for a fixed prompt. The figures go to benchmarks/results/inference.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from machine import machine  # benchmarks/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
CONCURRENCY = 4


def _django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(slug: str, path: str, prompt_format: str, new_tokens: int, runs: int) -> dict:
    """Measure one model in this process; returns the figures as a dict."""
    _django()
    import torch

    from inference.local import generate_local, model_get
    from models_hub.builders import parameter_counts
    from models_hub.models import ModelEntry

    entry = ModelEntry(
        slug=slug, provider="transformers", checkpoint_path=path, prompt_format=prompt_format, temperature=0.0
    )
    messages = [{"role": "user", "content": PROMPT}]
    baseline_rss = _rss_mb()
    started = time.perf_counter()
    loaded = model_get(path)
    load_s = time.perf_counter() - started
    loaded_rss = _rss_mb()
    counts = parameter_counts(loaded.model)
    generate_local(entry, messages, fixed_new_tokens=8)  # warm-up: first-call allocations and page faults

    single = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = generate_local(entry, messages, fixed_new_tokens=new_tokens)
        wall = time.perf_counter() - t0
        assert result.output_tokens == new_tokens, result.output_tokens
        single.append({"tok_s": new_tokens / wall, "ttft": result.time_to_first_token})

    concurrent = []
    for _ in range(runs):
        results: list = []
        threads = [
            threading.Thread(target=lambda: results.append(generate_local(entry, messages, fixed_new_tokens=new_tokens)))
            for _ in range(CONCURRENCY)
        ]
        t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - t0
        assert [r.output_tokens for r in results] == [new_tokens] * CONCURRENCY
        concurrent.append({"aggregate_tok_s": CONCURRENCY * new_tokens / wall, "per_stream_tok_s": new_tokens / wall})

    return {
        "slug": slug,
        "parameters": counts.describe(),
        "device": str(loaded.device),
        "dtype": str(next(loaded.model.parameters()).dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "load_s": load_s,
        "baseline_rss_mb": baseline_rss,
        "loaded_rss_mb": loaded_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "single_tok_s": statistics.median(r["tok_s"] for r in single),
        "single_ttft_s": statistics.median(r["ttft"] for r in single),
        "concurrent_aggregate_tok_s": statistics.median(r["aggregate_tok_s"] for r in concurrent),
        "concurrent_per_stream_tok_s": statistics.median(r["per_stream_tok_s"] for r in concurrent),
    }


def ratio_worker(dense_path: str, moe_path: str, new_tokens: int, runs: int) -> dict:
    """MoE over dense single-stream speed from alternating runs in one process, so that load from other
    processes on the machine hits both sides alike."""
    _django()
    from inference.local import generate_local
    from models_hub.models import ModelEntry

    messages = [{"role": "user", "content": PROMPT}]
    entries = [
        ModelEntry(slug=slug, provider="transformers", checkpoint_path=path, prompt_format="chat", temperature=0.0)
        for slug, path in (("dense", dense_path), ("moe", moe_path))
    ]
    for entry in entries:
        generate_local(entry, messages, fixed_new_tokens=8)
    ratios = []
    for _ in range(runs):
        speeds = []
        for entry in entries:
            t0 = time.perf_counter()
            generate_local(entry, messages, fixed_new_tokens=new_tokens)
            speeds.append(new_tokens / (time.perf_counter() - t0))
        ratios.append(speeds[1] / speeds[0])
    return {"ratios": ratios, "median": statistics.median(ratios)}




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "inference.md")
    parser.add_argument("--worker", nargs=3, metavar=("SLUG", "PATH", "FORMAT"), help=argparse.SUPPRESS)
    parser.add_argument("--ratio-worker", nargs=2, metavar=("DENSE", "MOE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.new_tokens, args.runs)))
        return
    if args.ratio_worker:
        print(json.dumps(ratio_worker(*args.ratio_worker, args.new_tokens, args.runs)))
        return

    _django()
    import torch
    import transformers
    from django.conf import settings

    from models_hub.builders import DEFAULT_MODELS, INHOUSE_MOE_SLUG, SMOLLM2_SLUG

    def measure(*worker_args: str) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--new-tokens", str(args.new_tokens), "--runs", str(args.runs), *worker_args],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(figures, indent=2), flush=True)
        return figures

    models_dir = Path(settings.ARENA_MODELS_DIR)
    load_before = os.getloadavg()
    paths = {}
    rows = []
    for default in DEFAULT_MODELS:
        paths[default.slug] = str(default.build(models_dir, print).path)
        print(f"measuring {default.slug} ...", flush=True)
        rows.append(measure("--worker", default.slug, paths[default.slug], default.facts["prompt_format"]))
    print("measuring the MoE/dense ratio ...", flush=True)
    ratio = measure("--ratio-worker", paths[SMOLLM2_SLUG], paths[INHOUSE_MOE_SLUG])
    load_after = os.getloadavg()

    by_slug = {row["slug"]: row for row in rows}
    moe, dense = by_slug[INHOUSE_MOE_SLUG], by_slug[SMOLLM2_SLUG]
    command = "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:])
    lines = [
        "# Inference figures",
        "",
        f"- Machine: {machine()}",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Command: `{command.strip()}`",
        f"- Software: Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}",
        f"- Load average (1, 5, 15 min) before / after: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
        f"/ {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} (other work on this shared machine slows "
        "every figure; the ratio below is the robust one)",
        f"- Device: {rows[0]['device']}, {rows[0]['dtype']}, {rows[0]['torch_threads']} torch threads",
        f"- Workload: greedy, exactly {args.new_tokens} new tokens, the prompt \"{PROMPT}\" "
        f"(chat template, or the plain transcript for Gemma); median of {args.runs} runs after one warm-up answer.",
        "- Load: from the converted safetensors checkpoint through the model cache, in a fresh process.",
        "- Tokens per second: new tokens over the wall time of the whole call (prompt processing included).",
        f"- Concurrent: {CONCURRENCY} threads sharing one loaded model in one worker process; aggregate = all "
        "threads' tokens over the wall time.",
        "- RSS: resident memory of the measuring process; the baseline is Python, Django and torch before the load.",
        "",
        "| model | parameters | load (s) | RSS baseline / loaded / peak (MB) | tok/s, 1 stream | TTFT (s) "
        f"| tok/s, {CONCURRENCY} threads aggregate | per stream |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['slug']} | {row['parameters']} | {row['load_s']:.1f} "
            f"| {row['baseline_rss_mb']:.0f} / {row['loaded_rss_mb']:.0f} / {row['peak_rss_mb']:.0f} "
            f"| {row['single_tok_s']:.1f} | {row['single_ttft_s']:.2f} "
            f"| {row['concurrent_aggregate_tok_s']:.1f} | {row['concurrent_per_stream_tok_s']:.1f} |"
        )
    ratios = ", ".join(f"{r:.2f}" for r in ratio["ratios"])
    lines += [
        "",
        f"The in-house MoE runs at **{ratio['median']:.2f}x** the dense SmolLM2's single-stream tokens per second: "
        f"the median of {args.runs} back-to-back pairs in one process ({ratios}), both models loaded, this run. "
        f"From the table (separate processes, minutes apart): {moe['single_tok_s'] / dense['single_tok_s']:.2f}x "
        f"single-stream, {moe['concurrent_aggregate_tok_s'] / dense['concurrent_aggregate_tok_s']:.2f}x the "
        f"{CONCURRENCY}-thread aggregate.",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
