"""The battle websocket, end to end through Channels on PostgreSQL and the Redis channel layer, with generation
on in-process threads against the stand-in endpoint."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from arena.models import Battle, Turn, Vote

from tests.voters import Voter, standin_entry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.fixture
def echo_pair(standin, inprocess):
    return [
        standin_entry(standin, "alpha-model", "echo", display_name="Alpha Model", organization="Alphacorp"),
        standin_entry(standin, "beta-model", "echo", display_name="Beta Model", organization="Betacorp"),
    ]


def identity_strings(entries) -> list[str]:
    strings = []
    for e in entries:
        strings += [e.display_name, e.slug, e.organization, e.pool + '"', e.remote_model + '"', "openai", str(e.base_url)]
    return strings


@database_sync_to_async
def db(fn):
    return fn()


async def test_it_plays_a_whole_battle_to_the_reveal_without_naming_models_before(echo_pair):
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "Hello there"})
    started = await voter.until(lambda f: f["type"] == "started")
    assert started["models"] is None and set(started["sides"]) == {"A", "B"}
    ended = await voter.until_finished()
    assert {f["status"] for f in ended.values()} == {"done"}
    assert all(f["text"] == "You said: Hello there" for f in ended.values())
    tokens = [f for f in voter.frames if f["type"] == "token"]
    assert tokens and all(set(f) == {"type", "side", "turn", "attempt", "text"} for f in tokens)
    before_vote = "\n".join(voter.raw)
    for secret in identity_strings(echo_pair):
        assert secret not in before_vote, f"{secret!r} reached the voter before the vote"
    await voter.send({"type": "vote", "choice": "A"})
    voted = await voter.until(lambda f: f["type"] in ("voted", "error"))
    assert voted["type"] == "voted"
    battle = await db(lambda: Battle.objects.get(public_id=started["battle"]))
    names = await db(lambda: {s.position: s.model.display_name for s in battle.sides.select_related("model")})
    assert voted["models"] == {"A": names["left"], "B": names["right"]}
    vote = await db(lambda: Vote.objects.get(battle=battle))
    assert vote.choice == "left" and vote.identity_leak is False and vote.session_key == voter.session_key
    turns = await db(lambda: list(Turn.objects.filter(side__battle=battle)))
    assert all(t.status == "done" and t.output_tokens and t.time_to_first_token is not None for t in turns)
    await voter.close()


async def test_it_continues_the_conversation_with_history(standin, inprocess):
    await db(lambda: [standin_entry(standin, f"h{i}", "history") for i in range(2)])
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "first"})
    await voter.until_finished(turn=0)
    await voter.send({"type": "continue", "prompt": "second"})
    ended = await voter.until_finished(turn=1)
    assert {f["text"] for f in ended.values()} == {"turns=2"}
    battle = await db(lambda: Battle.objects.get(session_key=voter.session_key))
    assert "multi_turn" in battle.categories
    assert await db(lambda: Turn.objects.filter(side__battle=battle, index=1, prompt="second").count()) == 2
    await voter.close()


async def test_it_stops_a_battle_at_the_turn_limit(echo_pair, settings):
    settings.ARENA_MAX_TURNS = 1
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "one"})
    await voter.until_finished()
    await voter.send({"type": "continue", "prompt": "two"})
    assert (await voter.error())["code"] == "too_many_turns"
    assert await db(lambda: Turn.objects.filter(index=1).count()) == 0
    await voter.close()


async def test_it_regenerates_both_answers_with_a_new_attempt(echo_pair):
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "again"})
    await voter.until_finished()
    await voter.send({"type": "regenerate"})
    state = await voter.until(lambda f: f["type"] == "state")
    assert {s[0]["attempt"] for s in state["sides"].values()} == {1}
    ended = await voter.until_finished()
    assert {(f["attempt"], f["status"]) for f in ended.values()} == {(1, "done")}
    await voter.close()


async def test_it_refuses_a_vote_while_the_answers_stream(standin, inprocess):
    await db(lambda: [standin_entry(standin, f"s{i}", "slow") for i in range(2)])
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "take your time"})
    await voter.until(lambda f: f["type"] == "started")
    await voter.send({"type": "vote", "choice": "A"})
    error = await voter.error()
    assert error["code"] == "not_finished" and error["status"] == 409
    assert await db(lambda: Vote.objects.count()) == 0
    await voter.close()


async def test_it_accepts_a_vote_once(echo_pair):
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "hi"})
    await voter.until_finished()
    await voter.send({"type": "vote", "choice": "tie"})
    await voter.until(lambda f: f["type"] == "voted")
    await voter.send({"type": "vote", "choice": "B"})
    assert (await voter.error())["code"] == "already_voted"
    assert await db(lambda: list(Vote.objects.values_list("choice", flat=True))) == ["tie"]
    await voter.close()


async def test_it_refuses_votes_on_another_sessions_battle(echo_pair):
    owner = await Voter.open()
    await owner.send({"type": "start", "prompt": "mine"})
    started = await owner.until(lambda f: f["type"] == "started")
    await owner.until_finished()
    intruder = await Voter.open()
    await intruder.send({"type": "resume", "battle": started["battle"]})
    assert (await intruder.error())["code"] == "not_found"
    await intruder.send({"type": "vote", "choice": "A"})
    assert (await intruder.error())["code"] == "not_found"
    assert await db(lambda: Vote.objects.count()) == 0
    # Nothing of the owner's battle reached the intruder.
    assert not any(f["type"] in ("token", "turn", "state") for f in intruder.frames)
    await owner.close()
    await intruder.close()


@pytest.mark.parametrize(
    "message, code",
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "unknown_type"),
        (json.dumps({"type": "launch"}), "unknown_type"),
        (json.dumps({"type": "start", "prompt": "hi", "model_slug": "x"}), "unknown_fields"),
        (json.dumps({"type": "start", "prompt": ""}), "empty_prompt"),
        (json.dumps({"type": "start", "prompt": 42}), "invalid_prompt"),
        (json.dumps({"type": "start", "prompt": "x" * 5000}), "prompt_too_long"),
        (json.dumps({"type": "start", "prompt": "hi", "mode": "god"}), "invalid_mode"),
        (json.dumps({"type": "start", "prompt": "hi", "mode": "named", "models": ["alpha-model"]}), "invalid_models"),
        (json.dumps({"type": "start", "prompt": "hi", "mode": "named", "models": ["alpha-model", "nope"]}), "unknown_model"),
        (json.dumps({"type": "vote", "choice": "A"}), "not_found"),
        (json.dumps({"type": "vote", "choice": "left!"}), "invalid_choice"),
        (json.dumps({"type": "continue", "prompt": "hi"}), "not_found"),
        (json.dumps({"type": "resume", "battle": {"$gt": ""}}), "not_found"),
        (json.dumps({"type": "start", "prompt": "y" * 70000}), "message_too_large"),
    ],
)
async def test_it_refuses_bad_messages_clearly_and_changes_nothing(echo_pair, message, code):
    voter = await Voter.open()
    await voter.send(message)
    error = await voter.error()
    assert error["code"] == code
    assert 400 <= error["status"] < 500
    assert error["message"]
    assert await db(lambda: (Battle.objects.count(), Turn.objects.count(), Vote.objects.count())) == (0, 0, 0)
    await voter.close()


async def test_it_shows_a_failed_side_and_refuses_to_count_its_vote(standin, inprocess):
    await db(lambda: [standin_entry(standin, "good", "echo"), standin_entry(standin, "broken", "fail")])
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "hi"})
    ended = await voter.until_finished()
    failed = [f for f in ended.values() if f["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"]
    assert "broken" not in failed[0]["error"].lower() and "127.0.0.1" not in failed[0]["error"]
    await voter.send({"type": "vote", "choice": "A"})
    assert (await voter.error())["code"] == "side_failed"
    assert await db(lambda: Vote.objects.count()) == 0
    await voter.close()


async def test_it_flags_a_vote_whose_answer_names_its_model(standin, inprocess):
    await db(lambda: [
        standin_entry(standin, "leaky", "leak", display_name="Leaky", organization="Leakcorp"),
        standin_entry(standin, "quiet", "echo", display_name="Quiet", organization="Hush"),
    ])
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "who are you?"})
    await voter.until_finished()
    await voter.send({"type": "vote", "choice": "B"})
    await voter.until(lambda f: f["type"] == "voted")
    assert await db(lambda: Vote.objects.get().identity_leak) is True
    await voter.close()


async def test_it_answers_rate_limited_battles_with_429(echo_pair, settings):
    settings.ARENA_RATE_LIMIT_BATTLES = 2
    voter = await Voter.open()
    for _ in range(2):
        await voter.send({"type": "start", "prompt": "hi"})
        await voter.until(lambda f: f["type"] == "started")
    await voter.send({"type": "start", "prompt": "hi"})
    error = await voter.error()
    assert error["status"] == 429 and "wait" in error["message"].lower()
    assert await db(lambda: Battle.objects.count()) == 2
    await voter.close()


async def test_it_names_models_in_named_mode_and_keeps_the_vote_marked_named(echo_pair):
    voter = await Voter.open()
    await voter.send({"type": "start", "mode": "named", "prompt": "hi", "models": ["beta-model", "alpha-model"]})
    started = await voter.until(lambda f: f["type"] == "started")
    assert started["models"] == {"A": "Beta Model", "B": "Alpha Model"}
    await voter.until_finished()
    await voter.send({"type": "vote", "choice": "B"})
    await voter.until(lambda f: f["type"] == "voted")
    vote = await db(lambda: Vote.objects.select_related("battle").get())
    assert vote.battle.mode == "named" and vote.choice == "right"
    await voter.close()


async def test_it_chats_directly_with_one_model_and_has_nothing_to_vote(echo_pair):
    voter = await Voter.open()
    await voter.send({"type": "start", "mode": "direct", "prompt": "hi", "models": ["alpha-model"]})
    await voter.until_finished(sides=("A",))
    await voter.send({"type": "vote", "choice": "A"})
    assert (await voter.error())["code"] == "no_vote_in_direct"
    await voter.close()


async def test_it_keeps_preview_models_out_of_named_choice(standin, inprocess):
    await db(lambda: [
        standin_entry(standin, "public-one", "echo"),
        standin_entry(standin, "secret-one", "echo", visibility="preview", codename="kestrel"),
    ])
    voter = await Voter.open()
    await voter.send({"type": "start", "mode": "named", "prompt": "hi", "models": ["public-one", "secret-one"]})
    assert (await voter.error())["code"] == "unknown_model"
    await voter.close()


async def test_it_reveals_a_preview_model_by_its_codename_only(standin, inprocess):
    await db(lambda: [
        standin_entry(standin, "public-one", "echo", display_name="Public One"),
        standin_entry(standin, "secret-one", "echo", display_name="Secret Real Name", visibility="preview", codename="kestrel"),
    ])
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "hi"})
    await voter.until_finished()
    await voter.send({"type": "vote", "choice": "tie"})
    voted = await voter.until(lambda f: f["type"] == "voted")
    assert sorted(voted["models"].values()) == ["Public One", "kestrel"]
    assert "Secret Real Name" not in "\n".join(voter.raw)
    await voter.close()
