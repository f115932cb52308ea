"""Websocket routes."""

from __future__ import annotations

from django.urls import path

from arena.consumers import BattleConsumer
from leaderboard.consumers import LeaderboardConsumer

websocket_urlpatterns = [
    path("ws/battle/", BattleConsumer.as_asgi()),
    path("ws/leaderboard/", LeaderboardConsumer.as_asgi()),
]
