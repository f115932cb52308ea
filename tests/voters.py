"""A voter over the real websocket path, and model entries that answer from the stand-in endpoint."""

from __future__ import annotations

import asyncio
import json

from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore

from config.asgi import application
from models_hub.models import ModelEntry
from tests.standin import StandinEndpoint


def standin_entry(standin: StandinEndpoint, slug: str, remote: str, **fields) -> ModelEntry:
    defaults = dict(
        display_name=fields.pop("display_name", slug.replace("-", " ").title()), provider="openai",
        base_url=standin.base_url, remote_model=remote, organization=fields.pop("organization", f"Org of {slug}"),
        temperature=0.0, max_new_tokens=64,
    )
    defaults.update(fields)
    return ModelEntry.objects.create(slug=slug, **defaults)


class Voter:
    """One browser tab: a session and a websocket, with the frames it received kept in order."""

    def __init__(self, session_key: str):
        self.session_key = session_key
        self.frames: list[dict] = []
        self.raw: list[str] = []
        self.communicator = WebsocketCommunicator(
            application, "/ws/battle/",
            headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", f"sessionid={session_key}".encode())],
        )

    @classmethod
    async def open(cls, *, prove: bool = True) -> "Voter":
        """A new session with its websocket; ``prove`` passes the proof of work first, as the page's pow.js does."""
        from channels.db import database_sync_to_async

        @database_sync_to_async
        def new_session() -> str:
            store = SessionStore()
            store["arena"] = True
            store.save()
            return store.session_key

        voter = cls(await new_session())
        if prove:
            from trust.simulate import session_prove

            await session_prove(voter.session_key, client="127.0.0.1")
        connected, _ = await voter.communicator.connect()
        assert connected
        return voter

    async def send(self, message) -> None:
        if isinstance(message, str):
            await self.communicator.send_to(text_data=message)
        else:
            await self.communicator.send_json_to(message)

    async def receive(self, timeout: float = 30) -> dict:
        raw = await self.communicator.receive_output(timeout)
        text = raw.get("text", "")
        self.raw.append(text)
        frame = json.loads(text)
        self.frames.append(frame)
        return frame

    async def until(self, predicate, timeout: float = 60) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.receive(max(0.1, deadline - loop.time()))
            if predicate(frame):
                return frame

    async def until_finished(self, sides=("A", "B"), turn: int = 0, timeout: float = 60) -> dict[str, dict]:
        ended: dict[str, dict] = {}
        while set(ended) != set(sides):
            frame = await self.until(lambda f: f["type"] in ("turn", "error"), timeout)
            assert frame["type"] == "turn", frame
            if frame["turn"] == turn:
                ended[frame["side"]] = frame
        return ended

    async def error(self, timeout: float = 30) -> dict:
        return await self.until(lambda f: f["type"] == "error", timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()
