"""The leaderboard's snapshots in the admin: read-only, as every fitted row is."""

from __future__ import annotations

from django.contrib import admin

from arena.admin import ReadOnlyAdmin

from .models import LeaderboardSnapshot


@admin.register(LeaderboardSnapshot)
class LeaderboardSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "votes_used", "seconds", "vote_hash")
    exclude = ("payload",)  # megabytes of matrices; the leaderboard page shows them
