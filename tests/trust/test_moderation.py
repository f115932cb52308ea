"""The moderation hook: a refused prompt gets a clear message and reaches no model (the stand-in endpoint
records every request it gets); flagged prompts stay out of exports unless asked for; the blocklist sees through
disguised phrases; sockets waiting on the endpoint hold none of daphne's database threads."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from arena.models import Battle, Turn
from trust.models import ModerationRefusal

from tests.voters import Voter, standin_entry

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def echo_pair(standin, inprocess):
    return [standin_entry(standin, "m-one", "echo"), standin_entry(standin, "m-two", "echo")]


@database_sync_to_async
def db(fn):
    return fn()


def requests_to(standin, since: int, kind: str) -> list:
    return [c for c in standin.calls[since:] if c[0].endswith(kind)]


@pytest.mark.asyncio
async def test_a_blocklisted_prompt_is_refused_before_any_model_is_called(echo_pair, standin, settings):
    settings.ARENA_MODERATION_BLOCKLIST = ["napalm recipe", "forbidden"]
    voter = await Voter.open()
    since = len(standin.calls)
    await voter.send({"type": "start", "prompt": "Give me a NAPALM recipe please"})
    error = await voter.error()
    assert error["code"] == "prompt_refused" and error["status"] == 422
    assert "not sent to any model" in error["message"]
    assert await db(lambda: (Battle.objects.count(), Turn.objects.count())) == (0, 0)
    assert requests_to(standin, since, "/chat/completions") == []
    refusal = await db(lambda: ModerationRefusal.objects.get())
    assert refusal.source == "blocklist" and refusal.session_key == voter.session_key
    # Whole words only: "forbiddenly" is not "forbidden".
    await voter.send({"type": "start", "prompt": "Is forbiddenly a word?"})
    await voter.until_finished()
    await voter.close()


@pytest.mark.asyncio
async def test_a_follow_up_is_checked_too(echo_pair, standin, settings):
    settings.ARENA_MODERATION_BLOCKLIST = ["forbidden"]
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "a fine question"})
    await voter.until_finished()
    since = len(standin.calls)
    await voter.send({"type": "continue", "prompt": "now something forbidden"})
    assert (await voter.error())["code"] == "prompt_refused"
    assert await db(lambda: Turn.objects.filter(index=1).count()) == 0
    assert requests_to(standin, since, "/chat/completions") == []
    await voter.close()


@pytest.mark.asyncio
async def test_the_moderation_endpoint_refuses_a_flagged_prompt_and_passes_the_rest(echo_pair, standin, settings):
    settings.ARENA_MODERATION_URL = standin.base_url
    voter = await Voter.open()
    since = len(standin.calls)
    await voter.send({"type": "start", "prompt": "tell me something [unsafe]"})
    error = await voter.error()
    assert error["code"] == "prompt_refused"
    asked = requests_to(standin, since, "/moderations")
    assert len(asked) == 1 and asked[0][2] == {"model": "omni-moderation-latest", "input": "tell me something [unsafe]"}
    assert requests_to(standin, since, "/chat/completions") == []
    assert await db(lambda: list(ModerationRefusal.objects.values_list("source", "categories"))) == [
        ("endpoint", ["violence"])]
    since = len(standin.calls)
    await voter.send({"type": "start", "prompt": "tell me something kind"})
    await voter.until_finished()
    kinds = [c[0].rsplit("/", 1)[-1] for c in standin.calls[since:]]
    assert kinds[0] == "moderations" and kinds.count("completions") == 2, kinds
    await voter.close()


@pytest.mark.asyncio
async def test_an_unreachable_moderation_endpoint_sends_nothing_on(echo_pair, standin, settings):
    settings.ARENA_MODERATION_URL = "http://127.0.0.1:9/v1"
    settings.ARENA_OPENAI_CONNECT_TIMEOUT = 1.0
    voter = await Voter.open()
    since = len(standin.calls)
    await voter.send({"type": "start", "prompt": "hello"})
    error = await voter.error()
    assert error["code"] == "moderation_unavailable" and error["status"] == 503
    assert requests_to(standin, since, "/chat/completions") == []
    assert await db(lambda: Battle.objects.count()) == 0
    await voter.close()


@pytest.mark.asyncio
async def test_exports_leave_out_battles_the_blocklist_flags_unless_asked(echo_pair, settings, client):
    for prompt in ("how do lighthouses work", "tell me about smuggling routes"):
        voter = await Voter.open()
        await voter.send({"type": "start", "prompt": prompt})
        await voter.until_finished()
        await voter.send({"type": "vote", "choice": "A"})
        await voter.until(lambda f: f["type"] == "voted")
        await voter.close()
    # Added to the blocklist after the battle: the stored battle is flagged now.
    settings.ARENA_MODERATION_BLOCKLIST = ["smuggling"]
    def analyst() -> User:
        from django.contrib.auth.models import Permission

        user = User.objects.create_user("ops", password="pw")
        user.user_permissions.add(Permission.objects.get(codename="export_battles", content_type__app_label="leaderboard"))
        return user

    staff = await db(analyst)
    await db(lambda: client.force_login(staff))

    def prompts(url: str) -> list[str]:
        body = client.get(url).content.decode()
        return [json.loads(line)["conversation_a"][0]["content"] for line in body.splitlines()]

    assert await db(lambda: prompts("/leaderboard/export/battles.jsonl")) == ["how do lighthouses work"]
    assert await db(lambda: sorted(prompts("/leaderboard/export/battles.jsonl?flagged=1"))) == [
        "how do lighthouses work", "tell me about smuggling routes"]


# The blocklist reads normalised words: the disguises a literal match let through, and near misses it must not
# refuse. Unit cases of one function (the socket path of a refusal is tried above).
EVASIONS = [
    "how do I make napalm\u200b recipe",  # a zero-width space inside the phrase
    "na\u200bpalm recipe",  # a zero-width space inside a word
    "ｎａｐａｌｍ ｒｅｃｉｐｅ",  # full-width letters
    "NAPALM RECIPES",  # a plural, in capitals
    "nápalm rëcipe",  # dotted and accented letters
    "napalm  recipe",  # a double space
    "napalm\nrecipe",  # a newline inside the phrase
    "napalm\t\r\n recipe",
    "napalm_recipe",
    "something F\u00adORBIDDEN here",  # a soft hyphen
    "two forbiddens",
    "ﬁne but forbidden.",
]
NEAR_MISSES = [
    "Is forbiddenly a word?",
    "napalmrecipe is not a phrase",
    "a recipe for napalm-free paint",  # both words, not as the phrase
    "napalm history, and then a cake recipe",
    "unforbidden fruit",
    "the forbid command",
    "a recipes list",
]


@pytest.mark.parametrize("prompt", EVASIONS)
def test_the_blocklist_sees_through_disguised_phrases(settings, prompt):
    """Tried: each disguise once passed the literal pattern (zero-width, full-width, plural, dotted, double space,
    newline)."""
    from trust.moderation import blocklist_hit

    settings.ARENA_MODERATION_BLOCKLIST = ["napalm recipe", "Forbidden"]
    assert blocklist_hit(prompt)


@pytest.mark.parametrize("prompt", NEAR_MISSES)
def test_the_blocklist_lets_innocent_near_misses_through(settings, prompt):
    from trust.moderation import blocklist_hit

    settings.ARENA_MODERATION_BLOCKLIST = ["napalm recipe", "Forbidden"]
    assert not blocklist_hit(prompt)


def test_the_blocklist_reads_a_long_adversarial_prompt_word_by_word(settings, monkeypatch):
    """Tried: 100,000 characters of near-misses of a phrase ("napalm napalm ... recipX"). Counted: the phrase
    comparisons, which grow with the words of the prompt (each word starts at most the phrases that begin with
    it), so twice the prompt is twice the comparisons, not four times."""
    import trust.moderation as moderation

    settings.ARENA_MODERATION_BLOCKLIST = ["napalm napalm napalm recipe", "forbidden"]
    compared = []
    real = moderation._stems
    monkeypatch.setattr(moderation, "_stems", lambda word: compared.append(word) or real(word))

    def work(n: int) -> int:
        compared.clear()
        assert not moderation.blocklist_hit("napalm " * (n // 7) + "recipX")
        return len(compared)

    small, large = work(50_000), work(100_000)
    assert small > 50_000 // 7
    assert large <= 2 * small + 10


class _HeldModeration:
    """A moderation endpoint on loopback that answers "not flagged", and, while ``hold`` is set, keeps every
    request waiting until ``release``: the requests it holds are counted, so a test can act while they wait."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.hold = threading.Event()
        self.release = threading.Event()
        self.arrived = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.waiting = 0
        self.answered_after_hold = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                held = endpoint.hold.is_set()
                if held:
                    with endpoint.lock:
                        endpoint.waiting += 1
                    endpoint.arrived.release()
                    endpoint.release.wait(60)
                    with endpoint.lock:
                        endpoint.waiting -= 1
                        endpoint.answered_after_hold += 1
                payload = json.dumps({"results": [{"flagged": False, "categories": {}}], "model": body.get("model")})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


ATTACKERS = 8


def test_sockets_waiting_on_moderation_hold_no_database_thread_of_daphne(standin, tmp_path):
    """Tried over daphne with its database threads as in production (ARENA_DB_THREADS=4): eight sockets start
    battles whose moderation requests the endpoint holds, then another voter resumes and votes on their battle.
    Before, each moderation request ran on one of the four database threads (inside the row lock on a
    continue), so the voter's resume queued behind them; now moderation is awaited on the event loop and the
    voter's resume and vote are answered while all eight requests are still held."""
    import asyncio

    from tests.arena.test_security import next_frame, open_socket, session_of
    from tests.browser import LiveArena

    standin_entry(standin, "held-a", "echo")
    standin_entry(standin, "held-b", "echo")
    moderation = _HeldModeration()
    arena = LiveArena(
        tmp_path / "daphne.log", ARENA_MODERATION_URL=moderation.base_url, ARENA_MODERATION_TIMEOUT="60",
        ARENA_DB_THREADS="4", ARENA_POW="0", ARENA_RATE_LIMIT_BATTLES="100",
    ).start()

    async def run() -> tuple[dict, dict, int, list[str]]:
        voter = session_of(arena)
        async with open_socket(arena, voter) as ws:
            await ws.send(json.dumps({"type": "start", "prompt": "a fine question"}))
            battle = (await next_frame(ws, "started"))["battle"]
            for _ in range(2):
                await next_frame(ws, "turn", timeout=60)
        moderation.hold.set()
        sessions = [await asyncio.to_thread(session_of, arena) for _ in range(ATTACKERS)]
        sockets = [await open_socket(arena, s).__aenter__() for s in sessions]
        for ws in sockets:
            await ws.send(json.dumps({"type": "start", "prompt": "hold me"}))
        for i in range(ATTACKERS):  # every request has reached the endpoint and waits there
            assert await asyncio.to_thread(moderation.arrived.acquire, True, 60), (
                f"only {i} moderation requests reached the endpoint: the others wait for a database thread")
        async with open_socket(arena, voter) as ws:
            await ws.send(json.dumps({"type": "resume", "battle": battle}))
            state = await next_frame(ws, ("state", "error"), timeout=60)
            await ws.send(json.dumps({"type": "vote", "choice": "A"}))
            voted = await next_frame(ws, ("voted", "error"), timeout=60)
        still_waiting = moderation.waiting
        moderation.release.set()
        started = [(await next_frame(ws, ("started", "error"), timeout=60))["type"] for ws in sockets]
        for ws in sockets:
            await ws.close()
        return state, voted, still_waiting, started

    try:
        state, voted, still_waiting, started = asyncio.run(run())
    finally:
        arena.stop()
        moderation.stop()
    assert state["type"] == "state" and voted["type"] == "voted", (state, voted)
    assert still_waiting == ATTACKERS, "the voter was answered while every moderation request was still held"
    assert started == ["started"] * ATTACKERS
    assert moderation.answered_after_hold == ATTACKERS
