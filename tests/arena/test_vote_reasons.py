"""Reasons with the vote: optional tags for each answer, sent over the battle socket after the vote."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from arena.models import Vote, VoteFact
from arena.services import BattleError, vote_reasons_record

from tests.voters import Voter, standin_entry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.fixture
def echo_pair(standin, inprocess):
    return [standin_entry(standin, f"echo-{i}", "echo") for i in range(2)]


@database_sync_to_async
def db(fn):
    return fn()


async def battle_played(voter: Voter) -> str:
    await voter.send({"type": "start", "prompt": "Why is the sky blue?"})
    started = await voter.until(lambda f: f["type"] == "started")
    await voter.until_finished()
    return started["battle"]


async def test_it_stores_reasons_after_the_vote_and_a_second_set_replaces_the_first(echo_pair):
    voter = await Voter.open()
    battle = await battle_played(voter)
    await voter.send({"type": "reasons", "A": ["helpful"], "B": []})
    assert (await voter.error())["code"] == "not_voted", "no reasons before the vote"
    assert await db(lambda: Vote.objects.count()) == 0
    await voter.send({"type": "vote", "choice": "A"})
    await voter.until(lambda f: f["type"] == "voted")
    fact_before = await db(lambda: list(VoteFact.objects.values()))
    await voter.send({"type": "reasons", "A": ["clear", "correct", "clear"], "B": ["too_long"]})
    saved = await voter.until(lambda f: f["type"] in ("reasons", "error"))
    assert saved == {"type": "reasons", "A": ["correct", "clear"], "B": ["too_long"]}
    vote = await db(lambda: Vote.objects.get(battle__public_id=battle))
    assert vote.reasons == {"left": ["correct", "clear"], "right": ["too_long"]} and vote.choice == "left"
    await voter.send({"type": "reasons", "B": ["wrong"]})
    assert (await voter.until(lambda f: f["type"] in ("reasons", "error")))["B"] == ["wrong"]
    vote = await db(lambda: Vote.objects.get(battle__public_id=battle))
    assert vote.reasons == {"right": ["wrong"]} and vote.choice == "left"
    assert await db(lambda: list(VoteFact.objects.values())) == fact_before, "reasons never touch the vote's facts"
    await voter.close()


@pytest.mark.parametrize("message, code", [
    ({"type": "reasons", "A": ["brilliant"]}, "unknown_reason"),
    ({"type": "reasons", "A": "helpful"}, "invalid_reasons"),
    ({"type": "reasons", "A": [["helpful"]]}, "invalid_reasons"),
    ({"type": "reasons", "C": ["helpful"]}, "unknown_fields"),
    ({"type": "reasons", "A": ["helpful"], "choice": "B"}, "unknown_fields"),
])
async def test_it_refuses_unknown_or_malformed_reasons_whole(echo_pair, message, code):
    voter = await Voter.open()
    await battle_played(voter)
    await voter.send({"type": "vote", "choice": "B"})
    await voter.until(lambda f: f["type"] == "voted")
    await voter.send({"type": "reasons", "A": ["helpful"]})
    await voter.until(lambda f: f["type"] == "reasons")
    await voter.send(message)
    error = await voter.error()
    assert error["code"] == code and 400 <= error["status"] < 500 and error["message"]
    vote = await db(lambda: Vote.objects.get())
    assert vote.reasons == {"left": ["helpful"]} and vote.choice == "right", "nothing half-written"
    await voter.close()


async def test_only_the_battles_owner_gives_its_reasons(echo_pair):
    owner = await Voter.open()
    battle = await battle_played(owner)
    await owner.send({"type": "vote", "choice": "tie"})
    await owner.until(lambda f: f["type"] == "voted")
    intruder = await Voter.open()
    await intruder.send({"type": "resume", "battle": battle})
    assert (await intruder.error())["code"] == "not_found"
    await intruder.send({"type": "reasons", "A": ["unsafe"]})
    assert (await intruder.error())["code"] == "not_found"

    def elsewhere():
        with pytest.raises(BattleError) as refused:
            vote_reasons_record(public_id=battle, session_key=intruder.session_key, reasons={"A": ["unsafe"]})
        return refused.value

    refused = await db(elsewhere)
    assert refused.code == "not_found" and refused.status == 404
    assert await db(lambda: Vote.objects.get().reasons) is None
    await owner.close()
    await intruder.close()
