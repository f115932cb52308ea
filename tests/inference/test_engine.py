"""The batching engine on the CPU (fp32) with the built SmolLM2: concurrent answers decode in one batch and each
one ends on its own terms."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from inference import GenerationError, generate
from inference.engine import Request, Sampling, sample
from inference.local import model_get
from models_hub.builders import SMOLLM2_SLUG
from tests.inference.test_local import entry_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about rain.",
    "Explain gravity to a child.",
    "List three fruits and their colours.",
]


def at_once(count: int, work) -> list:
    """Run work(i) for i in range(count) on that many threads released together; results in order."""
    start = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # returned for the test to look at
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    return results


def test_it_gives_concurrent_turns_the_same_greedy_text_as_one_at_a_time(built_models: dict[str, Path]) -> None:
    entry = entry_for(built_models[SMOLLM2_SLUG], max_new_tokens=20)
    engine = model_get(entry.checkpoint_path).engine
    alone = [generate(entry, [{"role": "user", "content": p}]) for p in PROMPTS]
    peak_before = engine.peak_batch

    together = at_once(len(PROMPTS), lambda i: generate(entry, [{"role": "user", "content": PROMPTS[i]}]))

    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.output_tokens for r in together] == [r.output_tokens for r in alone]
    assert all(r.text for r in alone)
    # They really shared steps: one at a time never decodes more than one row.
    assert peak_before == 1 and engine.peak_batch >= 2


def test_it_ends_only_the_cancelled_request(built_models: dict[str, Path]) -> None:
    engine = model_get(str(built_models[SMOLLM2_SLUG])).engine
    prompts = [[1, 504, 3458, 282, 3363, 314], [1, 19842, 253, 2143, 1485], [1, 1780, 253, 5353, 3267]]
    alone = [engine.answer(Request(prompt=p, max_new_tokens=16, min_new_tokens=16))[0] for p in prompts]
    requests = [Request(prompt=p, max_new_tokens=16, min_new_tokens=16) for p in prompts]
    for request in requests:
        engine.submit(request)
    cancelled = requests[1]
    assert cancelled.events.get(timeout=120)[0] == "tokens"
    cancelled.cancel()

    events = [drain(request) for request in requests]

    assert events[1][1] == "cancelled" and len(events[1][0]) < 16
    for i in (0, 2):
        assert events[i] == (alone[i], "length")


def drain(request: Request) -> tuple[list[int], str]:
    ids: list[int] = []
    while True:
        kind, value = request.events.get(timeout=120)
        if kind == "tokens":
            ids.extend(value)
        elif kind == "end":
            return ids, value
        else:
            return ids, f"error: {value}"


def test_a_request_that_fails_leaves_the_others_running(built_models: dict[str, Path]) -> None:
    loaded = model_get(str(built_models[SMOLLM2_SLUG]))
    engine = loaded.engine
    vocab = loaded.model.get_input_embeddings().weight.shape[0]
    good = [Request(prompt=[1, 504, 3458, 282], max_new_tokens=12, min_new_tokens=12) for _ in range(2)]
    engine.submit(good[0])
    assert good[0].events.get(timeout=120)[0] == "tokens"  # running when the bad one arrives
    bad = Request(prompt=[1, vocab + 7], max_new_tokens=12)  # a token the model has no embedding for
    engine.submit(bad)
    engine.submit(good[1])

    assert drain(bad)[1].startswith("error")
    first, second = drain(good[0]), drain(good[1])
    assert second == (engine.answer(Request(prompt=[1, 504, 3458, 282], max_new_tokens=12, min_new_tokens=12))[0], "length")
    assert first[1] == "length" and len(first[0]) == 11  # plus the one taken above


def test_a_prompt_over_the_context_fails_only_its_own_turn(built_models: dict[str, Path]) -> None:
    entry = entry_for(built_models[SMOLLM2_SLUG], max_new_tokens=8)
    context = model_get(entry.checkpoint_path).engine.context_length
    huge = [{"role": "user", "content": "word " * (context + 100)}]
    fine = [{"role": "user", "content": PROMPTS[0]}]

    results = at_once(3, lambda i: generate(entry, huge if i == 1 else fine))

    assert isinstance(results[1], GenerationError)
    assert str(results[1]) == "The conversation is too long for this model. Start a new battle."
    assert results[0].text == results[2].text == generate(entry, fine).text != ""


def test_it_reports_why_each_answer_ended(built_models: dict[str, Path]) -> None:
    short = entry_for(built_models[SMOLLM2_SLUG], max_new_tokens=40)
    story = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
    pieces: list[str] = []

    assert generate(short, [{"role": "user", "content": PROMPTS[0]}]).finish_reason == "stop"
    cut = generate(entry_for(built_models[SMOLLM2_SLUG], max_new_tokens=6), story)
    assert (cut.finish_reason, cut.output_tokens) == ("length", 6)
    cancelled = generate(short, story, on_text=pieces.append, should_stop=lambda: len(pieces) >= 2)
    assert cancelled.finish_reason == "cancelled"


def test_it_samples_each_row_by_its_own_settings() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 1000)
    best = logits.argmax(-1)
    settings = [Sampling(), Sampling(temperature=1.0, top_k=1), Sampling(temperature=0.7, top_p=1e-6), Sampling(temperature=5.0)]

    draws = torch.stack([sample(logits, settings) for _ in range(50)])

    assert (draws[:, :3] == best[:3]).all()  # greedy, top-k 1 and a vanishing top-p all take the best token
    assert len(set(draws[:, 3].tolist())) > 10  # a hot temperature over the full vocabulary does not
