"""Simulated voters: a known, checkable preference that plays whole battles through the real websocket path.

A simulated voter has its own session, registered as a `SimulatedSession`; every vote that session casts is
marked `simulated` as it is written (the `pre_save` receiver below, and the vote path's own insert,
`arena.rows.vote_insert`), so it never counts on the public
leaderboard and is exported only when asked for. The voter sees exactly what a person sees: the frames of the
battle websocket, sides "A" and "B", and no model names until after its vote.

`LengthInstructionVoter` asks for an answer of at most N words and prefers the answer that obeys; when both
obey or both do not, it prefers the shorter one, and calls a tie only when the two are equally long. Its
preference is a function of the two answers alone, so a test can check every one of its votes.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.db.models.signals import pre_save
from django.dispatch import receiver

from .models import SimulatedSession, Vote

# Prompts that carry a length instruction: "{task} Answer in at most {limit} words."
LENGTH_TASKS = (
    "Explain what a rainbow is.", "Describe how a bicycle works.", "Why do cats purr?", "What is a volcano?",
    "How does a refrigerator keep food cold?", "What is the moon made of?", "Why do leaves change colour?",
    "What does a librarian do?", "How do bees make honey?", "What is democracy?", "Why is the sea salty?",
    "How do airplanes stay in the air?", "What is a computer virus?", "Describe a good breakfast.",
    "What causes thunder?", "How do plants drink water?", "What is gravity?", "Why do we dream?",
    "What is an atom?", "How does a compass work?", "What is a museum for?", "Why do birds migrate?",
    "What is recycling?", "How is bread made?", "What does the heart do?", "What is a desert?",
    "How do fish breathe?", "What is a calendar?", "Why do we need sleep?", "What is electricity?",
    "What is a glacier?", "How do vaccines work?", "What is a map?", "Why is the grass green?",
    "What is a poem?", "How does a lighthouse help ships?", "What is a river delta?", "What is friction?",
    "How do magnets work?", "What is an orchestra?",
)  # fmt: skip
LENGTH_LIMITS = (10, 15, 20)
_LIMIT = re.compile(r"Answer in at most (\d+) words\.")


class SimulatedVoter(Protocol):
    name: str

    def prompt(self, rng: random.Random) -> str: ...

    def choose(self, prompt: str, answer_a: str, answer_b: str) -> str:
        """'A', 'B' or 'tie' (the websocket's vote choices)."""
        ...


def word_count(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class LengthInstructionVoter:
    name: str = "length-instruction"
    tasks: tuple[str, ...] = LENGTH_TASKS

    def prompt(self, rng: random.Random) -> str:
        return f"{rng.choice(self.tasks)} Answer in at most {rng.choice(LENGTH_LIMITS)} words."

    def choose(self, prompt: str, answer_a: str, answer_b: str) -> str:
        match = _LIMIT.search(prompt)
        if match is None:
            raise ValueError("This voter only judges prompts with a length instruction.")
        limit = int(match.group(1))
        words_a, words_b = word_count(answer_a), word_count(answer_b)
        obeys_a, obeys_b = 0 < words_a <= limit, 0 < words_b <= limit
        if obeys_a != obeys_b:
            return "A" if obeys_a else "B"
        if words_a == words_b:
            return "tie"
        return "A" if words_a < words_b else "B"


@receiver(pre_save, sender=Vote, dispatch_uid="arena.simulated.mark_simulated_votes")
def _mark_simulated_votes(sender: type[Vote], instance: Vote, **kwargs: object) -> None:
    if not instance.simulated and SimulatedSession.objects.filter(session_key=instance.session_key).exists():
        instance.simulated = True


def simulated_session_create(voter: SimulatedVoter) -> str:
    """A new session for `voter`, registered as simulated; returns its key (the sessionid cookie)."""
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    store["arena"] = True
    store.save()
    SimulatedSession.objects.create(session_key=store.session_key, voter=voter.name)
    if settings.ARENA_POW:
        # A simulated voter passes the bot check as the battle page's pow.js does: it solves the session's proof.
        from trust.pow import pow_challenge, pow_solve, proof_record

        proof_record(session_key=store.session_key, nonce=pow_solve(pow_challenge(store.session_key), settings.ARENA_POW_BITS))
    return store.session_key


@dataclass(frozen=True)
class SimulatedBattle:
    battle: str  # the public id
    prompt: str
    answers: dict[str, str]  # side ("A", "B") -> the finished answer
    choice: str  # "A", "B" or "tie"
    models: dict[str, str]  # side -> the name revealed after the vote


async def simulated_battle_play(
    voter: SimulatedVoter, session_key: str, prompt: str, *, timeout: float = 600.0
) -> SimulatedBattle:
    """One anonymous battle over the websocket: start, wait for both answers, vote, read the reveal.

    Raises RuntimeError when the server answers with an error frame or a side fails.
    """
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    communicator = WebsocketCommunicator(
        application,
        "/ws/battle/",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", f"sessionid={session_key}".encode())],
    )
    connected, _ = await communicator.connect()
    if not connected:
        raise RuntimeError("The battle websocket refused the simulated voter's connection.")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    async def frame() -> dict:
        raw = await communicator.receive_output(max(0.1, deadline - loop.time()))
        message = json.loads(raw.get("text", "{}"))
        if message.get("type") == "error":
            raise RuntimeError(f"The arena refused the simulated battle: {message.get('message')}")
        return message

    try:
        await communicator.send_json_to({"type": "start", "mode": "anonymous", "prompt": prompt})
        battle = ""
        answers: dict[str, str] = {}
        while len(answers) < 2:
            message = await frame()
            if message["type"] == "started":
                battle = message.get("battle", battle)
            elif message["type"] == "turn" and message.get("turn") == 0 and message.get("status") in ("done", "failed"):
                if message["status"] == "failed":
                    raise RuntimeError(f"Side {message['side']} failed: {message.get('error')}")
                answers[message["side"]] = message["text"]
        choice = voter.choose(prompt, answers["A"], answers["B"])
        await communicator.send_json_to({"type": "vote", "choice": choice})
        while True:
            message = await frame()
            if message["type"] == "voted":
                return SimulatedBattle(battle, prompt, answers, choice, dict(message.get("models") or {}))
    finally:
        await communicator.disconnect()
