"""Equal pace through the battle websocket (arena.pacing in arena.consumers), on PostgreSQL and Redis, with a fast
and a slow stand-in model of the same answer length: `echo-20` writes "word " x20 at once, `slow` writes "tick "
x20 over about four seconds."""

from __future__ import annotations

import pytest

from tests.voters import Voter, standin_entry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.fixture
def hare_and_tortoise(standin, inprocess):
    return [
        standin_entry(standin, "hare", "echo-20", display_name="Hare", organization="Fastcorp"),
        standin_entry(standin, "tortoise", "slow", display_name="Tortoise", organization="Slowcorp"),
    ]


async def frames_until_both_end(voter: Voter) -> list[dict]:
    await voter.until_finished()
    return [f for f in voter.frames if f["type"] in ("token", "turn")]


async def test_an_anonymous_battle_shows_the_fast_side_no_further_than_the_slow_one(hare_and_tortoise):
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "race"})
    started = await voter.until(lambda f: f["type"] == "started")
    frames = await frames_until_both_end(voter)
    tokens, ends = frames[:-2], frames[-2:]
    assert [f["type"] for f in ends] == ["turn", "turn"], "both answers end together, after every piece"
    assert {f["text"] for f in ends} == {"word " * 20, "tick " * 20}
    assert len(tokens) >= 4, "the fast answer, written at once, was shown over several ticks"
    for a, b in zip(tokens[::2], tokens[1::2]):  # each tick sends both sides, A then B, the same share
        assert (a["side"], b["side"]) == ("A", "B")
        assert a["offset"] == b["offset"] and len(a["text"]) == len(b["text"])
    assert len(tokens) % 2 == 0
    before_vote = "\n".join(voter.raw)
    assert "Hare" not in before_vote and "Tortoise" not in before_vote
    await voter.send({"type": "vote", "choice": "A"})
    voted = await voter.until(lambda f: f["type"] in ("voted", "error"))
    assert voted["type"] == "voted" and started["models"] is None
    await voter.close()


async def test_a_named_battle_streams_each_side_as_it_is_written(hare_and_tortoise):
    voter = await Voter.open()
    await voter.send({"type": "start", "mode": "named", "prompt": "race", "models": ["hare", "tortoise"]})
    await voter.until(lambda f: f["type"] == "started")
    frames = await frames_until_both_end(voter)
    hare_end = next(i for i, f in enumerate(frames) if f["type"] == "turn" and f["side"] == "A")
    assert any(f["type"] == "token" and f["side"] == "B" for f in frames[hare_end:]), "the fast side ended first"
    await voter.close()


async def test_a_page_that_reloads_mid_race_gets_both_sides_at_the_common_count(hare_and_tortoise):
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "race"})
    started = await voter.until(lambda f: f["type"] == "started")
    await voter.until(lambda f: f["type"] == "token" and f["side"] == "B")
    reloaded = Voter(voter.session_key)
    assert (await reloaded.communicator.connect())[0]
    await reloaded.send({"type": "resume", "battle": started["battle"]})
    state = await reloaded.until(lambda f: f["type"] == "state")
    last = {side: turns[-1] for side, turns in state["sides"].items()}
    assert {t["status"] for t in last.values()} <= {"queued", "running"}, "the finished fast side reads as writing"
    assert len(last["A"]["text"]) == len(last["B"]["text"]) < 100
    ended = await reloaded.until_finished()
    assert {f["text"] for f in ended.values()} == {"word " * 20, "tick " * 20}
    await reloaded.close()
    await voter.close()
