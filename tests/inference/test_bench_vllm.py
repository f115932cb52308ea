"""The benchmark's --random-weights mode on the vLLM engine, run on the CPU so it is ready for a CUDA host."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("vllm")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


@pytest.mark.timeout(600)
def test_the_random_weights_mode_measures_a_vllm_server(settings, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_inference

    # Under var/, not pytest's temporary folder: another test session on the machine may prune that one while
    # the server still reads from it.
    work = ROOT / "var" / "test-vllm" / "bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tmp_path = work

    settings.ARENA_VLLM_ENFORCE_EAGER = True
    settings.ARENA_VLLM_CPU_KV_CACHE_GIB = 1
    settings.ARENA_VLLM_MAX_MODEL_LEN = 256
    settings.ARENA_VLLM_DIR = tmp_path / "vllm"
    settings.ARENA_ENGINE_MAX_BATCH = 2
    # Two layers of SmolLM2's architecture: the same code path, a smaller model to start.
    path = bench_inference.random_checkpoint("smollm2-135m-instruct", tmp_path, num_hidden_layers=2)

    figures = bench_inference.worker_vllm("smollm2-135m-instruct", str(path), "plain", 4, 1, [1, 2])

    assert figures["engine"] == "vllm" and [row["concurrency"] for row in figures["levels"]] == [1, 2]
    assert all(row["aggregate_tok_s"] > 0 and row["ttft_p50_s"] > 0 for row in figures["levels"])
    assert figures["loaded_rss_mb"] > 0
    from inference.vllm_engine import servers

    assert servers() == []  # the server it started is stopped again
