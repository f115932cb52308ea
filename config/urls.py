from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from arena import views

urlpatterns = [
    path("", views.battle_anonymous, name="battle"),
    path("side-by-side/", views.battle_named, name="named"),
    path("chat/", views.chat_direct, name="direct"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("leaderboard/", include("leaderboard.urls")),
    path("trust/", include("trust.urls")),
]
