"""Leaderboard snapshots and the marks of imported battles."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from arena.models import Battle


class LeaderboardSnapshot(models.Model):
    """One fit of the leaderboard, written once and never changed: the latest is the row with the highest id.

    ``payload`` holds the per-category rankings, matrices and intervals (see ``leaderboard.snapshots.Payload``);
    ``vote_hash`` fingerprints the votes it used, so an unchanged vote set is not fitted twice.
    """

    class Board(models.TextChoices):
        PUBLIC = "public", "Public"
        SIMULATED = "simulated", "Simulated voters (staff only)"
        DEMO = "demo", "Demo (sample battles)"

    # Which votes: the public board's, or only simulated voters' (never public; staff see it at ?board=simulated),
    # or the demo board's sample battles (leaderboard.demo: no votes of the arena's; public at ?board=demo).
    board = models.CharField(max_length=16, choices=Board.choices, default=Board.PUBLIC, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    votes_used = models.PositiveIntegerField()
    vote_hash = models.CharField(max_length=64)
    seconds = models.FloatField(help_text="How long the fit took.")
    payload = models.JSONField()

    class Meta:
        db_table = "arena_leaderboardsnapshot"  # created by the arena app before the leaderboard was its own
        ordering = ["-id"]
        get_latest_by = "id"
        # Battle exports hold every conversation: they need this permission, not merely staff status.
        permissions = [("export_battles", "Can export battles and preference pairs")]

    def __str__(self) -> str:
        return f"Snapshot {self.pk} ({self.votes_used} votes, {self.created_at:%Y-%m-%d %H:%M})"


class ImportedBattle(models.Model):
    """Marks a battle loaded from a battle file; ``key`` (a hash of the record and its line) makes a re-import
    add nothing."""

    battle = models.OneToOneField(Battle, on_delete=models.CASCADE, related_name="imported")
    key = models.CharField(max_length=64, unique=True)
    source = models.CharField(max_length=255, blank=True)
    line = models.PositiveIntegerField()

    class Meta:
        db_table = "arena_importedbattle"

    def __str__(self) -> str:
        return f"{self.source}:{self.line}"
