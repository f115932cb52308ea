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
from leaderboard.snapshots import leaderboard_latest, leaderboard_snapshot_create, leaderboard_snapshots_create
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
async def test_simulated_votes_never_reach_the_public_leaderboard_or_a_default_export(standin, inprocess, client) -> None:
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

    # Staff see them on a board of their own, fitted by the same scheduled job; nobody else finds that board.
    await database_sync_to_async(leaderboard_snapshots_create)()
    board = await database_sync_to_async(leaderboard_latest)("simulated")
    assert board.votes_used == 3 and "trust" not in board.payload
    rated = {r["model_id"] for r in board.payload["categories"]["overall"]["models"]}
    assert rated == {short.pk, long.pk}
    assert (await database_sync_to_async(leaderboard_latest)()).votes_used == 0, "the public board is apart"

    def pages(user) -> dict[str, int]:
        if user is not None:
            client.force_login(user)
        urls = ["/leaderboard/?board=simulated", "/leaderboard/data/?board=simulated",
                "/leaderboard/head-to-head/?board=simulated", "/leaderboard/rankings.csv?board=simulated"]
        return {url: client.get(url).status_code for url in urls}

    from django.contrib.auth.models import User

    assert set((await database_sync_to_async(pages)(None)).values()) == {404}
    someone = await database_sync_to_async(User.objects.create_user)("someone", password="pw")
    assert set((await database_sync_to_async(pages)(someone)).values()) == {404}
    staff = await database_sync_to_async(User.objects.create_user)("ops", password="pw", is_staff=True)
    assert set((await database_sync_to_async(pages)(staff)).values()) == {200}
    html = (await database_sync_to_async(client.get)("/leaderboard/?board=simulated")).content.decode()
    assert "simulated voters" in html and "Short Model" in html and "Long Model" in html
    public = (await database_sync_to_async(client.get)("/leaderboard/")).content.decode()
    assert "Short Model" not in public and "?board=simulated" in public  # a staff member's way there

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
