"""Break one real part at a time and check that voters are told clearly and nothing is lost or half-written."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from arena.models import Battle, Turn, Vote
from tests.browser import SCREENSHOTS, Page

from tests.voters import Voter, standin_entry
from tests.workers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@database_sync_to_async
def db(fn):
    return fn()


@pytest.fixture
def postgres_restarted(postgres_cluster):
    """The test cluster, for a test that stops and starts it: afterwards the test thread's own connection (broken
    by the restart) and this process's connection pool (its reconnects backed off) are closed, so the database
    teardown connects at once."""
    yield postgres_cluster
    connection.close()
    connection.close_pool()


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
    from arena.selectors import SIDE_FAILED

    assert failed["error"] == SIDE_FAILED, "the voter reads one text whatever failed"
    assert turn.error and turn.error != SIDE_FAILED and turn.finished_at is not None
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
async def test_it_refuses_battles_clearly_while_postgres_is_down_and_serves_again_after(standin, inprocess, postgres_restarted):
    postgres_cluster = postgres_restarted
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


# ---------------------------------------------------------------------------------------------------------------
# What a failed side tells the voter, and what its retry does to the ratings.

@pytest.mark.asyncio
async def test_a_failed_side_reads_the_same_whatever_failed_and_a_retried_battle_is_not_rated(standin, inprocess, tmp_path):
    """Tried: one side a local checkpoint whose files vanished, the other an endpoint answering HTTP 500. Before,
    the voter read "files are missing" for one and "HTTP 500" for the other, a hint at what each model is; now
    both read the same, the stored reasons (for operators) still differ. Then the endpoint is mended, its side
    retried and the battle voted on: the vote is taken but the leaderboard leaves the battle out."""
    from arena.selectors import SIDE_FAILED
    from leaderboard.snapshots import leaderboard_battles
    from models_hub.models import ModelEntry

    checkpoint = tmp_path / "vanished"

    def models():
        checkpoint.mkdir()
        (checkpoint / "config.json").write_text("{}")
        local = ModelEntry.objects.create(slug="local-gone", display_name="Local Gone", checkpoint_path=str(checkpoint))
        (checkpoint / "config.json").unlink()
        checkpoint.rmdir()
        return local, standin_entry(standin, "endpoint-500", "fail")

    local, endpoint = await db(models)
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "hello"})
    ended = await voter.until_finished(timeout=90)
    assert {f["status"] for f in ended.values()} == {"failed"}
    assert {f["error"] for f in ended.values()} == {SIDE_FAILED}
    stored = await db(lambda: sorted(Turn.objects.values_list("error", flat=True)))
    assert len(set(stored)) == 2 and SIDE_FAILED not in stored, "operators still see what went wrong"
    state = await db(lambda: __import__("arena.selectors", fromlist=["battle_state"]).battle_state(Battle.objects.get()))
    assert {t["error"] for turns in state["sides"].values() for t in turns} == {SIDE_FAILED}

    def mend():
        local_side = Battle.objects.get().sides.get(model=local).position
        ModelEntry.objects.filter(pk=local.pk).update(provider="openai", base_url=standin.base_url, remote_model="echo")
        ModelEntry.objects.filter(pk=endpoint.pk).update(remote_model="echo")
        return local_side

    await db(mend)
    await voter.send({"type": "regenerate"})
    ended = await voter.until_finished(timeout=60)
    assert {f["status"] for f in ended.values()} == {"done"}
    await voter.send({"type": "vote", "choice": "A"})
    voted = await voter.until(lambda f: f["type"] in ("voted", "error"))
    assert voted["type"] == "voted"
    battle = await db(lambda: Battle.objects.get())
    assert battle.retried_failure
    assert not await db(lambda: leaderboard_battles().filter(pk=battle.pk).exists())
    await voter.close()


# ---------------------------------------------------------------------------------------------------------------
# Redis restarts with real Celery workers and a real beat.

def _celery_beat(tmp_path, env: dict):
    import os
    import subprocess
    import sys

    from tests.workers import ROOT, test_database_url

    log = open(tmp_path / "beat.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
         "-s", str(tmp_path / "celerybeat-schedule")],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": test_database_url(), "ARENA_INPROCESS_WORKERS": "0", **env},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return process, log


@pytest.mark.asyncio
async def test_jobs_a_restarted_redis_lost_end_failed_within_seconds_and_the_voter_is_told(
    standin, redis_server, settings, tmp_path
):
    """Tried: one Celery worker (one job at a time) with 8 turns queued behind a slow one, then Redis restarted
    (no persistence, as in the test stack) and down for 3 s while the slow one streams, with celery beat
    scheduling the reaper every second on a second worker. Before, the lost turns stayed "queued" for the task
    time limit plus a minute (about 11 minutes by default) and the socket closed with 1011; now the reaper, run by
    beat for real, fails every lost turn within seconds, the voter's open socket gets the failure, and nothing
    stays queued. The generation worker runs on threads, as `make worker` does: before, its log took one
    traceback per token batch it could not publish or keep while Redis was down; now one warning per outage for
    each (the frames, the partial answer) and one line when Redis is back, saying how many writes were lost."""
    import uuid

    from arena.generation import JOB_LOST
    from arena.services import battle_create
    from tests.workers import CeleryWorker

    settings.ARENA_INPROCESS_WORKERS = False
    pool, reap_queue = f"pool-{uuid.uuid4().hex[:8]}", f"reap-{uuid.uuid4().hex[:8]}"
    await db(lambda: [standin_entry(standin, f"slow-{i}", "slow", pool=pool) for i in range(2)])
    generation = CeleryWorker(pool, log=tmp_path / "worker.log", threads=1)
    reaper = CeleryWorker(reap_queue, log=tmp_path / "reaper.log")
    reaper.env.update(ARENA_SNAPSHOT_QUEUE=reap_queue)
    beat, beat_log = _celery_beat(tmp_path, {"ARENA_SNAPSHOT_QUEUE": reap_queue, "ARENA_REAP_SECONDS": "1"})
    voter = None
    try:
        await asyncio.to_thread(generation.start)
        await asyncio.to_thread(reaper.start)
        for i in range(3):
            await db(lambda: battle_create(session_key=f"other-{i}", ip="192.0.2.1", mode="anonymous", prompt="hi"))
        voter = await Voter.open()
        await voter.send({"type": "start", "prompt": "still there?"})
        await voter.until(lambda f: f["type"] == "started")
        await asyncio.to_thread(wait_for, lambda: Turn.objects.filter(status="running").exists())
        assert await db(lambda: Turn.objects.filter(status="queued").count()) >= 6
        await asyncio.to_thread(redis_server.stop)
        await asyncio.sleep(3)
        await asyncio.to_thread(redis_server.start)
        # Nothing stays queued: the lost turns end failed, within seconds rather than minutes.
        await asyncio.to_thread(wait_for, lambda: not Turn.objects.filter(status="queued").exists(), 60)
        statuses = await db(lambda: dict(Turn.objects.values_list("pk", "status")))
        lost = await db(lambda: list(Turn.objects.filter(error=JOB_LOST).values_list("pk", flat=True)))
        assert len(lost) >= 6 and all(statuses[pk] == "failed" for pk in lost)
        # The voter's socket stayed open and was told both its sides failed (as turn frames or a fresh state).
        told: dict[str, str] = {}
        while set(told) != {"A", "B"} or set(told.values()) != {"failed"}:
            frame = await voter.receive(timeout=30)
            if frame["type"] == "turn" and frame["turn"] == 0:
                told[frame["side"]] = frame["status"]
            elif frame["type"] == "state":
                told = {side: turns[0]["status"] for side, turns in frame["sides"].items()}
        await asyncio.to_thread(wait_for, lambda: not Turn.objects.filter(status__in=["queued", "running"]).exists(), 60)
    finally:
        import os
        import signal

        os.killpg(beat.pid, signal.SIGKILL)  # beat has no work to finish; nothing of it may outlive the test
        beat.wait(20)
        beat_log.close()
        generation.stop()
        reaper.stop()
        if voter is not None:
            await voter.close()
    assert "arena.reap_stale_turns" in (tmp_path / "reaper.log").read_text(), "beat ran the reaper"
    # The generation worker's log: one warning per kind of write, no traceback, and the heartbeat (the one write
    # that goes on by itself) says when Redis is back.
    log = (tmp_path / "worker.log").read_text()
    assert log.count("Traceback (most recent call last)") <= 1, log[-4000:]
    assert "could not publish" not in log and "could not keep the partial answer" not in log
    for what in ("publishing battle frames", "keeping partial answers", "the pool heartbeat"):
        assert log.count(f"Redis unreachable for {what}") == 1, what
    assert log.count("Redis reachable again for the pool heartbeat") == 1


def test_a_job_the_broker_refuses_ends_its_turn_failed_at_once(standin, redis_server, settings):
    """Tried: Redis refusing writes (its memory limit reached, no eviction) while a battle starts. The turns'
    jobs cannot be queued: both turns end failed at once, and what a reconnecting page reads says so."""
    import redis

    from arena.selectors import SIDE_FAILED, battle_state
    from arena.services import QUEUE_FAILED, battle_create

    settings.ARENA_INPROCESS_WORKERS = False
    settings.ARENA_RATE_LIMIT_BATTLES = 0
    standin_entry(standin, "refused-a", "echo", pool="refusing")
    standin_entry(standin, "refused-b", "echo", pool="refusing")
    client = redis.Redis(port=redis_server.port)
    client.set("arena:pool:refusing", "a worker", ex=60)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        battle = battle_create(session_key="s", ip="192.0.2.1", mode="anonymous", prompt="hi")
    finally:
        client.config_set("maxmemory", "0")
    turns = list(Turn.objects.filter(side__battle=battle))
    assert [t.status for t in turns] == ["failed", "failed"]
    assert {t.error for t in turns} == {QUEUE_FAILED}
    state = battle_state(battle)
    assert {t["status"] for ts in state["sides"].values() for t in ts} == {"failed"}
    assert {t["error"] for ts in state["sides"].values() for t in ts} == {SIDE_FAILED}


def test_open_sockets_on_daphne_survive_a_redis_restart_and_get_the_saved_answers(standin, arena, redis_server):
    """Tried over daphne: three voters with answers streaming, Redis stopped for two seconds and started again.
    Before, every open socket closed with 1011; now each stays open, and once Redis is back gets the battle as
    saved meanwhile (a state frame), and can vote."""
    import json

    import httpx
    import websockets

    standin_entry(standin, "steady-c", "slow")
    standin_entry(standin, "steady-d", "slow")
    arena.stop()
    arena.env["ARENA_POW"] = "0"  # bare websocket clients, not the page that solves the proof of work
    arena.start()

    async def voter(restarted: asyncio.Event) -> str:
        session = (await asyncio.to_thread(httpx.get, arena.url + "/")).cookies["sessionid"]
        async with websockets.connect(f"ws://127.0.0.1:{arena.port}/ws/battle/", origin=arena.url,
                                      additional_headers={"Cookie": f"sessionid={session}"}) as ws:
            await ws.send(json.dumps({"type": "start", "prompt": "keep going"}))
            status: dict[str, str] = {}
            deadline = asyncio.get_running_loop().time() + 90
            while not (restarted.is_set() and status == {"A": "done", "B": "done"}):
                if asyncio.get_running_loop().time() > deadline:
                    return f"no answers after the restart: {status}"
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 1))
                except TimeoutError:
                    continue
                if frame["type"] == "turn" and frame["turn"] == 0:
                    status[frame["side"]] = frame["status"]
                elif frame["type"] == "state":
                    status = {side: turns[-1]["status"] for side, turns in frame["sides"].items()}
            await ws.send(json.dumps({"type": "vote", "choice": "tie"}))
            while (frame := json.loads(await asyncio.wait_for(ws.recv(), 30)))["type"] not in ("voted", "error"):
                pass
            if frame["type"] != "voted":
                return f"vote: {frame}"
            # And a new round on the same socket.
            await ws.send(json.dumps({"type": "start", "prompt": "again"}))
            while (frame := json.loads(await asyncio.wait_for(ws.recv(), 30)))["type"] not in ("started", "error"):
                pass
            return "voted" if frame["type"] == "started" else f"new round: {frame}"

    async def run() -> list:
        restarted = asyncio.Event()
        voters = [asyncio.create_task(voter(restarted)) for _ in range(3)]
        await asyncio.to_thread(wait_for, lambda: Turn.objects.filter(status="running").count() >= 2)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(redis_server.stop)
        await asyncio.sleep(2)
        await asyncio.to_thread(redis_server.start)
        restarted.set()
        return await asyncio.gather(*voters, return_exceptions=True)

    outcomes = asyncio.run(run())
    assert outcomes == ["voted"] * 3, outcomes
    assert Vote.objects.count() == 3


def test_an_open_battle_survives_a_redis_restart_and_new_ones_work_after(chromium, arena, standin, redis_server):
    standin_entry(standin, "steady-a", "slow")
    standin_entry(standin, "steady-b", "slow")
    tab = Page(chromium, arena.url)
    tab.ask("Keep going")
    tab.page.wait_for_function("() => document.querySelectorAll('.bubble.model.streaming').length === 2")
    redis_server.stop()
    try:
        # The socket stays open through the outage (before, it closed with 1011 and the page had to reconnect).
        tab.page.wait_for_timeout(2000)
        assert "Connection lost" not in tab.page.locator("#notice").text_content()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.page.screenshot(path=str(SCREENSHOTS / "battle-redis-down.png"))
    finally:
        redis_server.start()
    # Once Redis is back the socket gets the battle as saved meanwhile, answers included.
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


def test_daphne_takes_every_open_sockets_vote_once_postgres_is_back(standin, arena, postgres_restarted, chromium):
    """Tried over daphne, whose sockets run their database calls on several threads, each with a pooled
    connection: four voters with finished battles (so several pooled connections are open), PostgreSQL stopped,
    every vote sent, PostgreSQL started again after 16 s, every vote sent again. While it is down each vote is
    refused as briefly unavailable (after the pool's timeout, 4 s here); once it is back, with every pooled
    connection broken by the restart, each is taken at the first try and exactly once. Before the pool was
    closed after such errors, its own reconnect attempts, backed off to 8 s apart by then, had the first votes
    after the restart wait out its timeout and be refused again.

    While it is down, a voter with a valid session also opens a new battle socket, and a new leaderboard socket.
    Before, both were dropped at the handshake without a frame (the session middleware read the database before
    any consumer ran). Now the battle socket is accepted, sent one error frame (service_unavailable, 503) and
    closed with 4503; the leaderboard socket, which needs no database, is served. (1013 was tried first: daphne
    closes with 1011 instead of any code outside 1000 and 3000-4999.) And a battle page whose socket drops during
    the outage shows that message while it reconnects, then, once PostgreSQL is back, clears it by itself and
    takes a prompt (before, the message stayed up until the voter acted)."""
    import json

    import httpx
    import websockets

    import threading

    postgres_cluster = postgres_restarted
    standin_entry(standin, "steady-e", "echo")
    standin_entry(standin, "steady-f", "echo")
    arena.stop()
    arena.env.update({"ARENA_POW": "0", "ARENA_DB_POOL_TIMEOUT": "4"})
    arena.start()
    # The page's battle socket goes through Playwright, so that the test can drop it as a network would.
    tab = Page(chromium, arena.url)
    page_sockets: list = []
    tab.context.route_web_socket("**/ws/battle/", lambda ws: (page_sockets.append(ws), ws.connect_to_server()))
    tab.page.reload()
    tab.page.wait_for_function("() => !document.querySelector('#send').disabled")
    page_turn, page_done = threading.Event(), threading.Event()

    async def answer(ws, kinds: tuple[str, ...]) -> dict:
        while (frame := json.loads(await asyncio.wait_for(ws.recv(), 60)))["type"] not in kinds:
            pass
        return frame

    async def voter(down: asyncio.Event, back: asyncio.Event, refused: list) -> str:
        session = (await asyncio.to_thread(httpx.get, arena.url + "/")).cookies["sessionid"]
        async with websockets.connect(f"ws://127.0.0.1:{arena.port}/ws/battle/", origin=arena.url,
                                      additional_headers={"Cookie": f"sessionid={session}"}) as ws:
            await ws.send(json.dumps({"type": "start", "prompt": "one moment"}))
            done: set[str] = set()
            while done != {"A", "B"}:
                frame = await answer(ws, ("turn", "error"))
                assert frame["type"] == "turn", frame
                if frame["status"] == "done":
                    done.add(frame["side"])
            await down.wait()
            await ws.send(json.dumps({"type": "vote", "choice": "A"}))
            refused.append(await answer(ws, ("voted", "error")))
            await back.wait()
            await ws.send(json.dumps({"type": "vote", "choice": "A"}))
            frame = await answer(ws, ("voted", "error"))
            return "voted" if frame["type"] == "voted" else f"after the restart: {frame}"

    async def newcomer(session: str) -> tuple[list, int | None, dict]:
        """The frames and close code of a battle socket opened now, and what a leaderboard socket answers."""
        frames, code = [], None
        headers = {"Cookie": f"sessionid={session}"}
        async with websockets.connect(f"ws://127.0.0.1:{arena.port}/ws/battle/", origin=arena.url,
                                      additional_headers=headers) as ws:
            try:
                while True:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
        async with websockets.connect(f"ws://127.0.0.1:{arena.port}/ws/leaderboard/", origin=arena.url,
                                      additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "ping"}))
            board = json.loads(await asyncio.wait_for(ws.recv(), 30))
        return frames, code, board

    async def run() -> tuple[list, list, tuple]:
        down, back, refused = asyncio.Event(), asyncio.Event(), []
        voters = [asyncio.create_task(voter(down, back, refused)) for _ in range(4)]
        session = (await asyncio.to_thread(httpx.get, arena.url + "/")).cookies["sessionid"]
        await asyncio.to_thread(wait_for, lambda: Turn.objects.filter(status="done").count() == 8)
        await asyncio.to_thread(postgres_cluster.stop)
        stopped = asyncio.get_running_loop().time()
        try:
            down.set()
            await asyncio.to_thread(wait_for, lambda: len(refused) == 4, 60)
            opened = await newcomer(session)
            page_turn.set()
            await asyncio.to_thread(page_done.wait, 60)
            # Down long enough for the pool's reconnect attempts to back off past its timeout (1, 2, 4, 8 s apart).
            await asyncio.sleep(max(0.0, stopped + 16 - asyncio.get_running_loop().time()))
        finally:
            await asyncio.to_thread(postgres_cluster.start)
        back.set()
        return await asyncio.gather(*voters, return_exceptions=True), refused, opened

    connection.close()
    # On a thread of its own: a module's Playwright (the sync API) may hold an event loop on this one.
    with ThreadPoolExecutor(1) as thread:
        running = thread.submit(asyncio.run, run())
        try:
            assert page_turn.wait(120), running.exception(0) if running.done() else "the outage never came"
            page_sockets[-1].close(code=1006)
            tab.page.wait_for_function(
                "() => document.querySelector('#notice').textContent.includes('briefly unavailable')", timeout=30_000)
        finally:
            page_done.set()
        outcomes, refused, (frames, code, board) = running.result()
    # PostgreSQL is back (every voter above voted): the page reconnects by itself, clears the message, serves.
    tab.page.wait_for_function(
        "() => !document.querySelector('#notice').textContent.includes('unavailable')"
        " && !document.querySelector('#send').disabled", timeout=30_000)
    tab.ask("Back again?")
    tab.wait_votable(timeout=60_000)
    tab.close()
    assert [(f["type"], f["code"], f["status"]) for f in frames] == [("error", "service_unavailable", 503)], frames
    assert "briefly unavailable" in frames[0]["message"]
    assert code == 4503, "try again later"
    assert board["type"] == "error" and board["code"] == "read_only", "the leaderboard socket is served"
    assert [(f["type"], f.get("status")) for f in refused] == [("error", 503)] * 4, refused
    assert all("briefly unavailable" in f["message"] for f in refused)
    assert outcomes == ["voted"] * 4, outcomes
    connection.close()
    connection.close_pool()  # this process's own pool, backed off as daphne's was
    assert Vote.objects.count() == 4
