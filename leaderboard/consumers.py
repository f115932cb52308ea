"""The leaderboard websocket: tells an open leaderboard page that a new snapshot landed.

Server frames only: {"type": "snapshot", "id", "created_at", "votes_used"}. The frame names no model; the page
then fetches the board it may see over HTTP, where the staff check lives.
"""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .snapshots import GROUP


class LeaderboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        # Nothing to ask: the page only listens.
        await self.send_json({"type": "error", "code": "read_only", "message": "This socket only sends.", "status": 400})

    async def leaderboard_snapshot(self, event: dict) -> None:
        await self.send_json({k: event[k] for k in ("id", "created_at", "votes_used")} | {"type": "snapshot"})
