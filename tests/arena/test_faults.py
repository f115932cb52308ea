"""Break one real part at a time and check that voters are told clearly and nothing is lost or half-written."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from arena.models import Battle, Turn, Vote
from tests.browser import SCREENSHOTS, Page

from tests.voters import Voter, standin_entry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@database_sync_to_async
def db(fn):
    return fn()


@pytest.mark.asyncio
@pytest.mark.parametrize("behaviour", ["hang", "garbage", "fail"])
async def test_it_fails_a_turn_whose_endpoint_hangs_or_answers_garbage_with_a_reason(standin, inprocess, settings, behaviour):
    # Short only where the endpoint hangs, and still five times what a healthy stand-in stream needs between
    # pieces on a loaded machine: the healthy side shares the setting.
    settings.ARENA_OPENAI_READ_TIMEOUT = 5.0 if behaviour == "hang" else 30.0
    await db(lambda: [standin_entry(standin, "fine", "echo"), standin_entry(standin, "broken", behaviour)])
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "hello"})
    ended = await voter.until_finished(timeout=60)
    statuses = {f["status"] for f in ended.values()}
    assert statuses == {"done", "failed"}
    failed = next(f for f in ended.values() if f["status"] == "failed")
    assert failed["error"] and "127.0.0.1" not in failed["error"] and "broken" not in failed["error"]
    turn = await db(lambda: Turn.objects.get(status="failed"))
    assert turn.error == failed["error"] and turn.finished_at is not None
    await voter.close()


def test_healthz_names_a_stopped_database(client, postgres_cluster):
    connection.close()
    postgres_cluster.stop()
    try:
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["failing"] == ["database"]
    finally:
        postgres_cluster.start()
        connection.close()
    assert client.get("/healthz").status_code == 200


@pytest.mark.asyncio
async def test_it_refuses_battles_clearly_while_postgres_is_down_and_serves_again_after(standin, inprocess, postgres_cluster):
    await db(lambda: [standin_entry(standin, "one", "echo"), standin_entry(standin, "two", "echo")])
    voter = await Voter.open()
    postgres_cluster.stop()
    try:
        await voter.send({"type": "start", "prompt": "are you there?"})
        error = await voter.error()
        assert error["status"] == 503 and "briefly unavailable" in error["message"]
    finally:
        postgres_cluster.start()
    await voter.send({"type": "start", "prompt": "are you there?"})
    await voter.until_finished()
    assert await db(lambda: (Battle.objects.count(), Turn.objects.count())) == (1, 2)
    await voter.close()


def test_an_open_battle_survives_a_redis_restart_and_new_ones_work_after(chromium, arena, standin, redis_server):
    standin_entry(standin, "steady-a", "slow")
    standin_entry(standin, "steady-b", "slow")
    tab = Page(chromium, arena.url)
    tab.ask("Keep going")
    tab.page.wait_for_function("() => document.querySelectorAll('.bubble.model.streaming').length === 2")
    redis_server.stop()
    try:
        tab.page.wait_for_function("() => document.querySelector('#notice').textContent.includes('Connection lost')")
        assert tab.page.is_disabled("#send"), "nothing can be sent while the connection is down"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.page.screenshot(path=str(SCREENSHOTS / "battle-redis-down.png"))
    finally:
        redis_server.start()
    # The page reconnects, resumes its battle and shows the answers that were saved meanwhile.
    tab.wait_votable(timeout=60_000)
    assert tab.page.locator(".bubble.model:not(.streaming)").count() == 2
    tab.page.click(".vote[data-vote='tie']")
    tab.page.wait_for_function("() => document.querySelector('[data-name=A]').textContent.length > 0")
    assert Vote.objects.get().choice == "tie"
    tab.ask("A new round after the restart")
    tab.wait_votable(timeout=60_000)
    assert Battle.objects.count() == 2
    tab.close()


def test_a_snapshot_job_killed_while_writing_leaves_the_previous_snapshot_shown(client):
    import os
    import signal
    import subprocess
    import sys
    import time

    import psycopg

    from leaderboard.snapshots import leaderboard_snapshot_create
    from arena.models import Side
    from leaderboard.models import LeaderboardSnapshot
    from models_hub.models import ModelEntry
    from tests.workers import ROOT, test_database_url

    models = [ModelEntry.objects.create(slug=f"m{i}", display_name=f"Model {i}") for i in range(3)]

    def vote(n: int) -> None:
        for i in range(n):
            battle = Battle.objects.create(session_key="s")
            for position, entry in (("left", models[i % 3]), ("right", models[(i + 1) % 3])):
                side = Side.objects.create(battle=battle, position=position, model=entry)
                Turn.objects.create(side=side, index=0, prompt="p", response="an answer", status="done")
            Vote.objects.create(battle=battle, choice=["left", "right", "tie"][i % 3], session_key="s")

    vote(30)
    shown = leaderboard_snapshot_create()
    vote(30)
    # Hold the snapshot table so the job blocks inside its transaction, half-way through writing.
    url = test_database_url().replace("postgres://", "postgresql://")
    blocker = psycopg.connect(url, autocommit=False)
    watcher = psycopg.connect(url, autocommit=True)  # its own statements, so each poll reads fresh activity
    # EXCLUSIVE lets the job read the table but not insert into it.
    blocker.execute(f"LOCK TABLE {LeaderboardSnapshot._meta.db_table} IN EXCLUSIVE MODE")
    job = subprocess.Popen(
        [sys.executable, "manage.py", "compute_leaderboard", "--quiet"], cwd=ROOT,
        env={**os.environ, "DATABASE_URL": test_database_url()},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO%'"
            ).fetchone()[0]
            if waiting:
                break
            assert job.poll() is None, job.stdout.read().decode()
            time.sleep(0.1)
        else:
            job.kill()
            raise AssertionError(f"the snapshot job never reached its write: {job.communicate()[0][-2000:]!r}")
        job.send_signal(signal.SIGKILL)
        job.wait(10)
    finally:
        blocker.rollback()
        blocker.close()
        watcher.close()
    assert list(LeaderboardSnapshot.objects.values_list("pk", flat=True)) == [shown.pk]
    page = client.get("/leaderboard/").content.decode()
    assert f"{shown.votes_used} votes" in page
    # The killed job left no lock behind: the next one stores the new votes.
    fresh = leaderboard_snapshot_create()
    assert fresh is not None and fresh.votes_used == 60
