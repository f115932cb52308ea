"""The moderation hook: a refused prompt gets a clear message and reaches no model (the stand-in endpoint
records every request it gets); flagged prompts stay out of exports unless asked for."""

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
