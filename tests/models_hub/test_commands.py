from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command
from transformers import AutoConfig, AutoModelForCausalLM

from models_hub.builders import GEMMA3_SLUG, INHOUSE_MOE_SLUG, SMOLLM2_SLUG, marker_read
from models_hub.models import ModelEntry

def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_it_seeds_the_three_default_models_idempotently(built_models: dict[str, Path]) -> None:
    run("seed_models")
    first = {entry.slug: entry for entry in ModelEntry.objects.all()}
    ModelEntry.objects.filter(slug=SMOLLM2_SLUG).update(max_new_tokens=64, organization="Wrong")

    output = run("seed_models")

    again = {entry.slug: entry for entry in ModelEntry.objects.all()}
    assert sorted(again) == sorted([SMOLLM2_SLUG, GEMMA3_SLUG, INHOUSE_MOE_SLUG])
    assert {slug: entry.pk for slug, entry in again.items()} == {slug: entry.pk for slug, entry in first.items()}
    assert "3 of 3 default models registered" in output
    assert "up to date" in output and "built at" not in output
    smol, gemma, moe = again[SMOLLM2_SLUG], again[GEMMA3_SLUG], again[INHOUSE_MOE_SLUG]
    assert smol.max_new_tokens == 64  # a setting tuned in the admin survives a re-seed
    assert smol.organization == "Hugging Face"  # a fact is put right
    assert (smol.prompt_format, smol.license, smol.is_inhouse) == ("chat", "Apache-2.0", False)
    assert (gemma.organization, gemma.prompt_format, gemma.display_name) == ("Google", "plain", "Gemma 3 270M")
    assert (moe.is_inhouse, moe.visibility, moe.codename, moe.organization) == (True, "preview", "hornbill", "In-house")
    assert moe.public_name == "hornbill"
    # SmolLM2's template would otherwise tell the model, and so the voter, that it is SmolLM.
    assert smol.system_prompt and moe.system_prompt and "SmolLM" not in smol.system_prompt
    for slug, entry in again.items():
        assert entry.provider == "transformers"
        assert Path(entry.checkpoint_path) == built_models[slug].resolve()
        assert entry.max_new_tokens <= 128


@pytest.mark.django_db
def test_it_registers_only_what_is_built_when_told_to_skip_building(tmp_path: Path) -> None:
    output = run("seed_models", "--skip-build", "--models-dir", str(tmp_path))

    assert ModelEntry.objects.count() == 0
    assert "0 of 3 default models registered" in output
    assert list(tmp_path.iterdir()) == []


def test_it_rejects_a_top_k_above_the_number_of_experts(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="top-k must be between 1 and the number of experts"):
        run("build_inhouse_moe", "--experts", "2", "--top-k", "3", "--output", str(tmp_path / "moe"))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_it_builds_the_moe_with_the_given_options(built_models: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "moe"
    options = ["--experts", "2", "--top-k", "1", "--train-steps", "1", "--seed", "7", "--output", str(target)]

    output = run("build_inhouse_moe", *options)

    config = AutoConfig.from_pretrained(target)
    assert (config.model_type, config.num_local_experts, config.num_experts_per_tok) == ("mixtral", 2, 1)
    marker = marker_read(target)
    assert marker["source"]["train_steps"] == 1 and marker["source"]["seed"] == 7
    assert marker["training"]["aux_loss"] > 0
    assert "2 experts, top-1" in output
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    experts = model.model.layers[-1].mlp.experts.gate_up_proj
    assert not torch.equal(experts[0], experts[1])  # training routed tokens differently: the experts drifted apart

    built_at = marker["built_at"]
    assert "up to date" in run("build_inhouse_moe", *options)
    assert marker_read(target)["built_at"] == built_at
    assert "built at" in run("build_inhouse_moe", *options, "--force")
    assert marker_read(target)["built_at"] != built_at
