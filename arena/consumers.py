"""The battle websocket: one connection per page; the voter's messages in, the battle's events out.

Client messages: {"type": "start", "mode", "prompt", "models"?}, {"type": "continue", "prompt"},
{"type": "regenerate", "side"?}, {"type": "vote", "choice"}, {"type": "resume", "battle"}, {"type": "stop"},
{"type": "show_all"} (lift the reading pace of an anonymous battle's current turn, see arena.pacing),
{"type": "reasons", "A"?: [tag, ...], "B"?: [tag, ...]} (after the vote only; a second one replaces the first).
Server frames: started, token, turn, voted, reasons, state, error. Sides are "A" and "B"; no frame names a model of an
anonymous battle before its vote.
A socket the server will not serve is told why in an error frame, then closed: 4401 without a session (reload the
page), 4503 while the database is unreachable (service_unavailable: try again later).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db import connections as db_connections
from redis.exceptions import RedisError

from trust.gate import TrustRefusal
from trust.moderation import moderation_verdict_async

from . import services
from .events import group_name
from .models import Battle, new_public_id
from .pacing import Pacer
from .selectors import SIDE_FAILED, battle_state

logger = logging.getLogger(__name__)

_threads: ThreadPoolExecutor | None = None


def _db_threads() -> ThreadPoolExecutor | None:
    """The threads the sockets of this process run their database calls on, each with a pooled connection; None
    without a connection pool (the embedded SQLite server: one writer), where the calls share Django's one
    thread-sensitive thread."""
    global _threads
    default = settings.DATABASES["default"]
    if not settings.ARENA_DB_THREADS or not default.get("OPTIONS", {}).get("pool"):
        return None
    if _threads is None:
        _threads = ThreadPoolExecutor(max_workers=settings.ARENA_DB_THREADS, thread_name_prefix="arena-db")
    return _threads


_reset_lock = threading.Lock()


def database_reset() -> None:
    """After a database error: close this thread's connections and, where the sockets use the thread pool, the
    process's connection pool. The pool would reconnect by itself, but with doubling pauses between attempts, so
    after an outage of some seconds the first voters once the database is back would wait out the pool's timeout
    and be refused again; a new pool connects at once. A call still waiting on the old pool is refused (503)."""
    db_connections.close_all()
    if _db_threads() is None:
        return
    with _reset_lock:
        wrapper = db_connections["default"]
        if wrapper.alias in wrapper._connection_pools:  # reading wrapper.pool would open a new one
            wrapper.close_pool()


def db(fn):
    """``fn`` (Django, blocking) awaited from the socket's event loop. Thread-sensitive calls would all queue on
    one thread per process, so one voter's query waits for every other's round trip; with a pool, several run at
    once, each on its own connection."""
    threads = _db_threads()
    if threads is None:
        return database_sync_to_async(fn)
    return database_sync_to_async(fn, thread_sensitive=False, executor=threads)


UNAVAILABLE = (OperationalError, InterfaceError, RedisError, OSError)
LAYER_UNAVAILABLE = (RedisError, OSError)
UNAVAILABLE_MESSAGE = "The arena is briefly unavailable. Please try again in a moment."
# The close code of a socket opened while the database is down: 503 in the application's range, as 4401 is 401.
# (RFC 6455's own 1013 "try again later" cannot be sent: daphne's websocket library lets an application close
# with 1000 or 3000-4999 only, and answers anything else with 1011.) The page shows the error frame sent just
# before and reconnects by itself, backing off.
CLOSE_TRY_AGAIN = 4503

MAX_FRAME_BYTES = 64 * 1024
# A client message is one flat object; anything nested deeper than this is refused before it is looked at.
MAX_JSON_DEPTH = 8
VOTE_CHOICES = {"A": "left", "B": "right", "tie": "tie", "bothbad": "bothbad"}
CLIENT_FIELDS = {
    "start": {"type", "mode", "prompt", "models"},
    "continue": {"type", "prompt"},
    "regenerate": {"type", "side"},
    "vote": {"type", "choice"},
    "resume": {"type", "battle"},
    "stop": {"type"},
    "show_all": {"type"},
    "reasons": {"type", "A", "B"},
}


def json_depth(value: object, limit: int) -> int:
    """How deeply `value` nests, counted without recursion and given up once past `limit`."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [
            child for item in level if isinstance(item, (dict, list))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return depth


class BattleConsumer(AsyncJsonWebsocketConsumer):
    battle_id: str | None = None  # the battle this socket follows (set on start and resume)

    async def __call__(self, scope, receive, send) -> None:
        # Channels' own loop, with one change: the channel layer's receive rides out a Redis restart (see
        # _channel_receive) instead of ending the consumer, and with it the voter's socket, with a 1011.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            sources.append(self._channel_receive)
        try:
            await await_many_dispatch(sources, self.dispatch)
        except StopConsumer:
            pass

    async def _channel_receive(self) -> dict:
        delay = 0.5
        while True:
            try:
                return await self.channel_layer.receive(self.channel_name)
            except LAYER_UNAVAILABLE as exc:
                logger.warning("battle events paused, the channel layer is unavailable: %s", exc)
            # Wait for Redis to come back, then join the battle's group again (a restarted Redis has forgotten
            # it) and send the battle as saved meanwhile, since its events of the outage are gone.
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                try:
                    if self.battle_id:
                        await self.channel_layer.group_add(group_name(self.battle_id), self.channel_name)
                    break
                except LAYER_UNAVAILABLE:
                    continue
            delay = 0.5
            if self.battle_id:
                try:
                    await self.send_state(await self._battle(self.battle_id))
                except Exception:
                    logger.warning("could not resend battle %s after the channel layer came back", self.battle_id,
                                   exc_info=True)

    async def connect(self) -> None:
        self.session_key = None
        self.ip = (self.scope.get("client") or ["", 0])[0] or ""
        self.battle_id: str | None = None
        # Accepted before the session is read, so that a socket refused for any reason is told why.
        await self.accept()
        try:
            self.session_key = await db(self._session_key)()
        except (OperationalError, InterfaceError) as exc:
            await self.service_unavailable("battle socket refused", exc)
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        if not self.session_key:
            await self.send_error("no_session", "Your session has expired. Reload the page.", 401)
            await self.close(code=4401)

    def _session_key(self) -> str | None:
        """The key of the voter's session, None where there is none or it expired. Reading the session loads it
        from the database, which forgets a key it does not hold."""
        session = self.scope.get("session")
        if session is None or not session.session_key:
            return None
        session.keys()
        return session.session_key

    async def service_unavailable(self, what: str, exc: Exception) -> None:
        """Tell the voter that the arena is briefly away; after a database error, drop the broken connections so
        that the next call connects afresh once the database is back."""
        logger.warning("%s, a service is unavailable: %s", what, exc)
        if isinstance(exc, (OperationalError, InterfaceError)):
            await database_sync_to_async(database_reset)()
        await self.send_error("service_unavailable", UNAVAILABLE_MESSAGE, 503)

    async def _group(self, op: str, public_id: str) -> None:
        """group_add or group_discard, tried once more on a broken connection: after a Redis restart the first
        command on each pooled connection fails, and a voter's message should not. (The channel layer itself is
        left without retries, so that the blocking receive does see a restart and the battle is sent again.)"""
        method = getattr(self.channel_layer, op)
        try:
            await method(group_name(public_id), self.channel_name)
        except LAYER_UNAVAILABLE:
            await method(group_name(public_id), self.channel_name)

    async def disconnect(self, code: int) -> None:
        self._pace_stop()
        if self.battle_id:
            try:
                await self._group("group_discard", self.battle_id)
            except LAYER_UNAVAILABLE:
                pass  # the membership expires with the group

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs) -> None:
        if text_data is None:
            await self.send_error("invalid_message", "Send JSON text frames.", 400)
            return
        if len(text_data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
            await self.send_error("message_too_large", f"A message may be at most {MAX_FRAME_BYTES // 1024} KiB.", 413)
            return
        try:
            content = json.loads(text_data)
            too_deep = json_depth(content, MAX_JSON_DEPTH) > MAX_JSON_DEPTH
        except RecursionError:  # the parser gives up around a thousand levels; that is too deep as well
            too_deep = True
        except ValueError:
            await self.send_error("invalid_json", "That message is not valid JSON.", 400)
            return
        if too_deep:
            await self.send_error("too_deep", f"A message may nest at most {MAX_JSON_DEPTH} levels deep.", 400)
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs) -> None:
        if not isinstance(content, dict) or content.get("type") not in CLIENT_FIELDS:
            await self.send_error("unknown_type", "Unknown message type.", 400)
            return
        kind = content["type"]
        unknown = set(content) - CLIENT_FIELDS[kind]
        if unknown:
            await self.send_error("unknown_fields", f"Unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}.", 400)
            return
        try:
            await getattr(self, f"on_{kind}")(content)
        except services.BattleError as exc:
            await self.send_error(exc.code, exc.message, exc.status)
        except UNAVAILABLE as exc:
            # A store we depend on (PostgreSQL, Redis) is briefly away: nothing was half-written, say so plainly.
            await self.service_unavailable(f"battle message {kind} refused", exc)
        except Exception:
            logger.exception("battle message %s failed", kind)
            await self.send_error("server_error", "Something went wrong on our side. Please try again.", 500)

    async def send_error(self, code: str, message: str, status: int) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, "status": status})

    async def _follow(self, public_id: str) -> None:
        if self.battle_id and self.battle_id != public_id:
            await self._group("group_discard", self.battle_id)
        self.battle_id = public_id
        await self._group("group_add", public_id)

    async def _moderate(self, prompt: str) -> None:
        """Moderation on the event loop, before any row lock: the endpoint's round trip holds none of the
        process's database threads, which other voters' messages need. A refused prompt is recorded (one insert)
        and raises BattleError."""
        try:
            verdict = await moderation_verdict_async(prompt)
        except TrustRefusal as exc:
            raise services.BattleError(exc.message, code=exc.code, status=exc.status) from None
        if verdict is not None:
            await db(services.prompt_refuse)(session_key=self.session_key, ip=self.ip, prompt=prompt, verdict=verdict)

    async def on_start(self, content: dict) -> None:
        mode = content.get("mode", Battle.Mode.ANONYMOUS)
        self._pace_for(mode)
        prompt = await db(services.battle_start_admit)(
            session_key=self.session_key, ip=self.ip, mode=mode, prompt=content.get("prompt"), moderate=False
        )
        await self._moderate(prompt)
        # Join the group before the battle exists, so no token of its first turn can be missed.
        public_id = new_public_id()
        await self._follow(public_id)
        try:
            battle = await db(services.battle_create)(
                session_key=self.session_key, ip=self.ip, mode=mode, prompt=prompt,
                models=content.get("models"), public_id=public_id, admitted=True,
            )
        except Exception:
            self.battle_id = None
            try:
                await self._group("group_discard", public_id)
            except LAYER_UNAVAILABLE:
                pass
            raise
        await self.send_state(battle, frame="started")

    async def on_continue(self, content: dict) -> None:
        prompt = await db(services.battle_continue_admit)(
            public_id=self.battle_id, session_key=self.session_key, ip=self.ip, prompt=content.get("prompt"),
            moderate=False,
        )
        await self._moderate(prompt)
        await db(services.battle_continue)(
            public_id=self.battle_id, session_key=self.session_key, ip=self.ip, prompt=prompt, admitted=True
        )

    async def on_regenerate(self, content: dict) -> None:
        await db(services.battle_regenerate)(
            public_id=self.battle_id, session_key=self.session_key, ip=self.ip, side=content.get("side")
        )
        await self.send_state(await self._battle(self.battle_id), hold_done=False)

    async def on_vote(self, content: dict) -> None:
        choice = content.get("choice")
        if not isinstance(choice, str) or choice not in VOTE_CHOICES:
            raise services.BattleError("Unknown vote: choose A, B, tie or bothbad.", code="invalid_choice")
        vote, names = await db(services.vote_record)(
            public_id=self.battle_id, session_key=self.session_key, ip=self.ip, choice=VOTE_CHOICES[choice]
        )
        await self.send_json({"type": "voted", "choice": choice, "models": names})

    async def on_reasons(self, content: dict) -> None:
        reasons = {label: content[label] for label in ("A", "B") if label in content}
        stored = await db(services.vote_reasons_record)(
            public_id=self.battle_id, session_key=self.session_key, reasons=reasons
        )
        await self.send_json({"type": "reasons", "A": stored.get("left", []), "B": stored.get("right", [])})

    async def on_stop(self, content: dict) -> None:
        # The turn frames that end the stopped answers follow on the battle's group.
        await db(services.battle_stop)(public_id=self.battle_id, session_key=self.session_key)

    async def on_resume(self, content: dict) -> None:
        state = await db(self._resumed_state)(content.get("battle"))
        await self._follow(state["battle"])
        self._pace_for(state["mode"])
        await self.send_json({"type": "state", **self._paced_state(state)})

    def _resumed_state(self, public_id: object) -> dict:
        state = battle_state(services.battle_resume(public_id=public_id, session_key=self.session_key, reap=False))
        state["max_turns"] = settings.ARENA_MAX_TURNS
        return state

    async def _battle(self, public_id: object) -> Battle:
        # Read with send_state, whose battle_state fails stale turns itself.
        return await db(services.battle_resume)(public_id=public_id, session_key=self.session_key, reap=False)

    async def send_state(self, battle: Battle, frame: str = "state", *, hold_done: bool = True) -> None:
        state = await db(battle_state)(battle)
        state["max_turns"] = settings.ARENA_MAX_TURNS
        self._pace_for(state["mode"])
        await self.send_json({"type": frame, **self._paced_state(state, hold_done=hold_done)})

    async def battle_token(self, event: dict) -> None:
        if self.pacer is not None:
            self.pacer.token(event)
            self._pace_start()
            return
        await self.send_json({k: event[k] for k in ("side", "turn", "attempt", "text", "offset")} | {"type": "token"})

    async def battle_turn(self, event: dict) -> None:
        frame = {k: event[k] for k in ("side", "turn", "attempt", "status", "text", "html", "error")}
        if frame["error"]:
            frame["error"] = SIDE_FAILED
        frame |= {"type": "turn", "cut": bool(event.get("cut")), "stopped": bool(event.get("stopped"))}
        if self.pacer is None:
            await self.send_json(frame)
            return
        for paced in self.pacer.turn_end(frame):
            await self.send_json(paced)

    # ---- equal pace (arena.pacing): an anonymous battle's answers leave this socket on one common clock --------

    pacer: Pacer | None = None
    _pace_task: asyncio.Task | None = None

    def _pace_for(self, mode: str) -> None:
        """Pace the battle this socket follows where it is anonymous (and pacing is on); stream it raw otherwise."""
        if settings.ARENA_PACE and mode == Battle.Mode.ANONYMOUS:
            if self.pacer is None:
                self.pacer = Pacer(chars_per_tick=max(1, round(
                    settings.ARENA_PACE_CHARS_PER_SECOND * settings.ARENA_PACE_TICK_MS / 1000)))
        else:
            self._pace_stop()
            self.pacer = None

    def _paced_state(self, state: dict, *, hold_done: bool = True) -> dict:
        if self.pacer is None or state.get("voted"):
            return state
        paced = self.pacer.sync(state, hold_done=hold_done)
        if self.pacer.running:
            self._pace_start()
        return paced

    def _pace_start(self) -> None:
        if self._pace_task is None or self._pace_task.done():
            self._pace_task = asyncio.ensure_future(self._pace_ticks())

    def _pace_stop(self) -> None:
        if self._pace_task is not None:
            self._pace_task.cancel()
            self._pace_task = None

    async def _pace_ticks(self) -> None:
        """Send each tick's frames while the pacer holds a side; ends with the turn (started again by its next
        frame). A socket that closes meanwhile is cancelled in disconnect."""
        tick = settings.ARENA_PACE_TICK_MS / 1000
        try:
            while self.pacer is not None and self.pacer.running:
                await asyncio.sleep(tick)
                for frame in self.pacer.tick() if self.pacer is not None else ():
                    await self.send_json(frame)
        except Exception:  # the socket went away between two ticks: nothing left to send to
            logger.debug("paced frames stopped", exc_info=True)

    async def on_show_all(self, content: dict) -> None:
        if self.pacer is not None:
            self.pacer.show_all()
            for frame in self.pacer.tick():
                await self.send_json(frame)
