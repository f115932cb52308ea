"""The battle socket reads the voter's session itself, in connect(): a key the database does not hold is no
session, whatever the cookie says."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.backends.db import SessionStore

from tests.voters import Voter

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.mark.parametrize("cookie", ["made-up-session-key-0123456789", "expired", None])
async def test_a_socket_without_a_live_session_is_told_so_and_closed_with_4401(cookie):
    """Tried: a well-formed key no session has, the key of a session that expired, and no cookie at all. The
    session is no longer loaded by a middleware before the consumer runs, so connect() must load it, or a made-up
    key would pass for a session (rate limits and battles keyed on it)."""

    @database_sync_to_async
    def expired_key() -> str:
        store = SessionStore()
        store["arena"] = True
        store.set_expiry(-60)
        store.save()
        return store.session_key

    key = await expired_key() if cookie == "expired" else cookie
    voter = Voter(key or "")
    if key is None:
        voter.communicator.scope["headers"] = [h for h in voter.communicator.scope["headers"] if h[0] != b"cookie"]
    connected, _ = await voter.communicator.connect()
    assert connected
    frame = await voter.receive()
    assert (frame["type"], frame["code"], frame["status"]) == ("error", "no_session", 401)
    closed = await voter.communicator.receive_output(5)
    assert (closed["type"], closed["code"]) == ("websocket.close", 4401)
    await voter.close()


async def test_a_socket_with_a_live_session_is_served():
    voter = await Voter.open()
    await voter.send({"type": "resume", "battle": "nothing-here"})
    frame = await voter.receive()
    assert frame["code"] == "not_found", "the socket stayed open and answered"
    await voter.close()
