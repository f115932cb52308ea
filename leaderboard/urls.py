from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.leaderboard_page, name="leaderboard"),
    path("data/", views.leaderboard_data, name="leaderboard_data"),
    path("head-to-head/", views.head_to_head_page, name="head_to_head"),
    path("rankings.csv", views.rankings_csv_view, name="leaderboard_rankings_csv"),
    path("export/battles.jsonl", views.export_battles_jsonl, name="export_battles_jsonl"),
    path("export/battles.csv", views.export_battles_csv, name="export_battles_csv"),
    path("export/preferences.jsonl", views.export_preferences, name="export_preferences"),
]
