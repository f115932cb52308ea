from __future__ import annotations

from django.contrib import admin

from .models import SpeechClip, SpeechLeaderboardSnapshot


@admin.register(SpeechClip)
class SpeechClipAdmin(admin.ModelAdmin):
    list_display = ("turn", "audio_seconds", "generation_seconds", "sample_rate", "byte_size", "served_at", "delivered_at",
                    "created_at")
    readonly_fields = [f.name for f in SpeechClip._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(SpeechLeaderboardSnapshot)
class SpeechLeaderboardSnapshotAdmin(admin.ModelAdmin):
    list_display = ("created_at", "votes_used", "vote_hash")
    readonly_fields = ("created_at", "votes_used", "vote_hash", "payload")
