"""manage.py train_inhouse: bad input fails before any training and registers nothing; a run on a small fixture
of pairs trains the real in-house MoE with TRL's DPO trainer, lowers the DPO loss on those pairs, and registers a
preview version with its lineage that loads and answers."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from inference import generate
from models_hub.builders import INHOUSE_MOE_SLUG, marker_read
from models_hub.models import ModelEntry
from training.models import TrainingRun
from training.pairs import pair_set
from training.services import version_register

pytestmark = pytest.mark.django_db

RIVAL = "Gemma 3 270M"
INHOUSE = "In-house MoE 4x135M"


def pair(prompt: str, chosen: str, rejected: str, chosen_model: str, rejected_model: str) -> dict:
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "chosen_model": chosen_model,
        "rejected_model": rejected_model,
    }


# Short answers beat long ones when the prompt asks for few words: the preference the pairs teach.
PAIRS = [
    pair("What is the sky's colour? Answer in at most 5 words.", "The sky is blue.",
         "The sky is usually blue during the day because sunlight is scattered by the air, and at sunset it can "
         "turn orange, red or pink as the light travels further.", RIVAL, INHOUSE),
    pair("Name a fruit. Answer in at most 5 words.", "An apple.",
         "There are many fruits to choose from, such as apples, bananas, oranges, grapes and strawberries, each "
         "with its own taste.", INHOUSE, RIVAL),
    pair("What do cows drink? Answer in at most 5 words.", "Cows drink water.",
         "Cows mostly drink water, and a dairy cow can drink more than a hundred litres of it every single day, "
         "especially when it is hot.", RIVAL, INHOUSE),
    pair("Where do penguins live? Answer in at most 5 words.", "Mostly in Antarctica.",
         "Penguins live almost entirely in the Southern Hemisphere, from the ice of Antarctica to the coasts of "
         "South Africa, Australia and South America.", INHOUSE, RIVAL),
]


def write_pairs(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("train_inhouse", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def models_dir(tmp_path: Path, settings) -> Path:
    settings.ARENA_MODELS_DIR = tmp_path / "models"
    settings.ARENA_MODELS_DIR.mkdir()
    return settings.ARENA_MODELS_DIR


@pytest.fixture
def stub_inhouse(tmp_path: Path) -> ModelEntry:
    """An in-house entry whose checkpoint directory exists: enough for every check before training."""
    checkpoint = tmp_path / "stub-checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    return ModelEntry.objects.create(
        slug="inhouse-stub", display_name=INHOUSE, checkpoint_path=str(checkpoint), is_inhouse=True,
        visibility="preview", codename="hornbill",
    )


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([], "No preference pairs in pairs.jsonl: nothing to train on"),
        ([pair("Hi", "Hello!", "Go away.", RIVAL, "SmolLM2 135M Instruct")] * 2,
         f"None of the 2 pairs in pairs.jsonl involve {INHOUSE}; they are between {RIVAL}, SmolLM2 135M Instruct"),
        ([PAIRS[0], "{not json"], "pairs.jsonl: line 2: not valid JSON"),
        ([{k: v for k, v in PAIRS[0].items() if k != "chosen_model"}], "line 1: missing chosen_model"),
        ([{**PAIRS[0], "chosen": [{"role": "robot", "content": "x"}]}], "line 1: 'chosen' holds something that is not"),
        ([{**PAIRS[0], "rejected": "   "}], "line 1: an answer is empty"),
        (["[1, 2]"], "line 1: a pair must be a JSON object"),
    ],
    ids=["no-pairs", "another-model", "not-json", "no-model-names", "bad-role", "empty-answer", "not-an-object"],
)
def test_bad_pairs_fail_clearly_and_register_nothing(records, message, tmp_path, models_dir, stub_inhouse) -> None:
    path = write_pairs(tmp_path / "pairs.jsonl", records)
    entries = set(ModelEntry.objects.values_list("id", flat=True))

    with pytest.raises(CommandError) as failure:
        run("--pairs", str(path))

    assert message in str(failure.value)
    assert set(ModelEntry.objects.values_list("id", flat=True)) == entries
    assert TrainingRun.objects.count() == 0
    assert list(models_dir.iterdir()) == []


def test_it_refuses_missing_files_empty_votes_and_misplaced_filters(tmp_path, models_dir, stub_inhouse) -> None:
    with pytest.raises(CommandError, match="No file at"):
        run("--pairs", str(tmp_path / "nowhere.jsonl"))
    with pytest.raises(CommandError, match="No preference pairs in the votes"):
        run("--from-votes", "--since", "2026-01-01", "--category", "coding")
    with pytest.raises(CommandError, match="is not a date"):
        run("--from-votes", "--since", "last tuesday")
    with pytest.raises(CommandError, match="use them with --from-votes"):
        run("--pairs", str(write_pairs(tmp_path / "p.jsonl", PAIRS)), "--since", "2026-01-01")
    with pytest.raises(CommandError, match="steps must be at least 1"):
        run("--pairs", str(tmp_path / "p.jsonl"), "--steps", "0")
    with pytest.raises(CommandError, match="No model entry with the slug 'nope'"):
        run("--pairs", str(tmp_path / "p.jsonl"), "--model", "nope")
    assert ModelEntry.objects.count() == 1 and TrainingRun.objects.count() == 0
    assert list(models_dir.iterdir()) == []


def test_a_version_is_a_preview_that_names_itself_and_its_lineage_survives_a_dump_and_load(tmp_path, stub_inhouse) -> None:
    pairs = pair_set(PAIRS, vote_ids=[3, 5], filters={"category": None})

    first = version_register(stub_inhouse, checkpoint=tmp_path, recipe={"trainer": "trl.DPOTrainer"}, pairs=pairs)
    second = version_register(stub_inhouse, checkpoint=tmp_path, recipe={"trainer": "trl.DPOTrainer"}, pairs=pairs)
    third = version_register(first, checkpoint=tmp_path, recipe={}, pairs=pair_set(PAIRS))

    assert (first.display_name, first.slug, first.version) == (f"{INHOUSE} v2", "inhouse-stub-v2", 2)
    assert (second.display_name, second.slug) == (f"{INHOUSE} v2.2", "inhouse-stub-v2-2")
    assert (third.display_name, third.version, third.parent) == (f"{INHOUSE} v3", 3, first)
    assert [e.codename for e in (first, second, third)] == ["kestrel", "avocet", "bittern"]
    assert all(e.is_preview and e.is_inhouse and e.public_name == e.codename for e in (first, second, third))
    assert first.version_label == f"v2, from {INHOUSE}"
    assert first.training_votes["count"] == 2 and len(first.training_votes["sha256"]) == 64
    assert first.training_data_sha256 == pairs.sha256 != pair_set(PAIRS[:1]).sha256

    dump = tmp_path / "registry.json"
    call_command("dumpdata", "models_hub", output=str(dump))
    lineage = {e.slug: (e.parent_id and e.parent.slug, e.version, e.recipe, e.training_data_sha256, e.training_votes)
               for e in ModelEntry.objects.all()}
    ModelEntry.objects.filter(parent__isnull=False).filter(children__isnull=True).delete()
    ModelEntry.objects.filter(parent__isnull=False).delete()
    ModelEntry.objects.all().delete()
    call_command("loaddata", str(dump))
    assert {e.slug: (e.parent_id and e.parent.slug, e.version, e.recipe, e.training_data_sha256, e.training_votes)
            for e in ModelEntry.objects.all()} == lineage


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_it_trains_the_inhouse_moe_with_dpo_and_registers_a_preview_that_answers(
    built_models, tmp_path, models_dir
) -> None:
    parent = ModelEntry.objects.create(
        slug=INHOUSE_MOE_SLUG, display_name=INHOUSE, checkpoint_path=str(built_models[INHOUSE_MOE_SLUG]),
        is_inhouse=True, visibility="preview", codename="hornbill", system_prompt="You are a helpful assistant.",
        temperature=0.0, max_new_tokens=16, recipe=marker_read(built_models[INHOUSE_MOE_SLUG])["source"],
    )
    path = write_pairs(tmp_path / "pairs.jsonl", PAIRS[:2])  # one won by the in-house model, one lost

    output = run("--pairs", str(path), "--steps", "2", "--batch-size", "2", "--learning-rate", "1e-4", "--device", "cpu")

    child = ModelEntry.objects.get(parent=parent)
    assert (child.version, child.display_name, child.codename, child.visibility) == (2, f"{INHOUSE} v2", "kestrel", "preview")
    assert f"{INHOUSE} v2" in output and "registered as a preview" in output
    assert child.recipe["trainer"] == "trl.DPOTrainer" and child.recipe["steps"] == 2
    marker = marker_read(Path(child.checkpoint_path))
    assert marker["source"]["kind"] == "dpo" and marker["source"]["pairs_sha256"] == child.training_data_sha256
    # The policy starts equal to the reference, so the DPO loss starts at ln 2; training on the pairs lowers it.
    # (TRL adds the MoE router's load-balancing loss to the objective; it is recorded beside it.)
    assert marker["dpo_loss_before"] == pytest.approx(math.log(2), abs=1e-3)
    assert marker["router_aux_loss_before"] > 0 and marker["router_aux_loss_coef"] > 0
    assert marker["dpo_loss_after"] < marker["dpo_loss_before"] - 0.01
    assert child.recipe["dpo_loss_after"] == marker["dpo_loss_after"]

    answer = generate(child, [{"role": "user", "content": "What is the capital of France?"}])
    assert answer.text.strip()

    # The current in-house version is now v2, and these pairs are about v1: refused for v2, before any training.
    with pytest.raises(CommandError, match=f"None of the 2 pairs in pairs.jsonl involve {INHOUSE} v2"):
        run("--pairs", str(path), "--steps", "2")
    # Training v1 again on the same pairs reuses the checkpoint and its entry: no twin version.
    again = run("--pairs", str(path), "--model", INHOUSE_MOE_SLUG, "--steps", "2", "--batch-size", "2",
                "--learning-rate", "1e-4", "--device", "cpu")
    assert "up to date" in again and "already trained on these pairs" in again
    assert list(ModelEntry.objects.filter(parent=parent)) == [child]


def test_votes_on_an_empty_answer_are_left_out_of_the_pairs_and_counted() -> None:
    """Tried: a model answered nothing and lost the vote. That vote is real, but it has no answer to learn from:
    reading the votes leaves it out and says how many were, where a file with such a pair is refused."""
    from arena.models import Battle, Side, Turn, Vote
    from training.pairs import pairs_from_votes

    rival = ModelEntry.objects.create(slug="rival", display_name=RIVAL, provider="openai", base_url="http://127.0.0.1:9/v1")
    inhouse = ModelEntry.objects.create(slug="inhouse", display_name=INHOUSE, provider="openai", base_url="http://127.0.0.1:9/v1")
    votes = []
    for prompt, answers in (("Name a fruit.", ("An apple.", "")), ("Name a colour.", ("Blue.", "Red, mostly."))):
        battle = Battle.objects.create(session_key="person", categories=[])
        for position, model, answer in (("left", rival, answers[0]), ("right", inhouse, answers[1])):
            side = Side.objects.create(battle=battle, position=position, model=model)
            Turn.objects.create(side=side, index=0, prompt=prompt, response=answer, status=Turn.Status.DONE)
        votes.append(Vote.objects.create(battle=battle, choice="left", session_key="person"))
    pairs, vote_ids, filters = pairs_from_votes()
    assert vote_ids == [votes[1].pk]
    assert [p["chosen"][-1]["content"] for p in pairs] == ["Blue."]
    assert filters["left_out_empty_answer"] == 1
