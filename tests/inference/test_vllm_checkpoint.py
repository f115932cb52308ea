"""The MoE's fused experts written out one tensor per expert, the layout vLLM's Mixtral loads."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file, save_file

from inference.vllm_checkpoint import needs_conversion, per_expert, vllm_checkpoint


def test_it_splits_fused_experts_into_gate_up_and_down_per_expert():
    gate_up = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)  # [E, 2I, H], gate rows first
    down = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3)  # [E, H, I]

    split = per_expert("model.layers.4.mlp.experts.gate_up_proj", gate_up)
    split |= per_expert("model.layers.4.mlp.experts.down_proj", down)

    prefix = "model.layers.4.block_sparse_moe.experts"
    for expert in range(2):
        assert torch.equal(split[f"{prefix}.{expert}.w1.weight"], gate_up[expert, :3])
        assert torch.equal(split[f"{prefix}.{expert}.w3.weight"], gate_up[expert, 3:])
        assert torch.equal(split[f"{prefix}.{expert}.w2.weight"], down[expert])
    assert len(split) == 6


def test_it_renames_the_router_and_keeps_every_other_tensor():
    router = torch.ones(4, 3)
    assert list(per_expert("model.layers.0.mlp.gate.weight", router)) == ["model.layers.0.block_sparse_moe.gate.weight"]
    assert list(per_expert("model.norm.weight", router)) == ["model.norm.weight"]


def test_it_converts_a_fused_checkpoint_once_and_serves_others_as_they_are(tmp_path, settings):
    settings.ARENA_VLLM_DIR = tmp_path / "vllm"
    fused = tmp_path / "moe"
    fused.mkdir()
    (fused / "config.json").write_text(json.dumps({"model_type": "mixtral"}))
    (fused / "tokenizer.json").write_text("{}")
    save_file({"model.layers.0.mlp.experts.gate_up_proj": torch.zeros(2, 4, 2),
               "model.layers.0.mlp.experts.down_proj": torch.zeros(2, 2, 2),
               "model.layers.0.mlp.gate.weight": torch.zeros(2, 2)}, str(fused / "model.safetensors"))  # fmt: skip
    dense = tmp_path / "dense"
    dense.mkdir()
    (dense / "config.json").write_text(json.dumps({"model_type": "llama"}))

    converted = vllm_checkpoint(fused)

    assert vllm_checkpoint(dense) == dense and not needs_conversion(dense)
    assert converted.parent == settings.ARENA_VLLM_DIR / "checkpoints" and not needs_conversion(converted)
    assert (converted / "tokenizer.json").read_text() == "{}"
    names = set()
    for file in converted.glob("*.safetensors"):
        names |= set(load_file(str(file)))
    assert "model.layers.0.block_sparse_moe.experts.1.w2.weight" in names and len(names) == 7
    mtime = converted.stat().st_mtime_ns
    assert vllm_checkpoint(fused) == converted and converted.stat().st_mtime_ns == mtime  # converted once
