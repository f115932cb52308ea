"""Simulated voters over the real path: the battle page's GET (for the session), the proof of work, and the
battle websocket, all through the arena's ASGI application in this process.

Each voter plays battles one after another against the live models and decides from the two answers:

- ``HonestVoter``: a known preference (a strength per model style); votes A or B by Bradley-Terry odds of its
  strengths, sometimes a tie; reads the answers before voting.
- ``AlwaysAVoter``: always A, at once (unless given a ``reading_wps``).
- ``RandomVoter``: A, B, tie or both bad at random, at once (idem).
- ``RiggingVoter``: recognises its target model by the style of its answer and always votes for it; battles
  without the target are left unvoted (or, with ``cover``, voted at random to look ordinary). Reads like an
  honest voter (``reading_wps=0`` makes it a hasty bot).

Models are told apart by their answer's opening ("Tulip here."), as the stand-in endpoint's ``style-<word>``
models answer; a rigger in the wild does the same with a classifier of the target's style.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from channels.testing import HttpCommunicator, WebsocketCommunicator

from .pow import pow_solve

# Honest voters read this many words a second before they vote (a quick reader).
READING_WORDS_PER_SECOND = 12.0
HOST_HEADERS = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
_STYLE = re.compile(r"^\s*([A-Za-z]+) here\.")


def answer_style(text: str) -> str | None:
    """The style word an answer opens with ("Tulip here." -> "tulip"), or None."""
    match = _STYLE.match(text or "")
    return match.group(1).lower() if match else None


def _application():
    from config.asgi import application

    return application


async def _http(method: str, path: str, *, client: str, cookie: str | None = None, body: bytes = b"") -> dict:
    headers = list(HOST_HEADERS)
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    if body:
        headers.append((b"content-type", b"application/json"))
    communicator = HttpCommunicator(_application(), method, path, body=body, headers=headers)
    communicator.scope["client"] = [client, 50000]
    try:
        return await communicator.get_response(timeout=30)
    finally:
        await communicator.wait(timeout=5)


async def session_open(*, client: str) -> str:
    """GET the battle page, as a browser does, and return the session key from its cookie."""
    response = await _http("GET", "/", client=client)
    for name, value in response["headers"]:
        if name.lower() == b"set-cookie":
            cookie = SimpleCookie(value.decode())
            if "sessionid" in cookie:
                return cookie["sessionid"].value
    raise RuntimeError(f"the battle page set no session cookie (HTTP {response['status']})")


async def session_prove(session_key: str, *, client: str, nonce: str | None = None) -> dict:
    """Ask for the session's challenge, solve it (or send ``nonce``) and post the answer; the POST's JSON."""
    asked = json.loads((await _http("GET", "/trust/proof/", client=client, cookie=session_key))["body"])
    if not asked.get("required"):
        return {"proved": True}
    if nonce is None:
        nonce = await asyncio.to_thread(pow_solve, asked["challenge"], asked["bits"])
    answered = await _http("POST", "/trust/proof/", client=client, cookie=session_key,
                           body=json.dumps({"nonce": nonce}).encode())
    return json.loads(answered["body"]) | {"status": answered["status"]}


class BattleSocket:
    """One tab's battle websocket, with every frame kept."""

    def __init__(self, session_key: str, client: str):
        self.session_key = session_key
        self.frames: list[dict] = []
        self.communicator = WebsocketCommunicator(
            _application(), "/ws/battle/", headers=HOST_HEADERS + [(b"cookie", f"sessionid={session_key}".encode())]
        )
        self.communicator.scope["client"] = [client, 50001]

    async def connect(self) -> "BattleSocket":
        connected, _ = await self.communicator.connect(timeout=10)
        if not connected:
            raise RuntimeError("the battle websocket refused the connection")
        return self

    async def send(self, message: dict) -> None:
        await self.communicator.send_json_to(message)

    async def frame(self, timeout: float) -> dict:
        frame = json.loads((await self.communicator.receive_output(timeout))["text"])
        self.frames.append(frame)
        return frame

    async def until(self, predicate: Callable[[dict], bool], timeout: float = 60) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.frame(max(0.1, deadline - loop.time()))
            if predicate(frame):
                return frame

    async def battle(self, prompt: str, timeout: float = 60) -> tuple[str, dict[str, str]]:
        """Start a battle and wait for both first answers: (battle id, {"A": text, "B": text}).
        Raises ``BattleRefused`` with the error frame when the arena refuses it."""
        await self.send({"type": "start", "prompt": prompt})
        started = await self.until(lambda f: f["type"] in ("started", "error"), timeout)
        if started["type"] == "error":
            raise BattleRefused(started)
        state = started
        while True:
            answers = {side: turns[-1]["text"] for side, turns in state["sides"].items()
                       if turns and turns[-1]["status"] == "done"}
            failed = [turns[-1] for turns in state["sides"].values() if turns and turns[-1]["status"] == "failed"]
            if failed:
                raise BattleRefused({"code": "side_failed", "message": failed[0]["error"]})
            if len(answers) == 2:
                return started["battle"], answers
            # Turn frames carry no battle id (a late one may belong to the battle before): wait for one, then
            # read the battle's own state.
            frame = await self.until(lambda f: f["type"] in ("turn", "error"), timeout)
            if frame["type"] == "error":
                raise BattleRefused(frame)
            await self.send({"type": "resume", "battle": started["battle"]})
            state = await self.until(lambda f: f["type"] in ("state", "error"), timeout)
            if state["type"] == "error":
                raise BattleRefused(state)

    async def vote(self, choice: str, timeout: float = 30) -> dict:
        await self.send({"type": "vote", "choice": choice})
        frame = await self.until(lambda f: f["type"] in ("voted", "error"), timeout)
        if frame["type"] == "error":
            raise BattleRefused(frame)
        return frame

    async def close(self) -> None:
        await self.communicator.disconnect()


class BattleRefused(Exception):
    def __init__(self, frame: dict):
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.frame = frame


# ---------------------------------------------------------------------------------------------------------------
# The voters


@dataclass
class CastVote:
    battle: str
    choice: str  # "A" | "B" | "tie" | "bothbad"
    styles: dict[str, str | None]
    rigged: bool = False


@dataclass
class SimVoter:
    """Base: ``decide`` returns a choice, or None to leave the battle unvoted."""

    kind: str = "voter"
    prompts: list[str] = field(default_factory=list)
    client: str = "10.0.0.1"
    seed: int = 0
    session_key: str = ""
    votes: list[CastVote] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)

    reading_wps: float = 0.0  # words read per second before voting; 0 votes at once

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def decide(self, answers: dict[str, str]) -> str | None:
        raise NotImplementedError

    def read_seconds(self, answers: dict[str, str]) -> float:
        if not self.reading_wps:
            return 0.0
        words = sum(len(t.split()) for t in answers.values())
        return words / self.reading_wps * self.rng.uniform(1.0, 1.5)

    def rigged(self, choice: str, styles: dict[str, str | None]) -> bool:
        return False


@dataclass
class HonestVoter(SimVoter):
    kind: str = "honest"
    preference: dict[str, float] = field(default_factory=dict)  # style word -> strength (log-odds units)
    tie_share: float = 0.1
    reading_wps: float = READING_WORDS_PER_SECOND

    def decide(self, answers: dict[str, str]) -> str | None:
        if self.rng.random() < self.tie_share:
            return "tie"
        a = self.preference.get(answer_style(answers["A"]) or "", 0.0)
        b = self.preference.get(answer_style(answers["B"]) or "", 0.0)
        return "A" if self.rng.random() < 1.0 / (1.0 + math.exp(b - a)) else "B"


@dataclass
class AlwaysAVoter(SimVoter):
    kind: str = "always_a"

    def decide(self, answers: dict[str, str]) -> str | None:
        return "A"


@dataclass
class RandomVoter(SimVoter):
    kind: str = "random"

    def decide(self, answers: dict[str, str]) -> str | None:
        return self.rng.choice(["A", "B", "A", "B", "tie", "bothbad"])


@dataclass
class RiggingVoter(SimVoter):
    kind: str = "rigger"
    target: str = ""  # the target's style word
    cover: bool = False
    reading_wps: float = READING_WORDS_PER_SECOND

    def decide(self, answers: dict[str, str]) -> str | None:
        styles = {side: answer_style(text) for side, text in answers.items()}
        for side, style in styles.items():
            if style == self.target:
                return side
        return self.rng.choice(["A", "B", "tie"]) if self.cover else None

    def rigged(self, choice: str, styles: dict[str, str | None]) -> bool:
        return True


async def voter_play(voter: SimVoter, battles: int, *, on_battle: Callable[[], Any] | None = None) -> SimVoter:
    """Open the voter's session, pass the proof of work and play ``battles`` battles over one websocket."""
    voter.session_key = await session_open(client=voter.client)
    await session_prove(voter.session_key, client=voter.client)
    socket = await BattleSocket(voter.session_key, voter.client).connect()
    try:
        for i in range(battles):
            prompt = voter.prompts[i % len(voter.prompts)] if voter.prompts else f"Question {i} of {voter.seed}?"
            try:
                battle, answers = await socket.battle(prompt)
            except BattleRefused as exc:
                voter.refused.append(exc.frame)
                if on_battle:
                    on_battle()
                continue
            choice = voter.decide(answers)
            if choice is None:
                voter.abandoned.append(battle)
            else:
                await asyncio.sleep(voter.read_seconds(answers))
                try:
                    await socket.vote(choice)
                except BattleRefused as exc:
                    voter.refused.append(exc.frame)
                    if on_battle:
                        on_battle()
                    continue
                styles = {side: answer_style(text) for side, text in answers.items()}
                voter.votes.append(CastVote(battle, choice, styles, rigged=voter.rigged(choice, styles)))
            if on_battle:
                on_battle()
    finally:
        await socket.close()
    return voter


async def voters_play(voters: Iterable[SimVoter], battles: Callable[[SimVoter], int] | int, *, concurrency: int = 8,
                      on_battle: Callable[[], Any] | None = None) -> list[SimVoter]:
    """Play every voter, ``concurrency`` at a time (like tabs open at once)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(voter: SimVoter) -> SimVoter:
        async with gate:
            return await voter_play(voter, battles(voter) if callable(battles) else battles, on_battle=on_battle)

    return list(await asyncio.gather(*(one(v) for v in voters)))


def varied_prompts(seed: int, count: int) -> list[str]:
    """Distinct everyday prompts, different for every seed."""
    rng = random.Random(seed)
    topics = ["bread", "rivers", "chess", "tax forms", "sourdough", "bicycles", "Python lists", "tides", "glaciers",
              "violins", "compost", "sleep", "gravity", "poems", "maps", "owls", "SQL joins", "sailing", "tea", "moss"]
    asks = ["Explain {} simply", "Give me three facts about {}", "What is a common mistake with {}",
            "Write a short note on {}", "How would you teach {} to a child", "Compare {} and {}"]
    out = []
    for i in range(count):
        ask = rng.choice(asks)
        out.append(ask.format(*rng.sample(topics, ask.count("{}"))) + f" (#{seed}-{i})?")
    return out
