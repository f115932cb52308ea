"""The in-house MoE against the dense model it was upcycled from, both real checkpoints on the CPU.

The pure upcycle is the dense model (checked in memory); the built default is trained after upcycling, so it
is a model of its own: it answers differently, keeps the dense model's held-out chat perplexity within 10%,
and its routers spread the tokens over the experts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from models_hub.builders import INHOUSE_MOE_SLUG, SMOLLM2_SLUG, MoeRecipe, marker_read, parameter_counts, upcycle
from models_hub.builders.moe import CHAT_SYSTEM_PROMPT, TRAIN_TOP_LAYERS, chat_perplexity, expert_utilisation
from models_hub.builders.training_data import HELD_OUT_CHATS, training_conversations

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


def test_it_reproduces_the_dense_logits_after_the_pure_upcycle(dense, built_models: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built_models[SMOLLM2_SLUG])
    chat = [{"role": "user", "content": "Explain in two sentences why the sky is blue."}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    pure = upcycle(dense, MoeRecipe(train_steps=0), log=lambda message: None)

    with torch.inference_mode():
        dense_logits = dense(**ids).logits
        moe_logits = pure(**ids).logits

    assert ids["input_ids"].shape[1] > 20
    assert torch.max(torch.abs(moe_logits - dense_logits)).item() < 1e-4


def test_the_layers_below_the_trained_ones_keep_the_small_random_router_and_identical_experts(moe) -> None:
    router = moe.model.layers[0].mlp.gate.weight

    assert 0.005 < router.std().item() < 0.02
    assert not torch.equal(router[0], router[1])
    experts = moe.model.layers[0].mlp.experts.gate_up_proj
    assert torch.equal(experts[0], experts[3])  # untrained: every expert still a copy of the dense MLP


def test_the_trained_layers_experts_diverged_and_their_routers_learnt(moe, dense) -> None:
    pure = upcycle(dense, MoeRecipe(train_steps=0), log=lambda message: None)
    layers = moe.config.num_hidden_layers
    for layer in range(layers - TRAIN_TOP_LAYERS, layers):
        experts = moe.model.layers[layer].mlp.experts
        for a, b in ((0, 1), (1, 2), (2, 3), (0, 3)):
            assert not torch.equal(experts.gate_up_proj[a], experts.gate_up_proj[b]), (layer, a, b)
            assert not torch.equal(experts.down_proj[a], experts.down_proj[b]), (layer, a, b)
        assert not torch.equal(moe.model.layers[layer].mlp.gate.weight, pure.model.layers[layer].mlp.gate.weight)
    for layer in range(layers - TRAIN_TOP_LAYERS):
        assert torch.equal(moe.model.layers[layer].mlp.gate.weight, pure.model.layers[layer].mlp.gate.weight)


def _greedy(model, tokenizer, prompts: list[str], tokens: int = 24) -> list[str]:
    """Greedy answers to `prompts`, in one left-padded batch (both models are asked the same way)."""
    texts = [tokenizer.apply_chat_template(
        [{"role": "system", "content": CHAT_SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
        add_generation_prompt=True, tokenize=False) for prompt in prompts]
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    width = batch["input_ids"].shape[1]
    return [tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]


def test_the_built_default_answers_differently_from_smollm2(moe, dense, built_models: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built_models[SMOLLM2_SLUG])
    prompts = [chat["prompt"] for chat in HELD_OUT_CHATS[:8]]
    trained_on = {conversation[0]["content"] for conversation in training_conversations()}
    assert not trained_on & {chat["prompt"] for chat in HELD_OUT_CHATS}, "the held-out prompts are never trained on"

    answers = list(zip(_greedy(dense, tokenizer, prompts), _greedy(moe, tokenizer, prompts)))

    differ = [prompt for prompt, (a, b) in zip(prompts, answers) if a != b]
    assert len(differ) >= len(prompts) // 2, answers
    assert all(b.strip() for _, b in answers), "the MoE still answers every prompt"


def test_it_keeps_the_held_out_chat_perplexity_within_a_tenth_of_the_dense_model(moe, dense, built_models) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built_models[SMOLLM2_SLUG])

    dense_ppl, moe_ppl = chat_perplexity(dense, tokenizer), chat_perplexity(moe, tokenizer)

    assert 1.0 < moe_ppl <= 1.1 * dense_ppl, (moe_ppl, dense_ppl)
    assert marker_read(built_models[INHOUSE_MOE_SLUG])["held_out_chat_perplexity"] == pytest.approx(moe_ppl, rel=1e-3)


def test_it_reports_the_expert_utilisation_of_every_layer(moe, built_models) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built_models[SMOLLM2_SLUG])
    marker = marker_read(built_models[INHOUSE_MOE_SLUG])

    shares = expert_utilisation(moe, tokenizer)

    assert len(shares) == moe.config.num_hidden_layers and all(len(row) == 4 for row in shares)
    assert all(sum(row) == pytest.approx(1.0, abs=1e-3) for row in shares)
    assert all(min(row) > 0.05 for row in shares[-TRAIN_TOP_LAYERS:]), "no trained layer leaves an expert idle"
    assert len(marker["expert_utilisation"]) == len(shares)
    for stored, measured in zip(marker["expert_utilisation"], shares):
        assert stored == pytest.approx(measured, abs=1e-3)
    assert marker["source"]["train_steps"] == MoeRecipe().train_steps > 0
    assert len(marker["source"]["training_data_sha256"]) == 64


RSS_PROBE = """
import json, sys, torch
from transformers import AutoModelForCausalLM

def rss_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

before = rss_bytes()
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32, local_files_only=True).eval()
with torch.inference_mode():  # a forward touches every expert's weights
    model(torch.tensor([[1, 504, 3458, 282, 3363, 314, 253, 1485]]))
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"grew": rss_bytes() - before, "weights": weights}))
"""


def test_a_process_holds_the_moes_experts_once(built_models: dict[str, Path]) -> None:
    # Saved one tensor per expert (the hub's layout), loading merged them into new tensors while the mapped
    # file stayed resident: the process grew by 2.1x the weights. Saved fused, it maps them once.
    import json
    import subprocess
    import sys

    from safetensors import safe_open

    path = built_models[INHOUSE_MOE_SLUG]
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "model.layers.0.mlp.experts.gate_up_proj" in keys and not any(".experts.0." in k for k in keys)
    done = subprocess.run([sys.executable, "-c", RSS_PROBE, str(path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["grew"] < 1.25 * figures["weights"], figures
