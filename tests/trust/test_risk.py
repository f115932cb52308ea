"""Each risk detector on simulated voters playing through the real page, proof of work and websocket path
against stand-in models that answer in recognisable styles; and the exclusion: reversible, and it changes
the snapshot."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.contrib.auth.models import User

from arena.ratelimit import ip_hash
from leaderboard.snapshots import leaderboard_snapshot_create
from trust.models import VoterRisk
from trust.simulate import AlwaysAVoter, HonestVoter, RandomVoter, RiggingVoter, varied_prompts, voters_play

from .conftest import STYLES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.slow]

# The tests run the reading clock four times faster than life: the simulated readers read 80 words a second,
# and the detector's "faster than the answers can be read" is four times its 30 words a second, so the readers
# stay slower than that line, as the honest readers of the benchmark (20 words a second) are slower than 30.
SPEEDUP = 4.0
READ = 20.0 * SPEEDUP


@pytest.fixture(autouse=True)
def faster_clock(monkeypatch):
    from trust import risk

    monkeypatch.setattr(risk, "FAST_READ_CHARS_PER_SECOND", risk.FAST_READ_CHARS_PER_SECOND * SPEEDUP)


def honest(n: int, battles: int) -> list[HonestVoter]:
    return [HonestVoter(preference=STYLES, prompts=varied_prompts(100 + i, battles), client=f"10.1.0.{i}",
                        seed=100 + i, reading_wps=READ) for i in range(n)]


def records() -> dict[tuple[str, str], VoterRisk]:
    return {(r.kind, r.key): r for r in VoterRisk.objects.all()}


def detectors(record: VoterRisk | None) -> set[str]:
    from django.conf import settings

    if record is None:
        return set()
    return {r["detector"] for r in record.reasons if r["evidence"] >= settings.ARENA_TRUST_RISK_THRESHOLD}


async def test_each_detector_flags_its_voter_and_no_honest_voter(styled_models, settings):
    settings.ARENA_TRUST_MAX_VOTES_PER_HOUR = 40
    settings.ARENA_RATE_LIMIT_BATTLES = settings.ARENA_RATE_LIMIT_VOTES = 0
    fair = honest(8, 14)
    always_a = AlwaysAVoter(prompts=varied_prompts(1, 16), client="10.2.0.1", seed=1, reading_wps=READ)
    # About half of a random voter's votes are decisive; 80 battles give some 40, enough that its likelihood
    # stands out (z about 4.5) whichever pairs the arena happens to draw. With 40 battles it sometimes did not.
    # It votes at once, as a bot would (so "fast votes" flags it too; the likelihood is asserted on its own).
    random_voter = RandomVoter(prompts=varied_prompts(2, 80), client="10.2.0.2", seed=2)
    # Two rigging sessions from one address: the address is flagged as well as each session.
    riggers = [RiggingVoter(target="fern", prompts=varied_prompts(3 + i, 30), client="10.2.0.3", seed=3 + i,
                            reading_wps=READ) for i in range(2)]
    bot = AlwaysAVoter(prompts=["same question every time"], client="10.2.0.9", seed=9)  # hasty, one prompt
    played = await voters_play(fair + [always_a, random_voter, bot] + riggers,
                               lambda v: 44 if v is bot else len(v.prompts), concurrency=16)
    assert all(not v.refused for v in played), [v.refused for v in played if v.refused]

    snapshot = await sync_to_async(leaderboard_snapshot_create)()
    found = await sync_to_async(records)()
    by_session = {key: rec for (kind, key), rec in found.items() if kind == "session"}

    def flagged(voter) -> set[str]:
        return detectors(by_session.get(voter.session_key))

    assert "position_bias" in flagged(always_a), by_session.get(always_a.session_key)
    assert "unlikely_votes" in flagged(random_voter), by_session.get(random_voter.session_key)
    for rigger in riggers:
        assert {"favours_model", "abandoned"} & flagged(rigger), by_session.get(rigger.session_key)
    assert {"fast_votes", "votes_per_hour", "position_bias"} <= flagged(bot)
    # Repeating one prompt is listed beside the others, never enough on its own.
    assert "repeated_prompts" in {r["detector"] for r in by_session[bot.session_key].reasons}
    address = [rec for (kind, _), rec in found.items() if kind == "address" and rec.votes == sum(
        len(r.votes) for r in riggers)]
    assert address and address[0].state == "flagged" and address[0].excluded
    # The rigging reason names the target it favours.
    target_id = styled_models["fern"].pk
    assert any(r["detector"] == "favours_model" and f"#{target_id}" in r["text"]
               for rigger in riggers for r in by_session[rigger.session_key].reasons)
    wrongly = [v.session_key for v in fair if v.session_key in by_session]
    assert wrongly == [], [by_session[k].reasons for k in wrongly]
    bad_votes = sum(len(v.votes) for v in [always_a, random_voter, bot] + riggers)
    assert snapshot.payload["trust"]["excluded_votes"] == bad_votes
    assert snapshot.votes_used == sum(len(v.votes) for v in fair)


async def test_excluding_a_rigging_voter_is_reversible_and_changes_the_snapshot(styled_models, settings, client):
    settings.ARENA_RATE_LIMIT_BATTLES = settings.ARENA_RATE_LIMIT_VOTES = 0
    fair = honest(6, 12)
    rigger = RiggingVoter(target="birch", prompts=varied_prompts(7, 36), client="10.3.0.1", seed=7, reading_wps=READ)
    await voters_play(fair + [rigger], lambda v: len(v.prompts), concurrency=8)
    target = styled_models["birch"].pk
    honest_votes = sum(len(v.votes) for v in fair)

    def overall(snapshot) -> dict[int, float]:
        return {r["model_id"]: r["score"] for r in snapshot.payload["categories"]["overall"]["models"]}

    first = await sync_to_async(leaderboard_snapshot_create)()
    assert first.votes_used == honest_votes, await sync_to_async(lambda: [
        (r.kind, r.key == rigger.session_key, r.reasons) for r in VoterRisk.objects.all()])()
    note = first.payload["trust"]
    assert note["excluded_votes"] == len(rigger.votes) > 0 and note["flagged_sessions"] >= 1
    shift = {s["model_id"]: s for s in note["shift"]}
    assert shift[target]["delta"] > 0  # the rigged votes would lift the target
    assert shift[target]["with_flagged"] == pytest.approx(overall(first)[target] + shift[target]["delta"])

    # The public page says how many votes were left out and how far they would move the scores; no voter named.
    public = (await sync_to_async(client.get)("/leaderboard/")).content.decode()
    said = f"{note['excluded_votes']} votes from voters flagged as"
    assert said in public and "would move" in public and rigger.session_key not in public

    # The rigger is alone at its address, so the address is flagged too; staff review both records.
    record = await sync_to_async(VoterRisk.objects.get)(kind="session", key=rigger.session_key)
    at_address = await sync_to_async(VoterRisk.objects.get)(kind="address", key=ip_hash(rigger.client))
    staff = await sync_to_async(User.objects.create_user)("ops", password="pw", is_staff=True, is_superuser=True)
    await sync_to_async(client.force_login)(staff)
    page = await sync_to_async(client.get)("/admin/trust/voterrisk/")
    assert page.status_code == 200 and "flagged vote" in page.content.decode()
    assert "outside the interval" in page.content.decode() or shift[target]["delta"] < (
        shift[target]["upper"] - shift[target]["score"])

    async def review(action: str) -> None:
        answer = await sync_to_async(client.post)(
            "/admin/trust/voterrisk/", {"action": action, "_selected_action": [record.pk, at_address.pk]})
        assert answer.status_code == 302

    await review("clear")
    cleared = await sync_to_async(leaderboard_snapshot_create)()
    assert cleared is not None and cleared.votes_used == honest_votes + len(rigger.votes)
    assert cleared.payload["trust"]["excluded_votes"] == 0
    assert "voters flagged as" not in (await sync_to_async(client.get)("/leaderboard/")).content.decode()
    assert overall(cleared)[target] == pytest.approx(shift[target]["with_flagged"], abs=1e-6)
    record = await sync_to_async(VoterRisk.objects.get)(pk=record.pk)
    assert record.state == "cleared" and record.reviewed_by == "ops"
    assert record.score >= settings.ARENA_TRUST_RISK_THRESHOLD  # still scored, and counted

    # Clearing only the session leaves the address's exclusion in force: either record is enough to leave out.
    await review("confirm")
    confirmed = await sync_to_async(leaderboard_snapshot_create)()
    assert confirmed.votes_used == honest_votes
    assert overall(confirmed)[target] == pytest.approx(overall(first)[target], abs=1e-6)
