"""Voter risk records, proofs of work by session, and prompts the moderation hook refused."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class VoterRisk(models.Model):
    """The risk of one voter, by session or by address hash, as the latest snapshot job computed it.

    A record exists once a voter's score reached the threshold. ``state`` says what counts:
    flagged (votes left out of the leaderboard), confirmed (staff agreed: left out whatever the score),
    cleared (staff overruled: counted whatever the score), lapsed (was flagged, the score fell below the
    threshold again: counted). Votes are never deleted, so every state change is reversible at the next snapshot.
    """

    class Kind(models.TextChoices):
        SESSION = "session", "Session"
        ADDRESS = "address", "Address hash"

    class State(models.TextChoices):
        FLAGGED = "flagged", "Flagged"
        CONFIRMED = "confirmed", "Confirmed by staff"
        CLEARED = "cleared", "Cleared by staff"
        LAPSED = "lapsed", "Lapsed (score below the threshold again)"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    key = models.CharField(max_length=64, help_text="The session key, or the salted hash of the address.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.FLAGGED, db_index=True)
    score = models.FloatField(help_text="The strongest evidence of any detector, in -log10(p) units.")
    reasons = models.JSONField(default=list, help_text="[{detector, evidence, text}], strongest first.")
    features = models.JSONField(default=dict)
    votes = models.PositiveIntegerField(default=0)
    first_flagged_at = models.DateTimeField(auto_now_add=True)
    computed_at = models.DateTimeField()
    reviewed_by = models.CharField(max_length=150, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-score"]
        verbose_name = "voter risk"
        permissions = [("review_voterrisk", "Can clear or confirm flagged voters")]
        constraints = [
            models.UniqueConstraint(fields=["kind", "key"], name="voterrisk_one_per_voter"),
            models.CheckConstraint(condition=Q(kind__in=["session", "address"]), name="voterrisk_known_kind"),
            models.CheckConstraint(
                condition=Q(state__in=["flagged", "confirmed", "cleared", "lapsed"]), name="voterrisk_known_state"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.key[:12]}… ({self.state}, {self.score:.1f})"

    @property
    def excluded(self) -> bool:
        return self.state in (self.State.FLAGGED, self.State.CONFIRMED)


class SessionProof(models.Model):
    """A session that solved the proof of work: its battles may start until ``expires_at``, then it solves again
    (the same row, renewed). Rows without an expiry predate it and no longer count."""

    session_key = models.CharField(max_length=64, unique=True)
    bits = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.session_key[:12]}… ({self.bits} bits)"


class ModerationRefusal(models.Model):
    """A prompt the moderation hook refused before any model saw it, kept for staff to review."""

    class Source(models.TextChoices):
        BLOCKLIST = "blocklist", "Blocklist"
        ENDPOINT = "endpoint", "Moderation endpoint"

    session_key = models.CharField(max_length=64, db_index=True)
    ip_hash = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    categories = models.JSONField(default=list, blank=True)
    prompt = models.TextField(help_text="The first 2000 characters.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_source_display()}: {self.prompt[:40]}"
