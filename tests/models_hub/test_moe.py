"""The in-house MoE against the dense model it was upcycled from, both real checkpoints on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from models_hub.builders import INHOUSE_MOE_SLUG, SMOLLM2_SLUG, marker_read, parameter_counts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def moe(built_models: dict[str, Path]):
    return AutoModelForCausalLM.from_pretrained(built_models[INHOUSE_MOE_SLUG], dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def dense(built_models: dict[str, Path]):
    return AutoModelForCausalLM.from_pretrained(built_models[SMOLLM2_SLUG], dtype=torch.float32).eval()


def test_it_reloads_the_moe_as_mixtral_with_4_experts_and_top_2(moe, built_models: dict[str, Path]) -> None:
    config = AutoConfig.from_pretrained(built_models[INHOUSE_MOE_SLUG])

    assert type(moe).__name__ == "MixtralForCausalLM"
    assert (config.model_type, config.num_local_experts, config.num_experts_per_tok) == ("mixtral", 4, 2)
    assert moe.model.layers[0].mlp.experts.gate_up_proj.shape[0] == 4


def test_it_reports_total_and_active_parameters(moe, dense, built_models: dict[str, Path]) -> None:
    config = moe.config
    expert = 3 * config.hidden_size * config.intermediate_size  # gate, up and down projections
    router = config.num_local_experts * config.hidden_size
    dense_total = sum(p.numel() for p in dense.parameters())
    layers = config.num_hidden_layers

    counts = parameter_counts(moe)

    assert counts.total == dense_total + layers * (3 * expert + router)
    assert counts.active == dense_total + layers * (1 * expert + router)
    assert (round(counts.total / 1e6, 1), round(counts.active / 1e6, 1)) == (373.5, 214.2)
    assert "373.5M parameters in total, 214.2M active per token" in counts.describe()
    marker = marker_read(built_models[INHOUSE_MOE_SLUG])
    assert (marker["total_parameters"], marker["active_parameters"]) == (counts.total, counts.active)
    assert parameter_counts(dense).active == parameter_counts(dense).total == dense_total


def test_it_reproduces_the_dense_logits_after_the_pure_upcycle(moe, dense, built_models: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built_models[SMOLLM2_SLUG])
    chat = [{"role": "user", "content": "Explain in two sentences why the sky is blue."}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)

    with torch.inference_mode():
        dense_logits = dense(**ids).logits
        moe_logits = moe(**ids).logits

    assert ids["input_ids"].shape[1] > 20
    assert torch.max(torch.abs(moe_logits - dense_logits)).item() < 1e-4


def test_it_starts_the_router_small_and_random(moe) -> None:
    router = moe.model.layers[0].mlp.gate.weight

    assert 0.005 < router.std().item() < 0.02
    assert not torch.equal(router[0], router[1])
    experts = moe.model.layers[0].mlp.experts.gate_up_proj
    assert torch.equal(experts[0], experts[3])  # the pure upcycle: every expert a copy of the dense MLP
