"""Real generation on the CPU with the default models, built once per session into ARENA_MODELS_DIR."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference import GenerationError, GenerationResult, generate
from inference.local import PLAIN_STOP, TextStream, model_get, prompt_ids, prompt_plain
from models_hub.builders import GEMMA3_SLUG, INHOUSE_MOE_SLUG, SMOLLM2_SLUG
from models_hub.models import ModelEntry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def entry_for(path: Path, *, prompt_format: str = "chat", **settings: object) -> ModelEntry:
    fields = {"temperature": 0.0, "max_new_tokens": 12, **settings}
    return ModelEntry(
        slug="secret-slug",
        display_name="Secret Model",
        organization="Secret Org",
        provider="transformers",
        checkpoint_path=str(path),
        prompt_format=prompt_format,
        **fields,
    )


def answer(entry: ModelEntry, messages: list[dict[str, str]] = QUESTION) -> tuple[GenerationResult, list[str]]:
    pieces: list[str] = []
    result = generate(entry, messages, on_text=pieces.append)
    return result, pieces


def assert_a_full_answer(result: GenerationResult, pieces: list[str]) -> None:
    assert result.text.strip()
    assert len(pieces) > 1
    assert "".join(pieces) == result.text
    assert result.prompt_tokens and result.prompt_tokens > 5
    assert result.output_tokens and 1 <= result.output_tokens <= 12
    assert result.time_to_first_token is not None and result.time_to_first_token > 0
    assert result.tokens_per_second is not None and result.tokens_per_second > 0


def test_it_answers_with_smollm2_and_streams_pieces_that_join_to_the_answer(built_models: dict[str, Path]) -> None:
    result, pieces = answer(entry_for(built_models[SMOLLM2_SLUG]))

    assert_a_full_answer(result, pieces)
    assert "Paris" in result.text


def test_it_answers_with_the_inhouse_moe(built_models: dict[str, Path]) -> None:
    result, pieces = answer(entry_for(built_models[INHOUSE_MOE_SLUG]))

    # The trained default is a model of its own (tests/models_hub/test_moe.py): its first 12 tokens need not be
    # SmolLM2's "Paris", only a whole streamed answer that the limit cut or the model ended.
    assert_a_full_answer(result, pieces)
    assert result.finish_reason in ("stop", "length")


def test_it_answers_with_gemma_in_the_plain_format(built_models: dict[str, Path]) -> None:
    result, pieces = answer(entry_for(built_models[GEMMA3_SLUG], prompt_format="plain"))

    assert_a_full_answer(result, pieces)
    assert "User:" not in result.text


def test_it_answers_greedily_the_same_way_twice(built_models: dict[str, Path]) -> None:
    entry = entry_for(built_models[SMOLLM2_SLUG])

    assert generate(entry, QUESTION).text == generate(entry, QUESTION).text


def test_it_samples_when_the_temperature_is_positive(built_models: dict[str, Path]) -> None:
    entry = entry_for(built_models[SMOLLM2_SLUG], temperature=1.5, top_p=1.0, max_new_tokens=16)
    story = [{"role": "user", "content": "Invent a name for a new planet and describe it."}]
    import torch

    # Seeded: four draws from the global generator then give the same four answers on every run, instead of a
    # small chance that four unseeded draws agree.
    torch.manual_seed(20261201)
    answers = {generate(entry, story).text for _ in range(4)}

    assert len(answers) > 1


def test_it_stops_early_when_asked_to(built_models: dict[str, Path]) -> None:
    entry = entry_for(built_models[SMOLLM2_SLUG], max_new_tokens=64)
    pieces: list[str] = []
    story = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]

    result = generate(entry, story, on_text=pieces.append, should_stop=lambda: len(pieces) >= 2)

    assert result.output_tokens is not None and result.output_tokens < 10
    assert "".join(pieces) == result.text
    assert generate(entry, story).output_tokens == 64  # uncancelled, the same prompt runs to the limit


def test_it_does_not_start_when_already_cancelled(built_models: dict[str, Path]) -> None:
    pieces: list[str] = []

    result = generate(entry_for(built_models[SMOLLM2_SLUG]), QUESTION, on_text=pieces.append, should_stop=lambda: True)

    assert (result.text, result.output_tokens, pieces) == ("", 0, [])


def test_it_continues_a_multi_turn_conversation(built_models: dict[str, Path]) -> None:
    conversation = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada!"},
        {"role": "user", "content": "What is my name?"},
    ]

    result = generate(entry_for(built_models[SMOLLM2_SLUG]), conversation)

    assert "Ada" in result.text


def test_it_puts_the_entry_system_prompt_into_the_chat_template(built_models: dict[str, Path]) -> None:
    entry = entry_for(built_models[SMOLLM2_SLUG], system_prompt="Answer like a pirate.")
    loaded = model_get(entry.checkpoint_path)

    ids, stops = prompt_ids(loaded, entry, QUESTION)
    prompt = loaded.tokenizer.decode(ids[0])

    assert prompt.startswith("<|im_start|>system\nAnswer like a pirate.<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert stops == ()


def test_it_writes_a_plain_transcript_when_the_format_is_plain(built_models: dict[str, Path]) -> None:
    entry = entry_for(built_models[SMOLLM2_SLUG], prompt_format="plain", system_prompt="Be brief.")
    loaded = model_get(entry.checkpoint_path)

    ids, stops = prompt_ids(loaded, entry, QUESTION)

    assert loaded.tokenizer.decode(ids[0]).endswith("Be brief.\n\nUser: What is the capital of France?\nAssistant:")
    assert stops == PLAIN_STOP


def test_it_builds_the_plain_transcript_of_a_conversation() -> None:
    messages = [
        {"role": "user", "content": "Hi "},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]

    assert prompt_plain("", messages) == "User: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:"


def test_it_cuts_the_stream_before_the_next_user_turn(built_models: dict[str, Path]) -> None:
    tokenizer = model_get(str(built_models[SMOLLM2_SLUG])).tokenizer
    pieces: list[str] = []
    stream = TextStream(tokenizer, PLAIN_STOP, pieces.append)
    stream.put(tokenizer("prompt", return_tensors="pt")["input_ids"])  # generate() hands over the prompt first

    for token in tokenizer(" Paris is the capital.\nUser: and Spain?", add_special_tokens=False)["input_ids"]:
        if stream.stopped:
            break
        stream.put(torch.tensor([token]))
    stream.end()

    assert stream.stopped
    assert stream.published == "Paris is the capital."
    assert "".join(pieces) == "Paris is the capital."


def test_it_loads_each_checkpoint_once_per_process(built_models: dict[str, Path]) -> None:
    assert model_get(str(built_models[SMOLLM2_SLUG])) is model_get(str(built_models[SMOLLM2_SLUG]))


def test_it_fails_with_a_voter_safe_reason_when_the_checkpoint_is_missing(tmp_path: Path) -> None:
    entry = entry_for(tmp_path / "gone")

    with pytest.raises(GenerationError) as raised:
        generate(entry, QUESTION)

    reason = str(raised.value)
    assert reason == "This model's files are missing on the server."
    for secret in ("secret", "Secret", str(tmp_path)):
        assert secret not in reason


def test_it_rejects_a_conversation_that_does_not_end_with_the_user() -> None:
    with pytest.raises(GenerationError, match="must end with the user's prompt"):
        generate(entry_for(Path("/nowhere")), [{"role": "assistant", "content": "Hi"}])


def test_it_loads_two_checkpoints_at_once_from_two_threads(built_models: dict[str, Path]) -> None:
    # Both sides of a battle ask for their model at the same moment on an embedded server's two threads.
    import threading

    from inference.local import model_load

    paths = [built_models[SMOLLM2_SLUG], built_models[GEMMA3_SLUG]]
    start = threading.Barrier(len(paths))
    loaded: dict[int, object] = {}
    errors: list[BaseException] = []

    def load(i: int) -> None:
        start.wait()
        try:
            loaded[i] = model_load(paths[i])
        except BaseException as exc:  # reported below with the others
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(paths))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == []
    for model in (loaded[i].model for i in range(len(paths))):
        assert not any(p.is_meta for p in model.parameters())
        assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def stream_through(tokenizer, stops, text: str) -> tuple["TextStream", list[str]]:
    pieces: list[str] = []
    stream = TextStream(tokenizer, stops, pieces.append)
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        if stream.stopped:
            break
        stream.feed([token])
    stream.end()
    return stream, pieces


@pytest.mark.parametrize("invented", ["User", "Assistant", "Administrator", "Moderator"])
def test_it_cuts_a_plain_answer_at_any_role_line_the_model_invents(built_models: dict[str, Path], invented: str) -> None:
    tokenizer = model_get(str(built_models[SMOLLM2_SLUG])).tokenizer

    stream, pieces = stream_through(tokenizer, PLAIN_STOP, f" Paris is the capital.\n{invented}: and Spain?\nUser: ok")

    assert stream.stopped
    assert stream.published == "".join(pieces) == "Paris is the capital."


def test_it_keeps_colons_and_capitals_that_open_no_role_line(built_models: dict[str, Path]) -> None:
    tokenizer = model_get(str(built_models[SMOLLM2_SLUG])).tokenizer
    answer = "Mix at a ratio of 3:1.\nThen wait. Time: ten minutes, User guide: page 2.\n- Step two"

    stream, pieces = stream_through(tokenizer, PLAIN_STOP, " " + answer + "\n")

    assert not stream.stopped
    assert stream.published == "".join(pieces) == answer


def test_it_decodes_a_long_answer_in_linear_time(built_models: dict[str, Path]) -> None:
    # The stream used to decode the whole answer again on every token: n^2/2 token decodes for n tokens.
    tokenizer = model_get(str(built_models[SMOLLM2_SLUG])).tokenizer

    class Counting:
        decoded = 0

        def decode(self, ids, **options):
            Counting.decoded += len(ids)
            return tokenizer.decode(ids, **options)

    text = " ".join(f"Sentence {i} has some words, café and naïve ones." for i in range(60))
    ids = tokenizer(" " + text, add_special_tokens=False)["input_ids"]
    pieces: list[str] = []
    stream = TextStream(Counting(), PLAIN_STOP, pieces.append)
    for token in ids:
        stream.feed([token])
    stream.end()

    assert stream.published == "".join(pieces) == text
    assert Counting.decoded < 8 * len(ids)
