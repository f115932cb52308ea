"""The battle websocket, end to end through Channels on PostgreSQL and the Redis channel layer, with generation
on in-process threads against the stand-in endpoint."""

from __future__ import annotations

import asyncio
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
    # At equal pace (arena.pacing) two answers that both end within one tick come as their turn frames alone.
    assert all(set(f) == {"type", "side", "turn", "attempt", "text", "offset"} for f in tokens)
    for side in "AB":  # each batch says where it starts, so a page that joins late can fit it in
        pieces = [f for f in tokens if f["side"] == side]
        assert [f["offset"] for f in pieces] == [sum(len(p["text"]) for p in pieces[:i]) for i in range(len(pieces))]
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


async def test_it_stops_both_answers_where_they_are_and_keeps_them_votable(standin, inprocess):
    await db(lambda: [standin_entry(standin, f"s{i}", "slow") for i in range(2)])
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "count slowly"})
    await voter.until(lambda f: f["type"] == "token")  # the slow stand-in writes 20 ticks, one every 0.2 s
    await voter.send({"type": "stop"})
    ended = await voter.until_finished()
    for frame in ended.values():
        assert frame["status"] == "done" and frame["stopped"] is True and frame["cut"] is False
        assert frame["text"].count("tick") < 20, "the answer ended early, not at its natural end"
    turns = await db(lambda: list(Turn.objects.all()))
    assert all(t.stop_requested and t.status == "done" for t in turns)
    await voter.send({"type": "stop"})
    assert (await voter.error())["code"] == "not_running", "nothing left to stop"
    await voter.send({"type": "vote", "choice": "bothbad"})
    assert (await voter.until(lambda f: f["type"] in ("voted", "error")))["type"] == "voted"
    await voter.close()


async def test_it_marks_an_answer_cut_by_its_token_limit(standin, inprocess):
    # echo-30 would write 30 words; a limit of 5 tokens cuts it, and the stand-in says finish_reason "length".
    await db(lambda: [
        standin_entry(standin, "short-limit", "echo-30", max_new_tokens=5),
        standin_entry(standin, "roomy", "echo-3", max_new_tokens=64),
    ])
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "go on"})
    started = await voter.until(lambda f: f["type"] == "started")
    ended = await voter.until_finished()
    by_text = {f["text"].count("word"): f for f in ended.values()}
    assert set(by_text) == {5, 3}
    assert by_text[5]["cut"] is True and by_text[3]["cut"] is False
    cut = await db(lambda: {t.side.model.slug: t.cut_by_limit for t in Turn.objects.select_related("side__model")})
    assert cut == {"short-limit": True, "roomy": False}
    # A reloaded page reads the mark from the battle's state.
    other_tab = Voter(voter.session_key)
    assert (await other_tab.communicator.connect())[0]
    await other_tab.send({"type": "resume", "battle": started["battle"]})
    state = await other_tab.until(lambda f: f["type"] == "state")
    assert sorted(s[0]["cut"] for s in state["sides"].values()) == [False, True]
    assert state["models"] is None
    await other_tab.close()
    await voter.close()


async def test_a_failing_model_stops_being_drawn_until_it_answers_again(standin, inprocess, settings):
    from django.utils import timezone

    from models_hub.models import BREAKER_FAILURES, ModelEntry

    settings.ARENA_RATE_LIMIT_BATTLES = 1000
    await db(lambda: [
        standin_entry(standin, "steady-a", "echo"), standin_entry(standin, "steady-b", "echo"),
        standin_entry(standin, "flaky", "fail"),  # the stand-in answers this one HTTP 500
    ])
    voter = await Voter.open()

    async def play() -> set[str]:
        await voter.send({"type": "start", "prompt": "hi"})
        started = await voter.until(lambda f: f["type"] in ("started", "error"))
        assert started["type"] == "started", started
        await voter.until_finished()
        return await db(lambda: set(
            Battle.objects.get(public_id=started["battle"]).sides.values_list("model__slug", flat=True)
        ))

    battles = 0
    while await db(lambda: ModelEntry.objects.get(slug="flaky").failures_in_row) < BREAKER_FAILURES:
        battles += 1
        assert battles <= 40, "the failing model was drawn too rarely to trip its breaker"
        await play()
    flaky = await db(lambda: ModelEntry.objects.get(slug="flaky"))
    assert flaky.breaker_is_open(), "the breaker opened at the third failure in a row"
    for _ in range(8):
        assert "flaky" not in await play(), "a model with an open breaker was drawn"
    # The cool-down passes and the endpoint answers again: the next battle that draws it closes the breaker.
    await db(lambda: ModelEntry.objects.filter(slug="flaky").update(
        breaker_open_until=timezone.now() - timezone.timedelta(seconds=1), remote_model="echo"
    ))
    for _ in range(40):
        if "flaky" in await play():
            break
    else:
        pytest.fail("the model was not drawn again after its cool-down")
    # The job records the outcome just after it publishes the end, and at equal pace the page's last two frames
    # leave together the moment the later side ends: give the job that moment.
    for _ in range(50):
        flaky = await db(lambda: ModelEntry.objects.get(slug="flaky"))
        if flaky.failures_in_row == 0:
            break
        await asyncio.sleep(0.1)
    assert flaky.failures_in_row == 0 and flaky.breaker_open_until is None
    await voter.close()


async def test_the_share_page_shows_a_battle_only_after_its_vote_and_names_only_then(echo_pair):
    from django.test import AsyncClient

    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "Share me"})
    started = await voter.until(lambda f: f["type"] == "started")
    await voter.until_finished()
    client = AsyncClient()
    url = f"/battle/{started['battle']}/"
    before = await client.get(url)
    assert before.status_code == 404, "an unvoted battle has no share page"
    body = before.content.decode()
    for secret in identity_strings(echo_pair) + ["Share me"]:
        assert secret not in body
    await voter.send({"type": "vote", "choice": "B"})
    await voter.until(lambda f: f["type"] == "voted")
    after = await client.get(url)
    assert after.status_code == 200
    body = after.content.decode()
    assert "Share me" in body and "You said: Share me" in body
    assert "Alpha Model" in body and "Beta Model" in body and "B is better" in body
    assert 'data-side="B"' in body and "side winner" in body
    assert (await client.post(url)).status_code == 405, "read-only"
    assert (await client.get("/battle/no-such-battle/")).status_code == 404
    await voter.close()


async def test_it_answers_favicon_ico():
    from django.test import AsyncClient

    response = await AsyncClient().get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00", "an ICO file"


async def test_a_page_that_joins_mid_answer_gets_the_start_and_every_piece_after(standin, inprocess):
    await db(lambda: [standin_entry(standin, f"s{i}", "slow") for i in range(2)])
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "count slowly"})
    started = await voter.until(lambda f: f["type"] == "started")
    await voter.until(lambda f: f["type"] == "token")
    await voter.until(lambda f: f["type"] == "token")
    reloaded = Voter(voter.session_key)  # the same tab after a reload: same session, a new websocket
    assert (await reloaded.communicator.connect())[0]
    await reloaded.send({"type": "resume", "battle": started["battle"]})
    state = await reloaded.until(lambda f: f["type"] == "state")
    held = {side: turns[0]["text"] for side, turns in state["sides"].items()}
    assert any(text.count("tick") >= 1 for text in held.values()), "the start written so far came with the state"
    ended: dict[str, dict] = {}
    while len(ended) < 2:
        frame = await reloaded.until(lambda f: f["type"] in ("token", "turn"))
        if frame["type"] == "turn":
            ended[frame["side"]] = frame
            continue
        text = held[frame["side"]]
        assert frame["offset"] <= len(text), "no piece was lost between the saved start and the first frame"
        held[frame["side"]] = text[: frame["offset"]] + frame["text"] if frame["offset"] + len(frame["text"]) > len(text) else text
    for side, frame in ended.items():
        assert held[side] == frame["text"] == "tick " * 20, "start plus pieces make the whole answer, once each"
    await reloaded.close()
    await voter.close()
