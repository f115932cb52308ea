"""Simulated voters play whole battles over the real websocket; their votes are marked and kept off the public
leaderboard and out of default exports. Generation on in-process threads against the stand-in endpoint."""

from __future__ import annotations

import json
import random

import pytest
from channels.db import database_sync_to_async

from arena.models import SimulatedSession, Vote
from arena.simulated import LengthInstructionVoter, simulated_battle_play, simulated_session_create
from leaderboard.exports import battle_records, exported_votes, preference_pairs
from leaderboard.snapshots import leaderboard_snapshot_create
from tests.voters import Voter, standin_entry


def test_the_length_voter_prefers_the_answer_that_obeys_then_the_shorter() -> None:
    voter = LengthInstructionVoter()
    prompt = "What is gravity? Answer in at most 5 words."

    assert voter.choose(prompt, "It pulls things down.", "Gravity is the force that pulls every mass.") == "A"
    assert voter.choose(prompt, "one two three four five six", "one two three") == "B"
    assert voter.choose(prompt, "a b c d e f g", "a b c d e f g h") == "A"  # neither obeys: the shorter
    assert voter.choose(prompt, "a b", "c d") == "tie"
    assert voter.choose(prompt, "", "a b") == "B"  # an empty answer never obeys
    with pytest.raises(ValueError, match="length instruction"):
        voter.choose("Tell me a story.", "a", "b")
    made = voter.prompt(random.Random(3))
    assert "Answer in at most" in made and made.endswith("words.")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_simulated_votes_never_reach_the_public_leaderboard_or_a_default_export(standin, inprocess) -> None:
    short, long = await database_sync_to_async(lambda: (
        standin_entry(standin, "short-model", "echo-4", display_name="Short Model"),
        standin_entry(standin, "long-model", "echo-40", display_name="Long Model"),
    ))()
    voter = LengthInstructionVoter()
    session_key = await database_sync_to_async(simulated_session_create)(voter)
    rng = random.Random(0)

    played = [await simulated_battle_play(voter, session_key, voter.prompt(rng), timeout=60) for _ in range(3)]

    for battle in played:
        short_side = next(side for side, name in battle.models.items() if name == "Short Model")
        assert battle.choice == short_side, "the voter picks the side that obeyed the length instruction"
        assert len(battle.answers["A"].split()) in (4, 40) and len(battle.answers["B"].split()) in (4, 40)
    votes = await database_sync_to_async(lambda: list(Vote.objects.all()))()
    assert len(votes) == 3 and all(v.simulated for v in votes) and {v.session_key for v in votes} == {session_key}
    assert await database_sync_to_async(SimulatedSession.objects.filter(voter=voter.name).count)() == 1

    # Only simulated votes: the public leaderboard has nothing to fit, a default export nothing to write.
    snapshot = await database_sync_to_async(leaderboard_snapshot_create)(force=True)
    assert snapshot.votes_used == 0
    assert await database_sync_to_async(lambda: list(battle_records()))() == []
    asked = await database_sync_to_async(lambda: list(battle_records(exported_votes(simulated=True))))()
    assert len(asked) == 3
    pairs = [json.loads(p) for p in preference_pairs(iter(asked), with_models=True)]
    assert {(p["chosen_model"], p["rejected_model"]) for p in pairs} == {("Short Model", "Long Model")}

    # A person's vote through the same path still counts.
    person = await Voter.open()
    await person.send({"type": "start", "prompt": "Hello"})
    await person.until_finished()
    await person.send({"type": "vote", "choice": "A"})
    await person.until(lambda f: f["type"] == "voted")
    await person.close()
    snapshot = await database_sync_to_async(leaderboard_snapshot_create)()
    assert snapshot.votes_used == 1
    assert len(await database_sync_to_async(lambda: list(battle_records()))()) == 1
    assert await database_sync_to_async(Vote.objects.filter(simulated=False).count)() == 1
