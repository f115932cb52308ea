"""What goes over a battle's channel group. Frames name sides as A and B, never models (before the vote)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Literal, TypedDict

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from inference.outages import UNREACHABLE, OutageLog

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 10.0  # seconds a generation job waits for the channel layer to take one frame

SideLabel = Literal["A", "B"]
POSITION_LABEL: dict[str, SideLabel] = {"left": "A", "right": "B"}
LABEL_POSITION = {label: position for position, label in POSITION_LABEL.items()}


class TokenEvent(TypedDict):
    type: Literal["battle.token"]
    side: SideLabel
    turn: int
    attempt: int
    text: str
    offset: int  # where `text` starts in the answer


class TurnEndEvent(TypedDict):
    type: Literal["battle.turn"]
    side: SideLabel
    turn: int
    attempt: int
    status: str
    text: str
    html: str
    error: str
    cut: bool
    stopped: bool


def group_name(public_id: str) -> str:
    return f"battle_{public_id}"


# ---------------------------------------------------------------------------------------------------------------
# Sending to a group from a plain thread (a Celery job, the embedded server's generation threads, the snapshot timer)
#
# asgiref's async_to_sync, called from a thread that no event loop started, runs each call on a new event loop
# in a new thread, so every frame would pay a thread, a loop and (channels_redis keeps its connections per loop)
# a new Redis connection. Such threads send on one long-lived loop instead. The embedded server's in-memory layer
# keeps its queues on the server's own loop, which a foreign loop cannot wake: there, frames go onto that loop.

_server_loop: asyncio.AbstractEventLoop | None = None
_sender: tuple[int, asyncio.AbstractEventLoop] | None = None  # (pid, loop): a forked worker starts its own
_sender_lock = threading.Lock()


def server_loop_register() -> None:
    """Record the running loop as the server's (called for each connection, from config.asgi)."""
    global _server_loop
    _server_loop = asyncio.get_running_loop()


def _sender_loop() -> asyncio.AbstractEventLoop:
    global _sender
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid() or not _sender[1].is_running():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-layer-sender", daemon=True).start()
            _sender = (os.getpid(), loop)
        return _sender[1]


def _loop_for(layer: Any) -> asyncio.AbstractEventLoop | None:
    """The loop to send on from this thread; None where async_to_sync already does the right thing (a thread
    of sync_to_async, which sends on the loop that called it) or nothing better is known."""
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) == os.getpid():
        return None
    if isinstance(layer, InMemoryChannelLayer):
        loop = _server_loop
        return loop if loop is not None and loop.is_running() else None
    return _sender_loop()


def group_send(group: str, event: dict) -> None:
    """Send ``event`` to ``group`` from synchronous code, waiting until the layer took it. Raises what the
    layer raises (and TimeoutError after PUBLISH_TIMEOUT s)."""
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _loop_for(layer)
    if loop is None:
        async_to_sync(layer.group_send)(group, event)
        return
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, event), loop)
    try:
        future.result(timeout=PUBLISH_TIMEOUT)
    except BaseException:
        future.cancel()
        raise


channel_layer_outage = OutageLog("publishing battle frames")


def battle_publish(public_id: str, event: dict) -> None:
    """Send one event to the battle's group. Losing a frame is survivable (the page re-reads state), so a
    channel-layer failure is logged, not raised into the generation job: once per outage where Redis is
    unreachable, with its traceback for anything else."""
    try:
        group_send(group_name(public_id), event)
    except UNREACHABLE as exc:
        channel_layer_outage.failed(exc)
    except Exception:
        logger.warning("could not publish %s to battle %s", event.get("type"), public_id, exc_info=True)
    else:
        channel_layer_outage.ok()


def turn_publish(turn, *, attempt: int, status: str, text: str = "", error: str = "", cut: bool = False,
                 stopped: bool = False) -> None:
    """Tell the battle's group that a side's turn ended (done or failed), with its sanitised markdown."""
    from .rendering import render_markdown

    event: TurnEndEvent = {
        "type": "battle.turn", "side": POSITION_LABEL[turn.side.position], "turn": turn.index, "attempt": attempt,
        "status": status, "text": text, "html": render_markdown(text) if text else "", "error": error,
        "cut": cut, "stopped": stopped,
    }
    battle_publish(turn.side.battle.public_id, dict(event))
