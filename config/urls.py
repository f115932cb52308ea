from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from arena import views

urlpatterns = [
    path("", views.battle_anonymous, name="battle"),
    path("side-by-side/", views.battle_named, name="named"),
    path("chat/", views.chat_direct, name="direct"),
    path("battle/<str:public_id>/", views.battle_share, name="battle-share"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("leaderboard/", include("leaderboard.urls")),
    path("speech/", include("speech.urls")),
    path("trust/", include("trust.urls")),
]
