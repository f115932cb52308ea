from __future__ import annotations

from django.urls import path

from . import views

app_name = "speech"

urlpatterns = [
    path("", views.speech_page, name="battle"),
    path("battles/", views.battle_create, name="create"),
    path("battles/<str:public_id>/", views.battle_state, name="state"),
    path("battles/<str:public_id>/<str:side>.wav", views.clip_audio, name="clip"),
    path("battles/<str:public_id>/vote/", views.battle_vote, name="vote"),
    path("leaderboard/", views.leaderboard_page, name="leaderboard"),
]
