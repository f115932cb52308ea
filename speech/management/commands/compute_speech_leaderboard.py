"""manage.py compute_speech_leaderboard: fit the voice votes now and store a snapshot if they changed."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from speech.leaderboard import speech_snapshot_create, speech_snapshot_latest


class Command(BaseCommand):
    help = "Fit the votes of voice battles and store a voice leaderboard snapshot (nothing if the votes are unchanged)."

    def handle(self, *args: object, **options: object) -> None:
        snapshot = speech_snapshot_create()
        if snapshot is None:
            latest = speech_snapshot_latest()
            self.stdout.write(f"Votes unchanged; the newest snapshot stands ({latest.votes_used if latest else 0} votes).")
        else:
            self.stdout.write(self.style.SUCCESS(f"Stored a voice leaderboard snapshot of {snapshot.votes_used} votes."))
