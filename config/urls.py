from __future__ import annotations

from django.contrib import admin
from django.urls import path

from arena import leaderboard_views, views

urlpatterns = [
    path("", views.battle_anonymous, name="battle"),
    path("side-by-side/", views.battle_named, name="named"),
    path("chat/", views.chat_direct, name="direct"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("leaderboard/", leaderboard_views.leaderboard_page, name="leaderboard"),
    path("leaderboard/data/", leaderboard_views.leaderboard_data, name="leaderboard_data"),
    path("leaderboard/head-to-head/", leaderboard_views.head_to_head_page, name="head_to_head"),
    path("leaderboard/rankings.csv", leaderboard_views.rankings_csv_view, name="leaderboard_rankings_csv"),
    path("leaderboard/export/battles.jsonl", leaderboard_views.export_battles_jsonl, name="export_battles_jsonl"),
    path("leaderboard/export/battles.csv", leaderboard_views.export_battles_csv, name="export_battles_csv"),
    path("leaderboard/export/preferences.jsonl", leaderboard_views.export_preferences, name="export_preferences"),
]
