"""Voice battles: a speech battle is an arena Battle whose two sides are speech models, each side one Turn (the text
to read); the clip a side spoke is a SpeechClip. The leaderboard of voices is stored as its own snapshots."""

from __future__ import annotations

import secrets

from django.core.files.storage import Storage, storages
from django.db import models
from django.db.models.signals import post_delete
from django.dispatch import receiver

from arena.models import Turn
from models_hub.models import ModelEntry


def clip_storage() -> Storage:
    """The file storage clips live in: STORAGES["speech"] (a directory under var/ by default). Looked up on each
    use (the field's own storage is bound once, at import), so reads and deletes follow the settings."""
    return storages["speech"]


def clip_name() -> str:
    # Random, not derived from the battle, the side or the model: a file name must reveal nothing.
    return f"clips/{secrets.token_urlsafe(18)}.wav"


class SpeechClip(models.Model):
    """The audio one side of a voice battle spoke, re-encoded by the arena (inference.speech.audio_normalise)."""

    turn = models.OneToOneField(Turn, on_delete=models.CASCADE, related_name="speech_clip")
    audio = models.FileField(storage=clip_storage, max_length=200)
    byte_size = models.PositiveIntegerField()
    sample_rate = models.PositiveIntegerField()
    audio_seconds = models.FloatField(help_text="Seconds of audio.")
    generation_seconds = models.FloatField(help_text="Seconds the voice took to speak, normalisation excluded.")
    first_audio_seconds = models.FloatField(
        null=True, blank=True, help_text="Seconds until the first sentence was audio; blank: spoken all at once."
    )
    device = models.CharField(max_length=10, default="cpu", help_text="What spoke it: cpu, cuda or remote.")
    # When the battle's owner first asked for the clip (any range; for staff), and when the owner asked for the first
    # response that was then handed to the server with all of the clip's bytes: the vote waits for both clips
    # delivered and their duration since.
    served_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(audio_seconds__gt=0), name="speech_clip_has_audio"),
            models.CheckConstraint(condition=models.Q(generation_seconds__gte=0), name="speech_clip_time_non_negative"),
        ]

    def __str__(self) -> str:
        return f"clip of {self.turn}"

    @property
    def real_time_factor(self) -> float | None:
        """Seconds of audio per second of generation (above 1: faster than real time)."""
        return self.audio_seconds / self.generation_seconds if self.generation_seconds > 0 else None


@receiver(post_delete, sender=SpeechClip)
def _clip_file_delete(sender, instance: SpeechClip, **kwargs) -> None:
    # Deleting a battle cascades to its clips; their files go with them.
    if instance.audio.name:
        clip_storage().delete(instance.audio.name)


class SpeechLeaderboardSnapshot(models.Model):
    """One fit of the voice votes, insert-only, in the text leaderboard's payload shape (one category, overall),
    plus per-model generation figures (mean generation seconds, audio seconds, real-time factor)."""

    created_at = models.DateTimeField(auto_now_add=True)
    votes_used = models.PositiveIntegerField()
    vote_hash = models.CharField(max_length=64, unique=True)
    payload = models.JSONField()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"voice leaderboard {self.created_at:%Y-%m-%d %H:%M} ({self.votes_used} votes)"


class SpeechVoiceCheck(models.Model):
    """One intelligibility check of a voice (speech.intelligibility): the word error rate an offline recogniser
    found over the English example texts the voice read. The voice board shows each voice's newest check."""

    model = models.ForeignKey(ModelEntry, on_delete=models.CASCADE, related_name="voice_checks")
    word_error_rate = models.FloatField(help_text="Word errors over words read: 0 is every word heard right.")
    words = models.PositiveIntegerField()
    texts = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(word_error_rate__gte=0), name="speech_check_rate_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.model}: WER {self.word_error_rate:.1%}"
