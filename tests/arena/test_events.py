"""Frames sent from plain threads (a Celery job, the embedded server's generation threads, the snapshot timer):
which loop the channel layer's send runs on, and that the frame arrives."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from channels.layers import channel_layers, get_channel_layer
from redis.exceptions import ConnectionError as RedisConnectionError

from arena import events


def _from_a_plain_thread(fn, *args) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the send never returned"
    if errors:
        raise errors[0]


def _recording_loops(layer) -> list[asyncio.AbstractEventLoop]:
    loops: list[asyncio.AbstractEventLoop] = []
    send = layer.group_send

    async def recorded(group, message):
        loops.append(asyncio.get_running_loop())
        return await send(group, message)

    layer.group_send = recorded
    return loops


def test_the_in_memory_layer_is_sent_to_on_the_servers_own_loop(settings):
    """The embedded server: a generation thread's frame goes onto the loop that holds the consumers' queues
    (a send on a loop of its own would not wake it), and the consumer receives it."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends = {}
    layer = get_channel_layer()
    loops = _recording_loops(layer)

    async def server() -> dict:
        events.server_loop_register()
        channel = await layer.new_channel()
        await layer.group_add("battle_x", channel)
        sender = asyncio.get_running_loop().run_in_executor(
            None, _from_a_plain_thread, events.battle_publish, "x", {"type": "battle.token", "text": "hi"}
        )
        message = await asyncio.wait_for(layer.receive(channel), 20)
        await sender
        return message

    loop = asyncio.new_event_loop()
    try:
        message = loop.run_until_complete(server())
    finally:
        loop.close()
    assert message == {"type": "battle.token", "text": "hi"}
    assert loops == [loop]


def test_a_plain_threads_frames_share_one_long_lived_loop(settings):
    """A worker: every frame of every job goes out on one loop (so one Redis connection pool), not a new loop,
    thread and connection per frame as asgiref's async_to_sync would make."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [os.environ["REDIS_URL"]]}}}
    channel_layers.backends = {}
    layer = get_channel_layer()
    loops = _recording_loops(layer)
    for text in ("one", "two"):
        _from_a_plain_thread(events.battle_publish, "y", {"type": "battle.token", "text": text})
    _from_a_plain_thread(events.group_send, "leaderboard", {"type": "leaderboard.snapshot", "id": 1})
    assert len(loops) == 3 and len(set(loops)) == 1
    assert loops[0].is_running()


def test_a_send_that_fails_raises_in_the_sending_thread(settings):
    """group_send hands the layer's error back to its caller (battle_publish logs it), never swallows it."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": ["redis://127.0.0.1:9/0"]}}}
    channel_layers.backends = {}
    with pytest.raises(RedisConnectionError):
        _from_a_plain_thread(events.group_send, "battle_z", {"type": "battle.token", "text": "lost"})
