"""Inference figures for the default models: load, memory, and tokens per second through the batching engine at
several numbers of concurrent turns, with time to first token.

    python benchmarks/bench_inference.py                    # the built models under var/models, on this machine
    python benchmarks/bench_inference.py --random-weights   # GPU hosts: random-weight models from each config

Each model runs in a fresh subprocess (so peak RSS is its own): loaded through the project's model cache (which
warms its engine up), then for each concurrency C, C threads each ask for exactly --new-tokens greedy tokens of
the same prompt through `inference.local.answer` at the same moment, as C worker threads of one process would.
`--random-weights` needs no weight files: it builds each default model from its configuration (written below)
with random weights and a word-level tokenizer of the same vocabulary size, saves it to a temporary folder and
loads it from there through the same path (bf16 on CUDA, fp32 on the CPU). `--library` also measures transformers'
own `ContinuousBatchingManager` on the same workload, for the engine's choice. The figures go to
benchmarks/results/inference.md.
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
import tempfile
import threading
import time
from pathlib import Path

from machine import machine  # benchmarks/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."

# The default models' configurations as built (config.json less bookkeeping), for --random-weights.
CONFIGS: dict[str, dict] = {
    "smollm2-135m-instruct": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "unk_token_id": 0, "head_dim": 64, "hidden_act": "silu",
        "hidden_size": 576, "initializer_range": 0.02, "intermediate_size": 1536, "max_position_embeddings": 8192,
        "mlp_bias": False, "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
        "tie_word_embeddings": True, "vocab_size": 49152,
    },
    "gemma-3-270m": {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "_sliding_window_pattern": 6,
        "attention_bias": False, "attention_dropout": 0.0, "attn_logit_softcapping": None, "final_logit_softcapping": None,
        "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "unk_token_id": 3, "head_dim": 256,
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 640, "initializer_range": 0.02, "intermediate_size": 2048,
        "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 3, "max_position_embeddings": 32768,
        "num_attention_heads": 4, "num_hidden_layers": 18, "num_key_value_heads": 1, "query_pre_attn_scalar": 256,
        "rms_norm_eps": 1e-06,
        "rope_parameters": {
            "full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
            "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
        },
        "sliding_window": 512, "tie_word_embeddings": True, "use_bidirectional_attention": False, "vocab_size": 262144,
    },
    "inhouse-moe-4x135m": {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "pad_token_id": 2, "head_dim": 64, "hidden_act": "silu", "hidden_size": 576,
        "initializer_range": 0.02, "intermediate_size": 1536, "max_position_embeddings": 8192, "num_experts_per_tok": 2,
        "num_hidden_layers": 30, "num_key_value_heads": 3, "num_attention_heads": 9, "num_local_experts": 4,
        "output_router_logits": False, "rms_norm_eps": 1e-05, "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
        "router_aux_loss_coef": 0.01, "router_jitter_noise": 0.0, "sliding_window": None, "tie_word_embeddings": True,
        "vocab_size": 49152,
    },
}  # fmt: skip


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


def random_checkpoint(slug: str, folder: Path, **overrides) -> Path:
    """A checkpoint of `slug`'s architecture with random weights and a word-level tokenizer, saved to `folder`
    (`overrides` change configuration fields: a test makes a two-layer copy)."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    from inference.local import device_and_dtype

    config_fields = {**CONFIGS[slug], **overrides}
    config = AutoConfig.for_model(config_fields.pop("model_type"), **config_fields)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=device_and_dtype()[1])
    path = folder / slug
    model.save_pretrained(path)
    vocab = {f"w{i}": i for i in range(config.vocab_size)}
    specials = {"unk_token": f"w{config_fields.get('unk_token_id', 0)}", "eos_token": f"w{config.eos_token_id}",
                "bos_token": f"w{config.bos_token_id}", "pad_token": f"w{config.pad_token_id}"}  # fmt: skip
    backend = Tokenizer(WordLevel(vocab, unk_token=specials["unk_token"]))
    backend.pre_tokenizer = WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, **specials).save_pretrained(path)
    return path


def _at_once(count: int, work) -> tuple[list, float]:
    start = threading.Barrier(count + 1)
    results: list = [None] * count

    def run(i: int) -> None:
        start.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - began


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (a vLLM server and its engine core)."""
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def _levels(levels: list[int], runs: int, one, slug: str, new_tokens: int) -> list[dict]:
    from tqdm import tqdm

    rows = []
    for level in tqdm(levels, desc=f"{slug} concurrency", file=sys.stderr):
        measured = []
        for _ in range(runs):
            results, wall = _at_once(level, one)
            assert [r.output_tokens for r in results] == [new_tokens] * level, [r.output_tokens for r in results]
            measured.append({"aggregate": level * new_tokens / wall, "ttfts": [r.time_to_first_token for r in results]})
        ttfts = [t for m in measured for t in m["ttfts"]]
        rows.append({
            "concurrency": level,
            "aggregate_tok_s": statistics.median(m["aggregate"] for m in measured),
            "ttft_p50_s": _percentile(ttfts, 0.5),
            "ttft_p99_s": _percentile(ttfts, 0.99),
        })  # fmt: skip
    return rows


def worker_vllm(slug: str, path: str, prompt_format: str, new_tokens: int, runs: int, levels: list[int]) -> dict:
    """Measure one model on a vLLM server this process starts (ARENA_ENGINE=vllm's path); figures as a dict."""
    _django()
    from django.conf import settings

    from inference.local import prompt_token_ids
    from inference.vllm_engine import answer_vllm, server_get, servers_close
    from models_hub.models import ModelEntry

    temporary = None
    if path == "random":
        temporary = tempfile.TemporaryDirectory(prefix="bench-random-")
        path = str(random_checkpoint(slug, Path(temporary.name)))
    entry = ModelEntry(slug=slug, provider="transformers", checkpoint_path=path, prompt_format=prompt_format)
    started = time.perf_counter()
    server = server_get(path)  # started and warmed, as a worker does before its pool says ready
    load_s = time.perf_counter() - started
    try:
        ids = prompt_token_ids(server.tokenizer, server.encode_lock, entry, [{"role": "user", "content": PROMPT}])[0]

        def one(_: int):
            return answer_vllm(server, ids, (), {"temperature": 0.0}, max_new_tokens=new_tokens, min_new_tokens=new_tokens)

        loaded_rss = _tree_rss_mb(server.process.pid)
        rows = _levels(levels, runs, one, slug, new_tokens)
        import torch

        return {
            "slug": slug,
            "engine": "vllm",
            "parameters": "",
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "dtype": settings.ARENA_VLLM_DTYPE,
            "torch_threads": len(os.sched_getaffinity(0)),
            "load_s": load_s,
            "baseline_rss_mb": 0.0,
            "loaded_rss_mb": loaded_rss,
            "peak_rss_mb": _tree_rss_mb(server.process.pid),
            "peak_batch": None,
            "levels": rows,
        }
    finally:
        servers_close()


def worker(slug: str, path: str, prompt_format: str, new_tokens: int, runs: int, levels: list[int], library: bool) -> dict:
    """Measure one model in this process; returns the figures as a dict."""
    _django()
    import torch

    from inference.engine import Sampling
    from inference.local import answer, model_get, prompt_ids
    from models_hub.builders import parameter_counts
    from models_hub.models import ModelEntry

    baseline_rss = _rss_mb()
    temporary = None
    if path == "random":
        temporary = tempfile.TemporaryDirectory(prefix="bench-random-")
        path = str(random_checkpoint(slug, Path(temporary.name)))
    entry = ModelEntry(slug=slug, provider="transformers", checkpoint_path=path, prompt_format=prompt_format)
    started = time.perf_counter()
    loaded = model_get(path)
    load_s = time.perf_counter() - started
    loaded_rss = _rss_mb()
    counts = parameter_counts(loaded.model)
    ids = prompt_ids(loaded, entry, [{"role": "user", "content": PROMPT}])[0][0].tolist()

    def one(_: int):
        return answer(loaded, ids, (), Sampling(), max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    rows = _levels(levels, runs, one, slug, new_tokens)
    figures = {
        "slug": slug,
        "engine": "transformers",
        "parameters": counts.describe(),
        "device": str(loaded.device),
        "dtype": str(next(loaded.model.parameters()).dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "load_s": load_s,
        "baseline_rss_mb": baseline_rss,
        "loaded_rss_mb": loaded_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_batch": loaded.engine.peak_batch,
        "levels": rows,
    }
    if library:
        figures["library"] = library_levels(loaded.model, ids, new_tokens, runs, levels)
    return figures


def library_levels(model, ids: list[int], new_tokens: int, runs: int, levels: list[int]) -> list[dict]:
    """The same workload through transformers' ContinuousBatchingManager (streaming, per-request greedy via
    top-k 1, which is how it would have to serve mixed sampling settings)."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=True, temperature=0.7, top_k=50, top_p=0.9, eos_token_id=-1)
    manager = model.init_continuous_batching(
        generation_config=config,
        continuous_batching_config=ContinuousBatchingConfig(per_request_processors=True, max_batch_tokens=1024),
    )
    manager.start()
    rows = []
    try:
        manager.add_request(ids, max_new_tokens=4, streaming=True, temperature=1.0, top_k=1, top_p=1.0)
        while not manager.get_result(timeout=600).is_finished():  # warm-up
            pass
        for level in levels:
            measured = []
            for _ in range(runs):
                began = time.perf_counter()
                for _ in range(level):
                    manager.add_request(ids, max_new_tokens=new_tokens, streaming=True, temperature=1.0, top_k=1, top_p=1.0)
                first: dict[str, float] = {}
                finished = 0
                while finished < level:
                    result = manager.get_result(timeout=600)
                    first.setdefault(result.request_id, time.perf_counter() - began)
                    finished += result.is_finished()
                wall = time.perf_counter() - began
                measured.append({"aggregate": level * new_tokens / wall, "ttfts": list(first.values())})
            ttfts = [t for m in measured for t in m["ttfts"]]
            rows.append({
                "concurrency": level,
                "aggregate_tok_s": statistics.median(m["aggregate"] for m in measured),
                "ttft_p50_s": _percentile(ttfts, 0.5),
                "ttft_p99_s": _percentile(ttfts, 0.99),
            })  # fmt: skip
    finally:
        manager.stop(block=True, timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--concurrency", default=None, help="comma-separated levels (default 1,4 on a CPU, 1,8,64,256 on CUDA)")
    parser.add_argument("--models", default=",".join(CONFIGS), help="comma-separated slugs")
    parser.add_argument("--random-weights", action="store_true", help="random-weight models built from each config")
    parser.add_argument("--library", default="", help="slugs also measured through ContinuousBatchingManager")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "inference.md")
    parser.add_argument("--engine", default="transformers", help="comma-separated: transformers, vllm (both in one run)")
    parser.add_argument("--worker", nargs=3, metavar=("SLUG", "PATH", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    _django() if not args.worker else None
    import torch

    levels = [int(c) for c in (args.concurrency or ("1,8,64,256" if torch.cuda.is_available() else "1,4")).split(",")]
    if args.worker:
        slug = args.worker[0]
        if args.engine == "vllm":
            figures = worker_vllm(*args.worker, args.new_tokens, args.runs, levels)
        else:
            figures = worker(*args.worker, args.new_tokens, args.runs, levels, slug in args.library.split(","))
        print(json.dumps(figures))
        return

    import transformers
    from django.conf import settings

    from models_hub.builders import DEFAULT_MODELS, INHOUSE_MOE_SLUG, SMOLLM2_SLUG

    def measure(slug: str, path: str, prompt_format: str, engine: str) -> dict:
        env = {**os.environ, "ARENA_ENGINE_MAX_BATCH": str(max(levels))}
        command = [sys.executable, __file__, "--new-tokens", str(args.new_tokens), "--runs", str(args.runs),
                   "--engine", engine,
                   "--concurrency", ",".join(map(str, levels)), "--library", args.library,
                   "--worker", slug, path, prompt_format]  # fmt: skip
        out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=env)
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(figures, indent=2), flush=True)
        return figures

    wanted = args.models.split(",")
    load_before = os.getloadavg()
    rows = []
    for default in DEFAULT_MODELS:
        if default.slug not in wanted:
            continue
        for engine in args.engine.split(","):
            print(f"measuring {default.slug} on {engine} ...", flush=True)
            if args.random_weights:
                rows.append(measure(default.slug, "random", "plain", engine))
            else:
                path = str(default.build(Path(settings.ARENA_MODELS_DIR), print).path)
                rows.append(measure(default.slug, path, default.facts["prompt_format"], engine))
    load_after = os.getloadavg()
    lines = report(args, rows, levels, load_before, load_after, torch.__version__, transformers.__version__)
    by_slug = {row["slug"]: row for row in rows if row["engine"] == "transformers"}
    if SMOLLM2_SLUG in by_slug and INHOUSE_MOE_SLUG in by_slug:
        dense, moe = by_slug[SMOLLM2_SLUG]["levels"], by_slug[INHOUSE_MOE_SLUG]["levels"]
        ratios = ", ".join(f"{m['aggregate_tok_s'] / d['aggregate_tok_s']:.2f}x at {d['concurrency']}" for d, m in zip(dense, moe))
        lines += ["", f"The in-house MoE against the dense SmolLM2, aggregate tokens per second: {ratios}.", ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


def report(args, rows: list[dict], levels: list[int], load_before, load_after, torch_version: str, tf_version: str) -> list[str]:
    command = "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:])
    device = f"{rows[0]['device']}, {rows[0]['dtype']}, {rows[0]['torch_threads']} torch threads" if rows else "none"
    lines = [
        "# Inference figures",
        "",
        f"- Machine: {machine()}",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Command: `{command.strip()}`",
        f"- Software: Python {platform.python_version()}, torch {torch_version}, transformers {tf_version}",
        f"- Load average (1, 5, 15 min) before / after: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
        f"/ {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} (other work on a shared machine slows "
        "every figure alike; compare rows of one run)",
        f"- Device: {device}; weights: {'random, built from each configuration' if args.random_weights else 'the built default models'}",
        f"- Workload: greedy, exactly {args.new_tokens} new tokens per turn, the prompt \"{PROMPT}\" "
        f"({'a word-level tokenizer' if args.random_weights else 'chat template, or the plain transcript for Gemma'}); "
        f"C turns started at the same moment on C threads of one process; median of {args.runs} runs after the "
        "warm-up the engine does when its model loads.",
        "- Aggregate: all turns' tokens over the wall time from the common start to the last token. First token: "
        "from each turn's call to its first token, p50 / p99 over every turn of every run.",
        "- RSS: resident memory of the measuring process; the baseline is Python, Django and torch before the load.",
        "",
        "- Engines: transformers is the project's engine in the measuring process (`inference.local.answer`); vllm is "
        "the worker's vLLM server for the model (`inference.vllm_engine.answer_vllm`: tokenised here, streamed over "
        "loopback, text through the same TextStream). Its load is the server's start and warm-up; its RSS is the "
        "server's processes (KV cache of ARENA_VLLM_CPU_KV_CACHE_GIB included), not the measuring process.",
        "",
        "| model | engine | parameters | load (s) | RSS baseline / loaded / peak (MB) | concurrent turns | aggregate tok/s "
        "| per turn tok/s | first token p50 / p99 (s) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        for i, level in enumerate(row["levels"]):
            baseline = f"{row['baseline_rss_mb']:.0f}" if row["engine"] == "transformers" else "-"
            head = (f"| {row['slug']} | {row['engine']} | {row['parameters']} | {row['load_s']:.1f} | {baseline} / "
                    f"{row['loaded_rss_mb']:.0f} / {row['peak_rss_mb']:.0f} ") if i == 0 else "| | | | | "  # fmt: skip
            lines.append(
                f"{head}| {level['concurrency']} | {level['aggregate_tok_s']:.1f} "
                f"| {level['aggregate_tok_s'] / level['concurrency']:.1f} "
                f"| {level['ttft_p50_s']:.2f} / {level['ttft_p99_s']:.2f} |"
            )
    lines.append("")
    for row in rows:
        one = row["levels"][0]
        if one["concurrency"] == 1 and len(row["levels"]) > 1 and row["engine"] == "transformers":
            top = row["levels"][-1]
            lines.append(
                f"- {row['slug']}: {top['concurrency']} concurrent turns give {top['aggregate_tok_s'] / one['aggregate_tok_s']:.2f}x "
                f"the tokens per second of one at a time; the engine decoded up to {row['peak_batch']} turns in one step."
            )
    pairs = {}
    for row in rows:
        pairs.setdefault(row["slug"], {})[row["engine"]] = row
    for slug, engines in pairs.items():
        if "vllm" in engines and "transformers" in engines:
            ratios = ", ".join(
                f"{v['aggregate_tok_s'] / t['aggregate_tok_s']:.2f}x at {t['concurrency']}"
                for v, t in zip(engines["vllm"]["levels"], engines["transformers"]["levels"])
            )
            lines.append(f"- {slug}: vLLM's aggregate tokens per second against the project's engine: {ratios}.")
    if rows and rows[0]["device"] == "cpu":
        lines += [
            "",
            "No GPU figures here: this run had no GPU. On a CUDA host, `python benchmarks/bench_inference.py "
            "--random-weights` measures random-weight copies of the three default models (bf16, concurrency 1, 8, 64 "
            "and 256 by default) through the same engine; that mode is tested on the CPU only.",
        ]
    library = [row for row in rows if row.get("library")]
    if library:
        lines += [
            "",
            "The same workload through transformers' own `ContinuousBatchingManager` (the library's continuous batching, "
            "streaming, greedy per request as top-k 1), in the same process after the engine's runs:",
            "",
            "| model | concurrent turns | aggregate tok/s | first token p50 / p99 (s) | the engine's aggregate, same run |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for row in library:
            for level, ours in zip(row["library"], row["levels"]):
                lines.append(
                    f"| {row['slug']} | {level['concurrency']} | {level['aggregate_tok_s']:.1f} "
                    f"| {level['ttft_p50_s']:.2f} / {level['ttft_p99_s']:.2f} | {ours['aggregate_tok_s']:.1f} |"
                )
    return lines


if __name__ == "__main__":
    main()
