"""Battles, their sides, turns and votes."""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from models_hub.models import ModelEntry
from ratings import style_counts

from .facts import key_code

# A finished turn's style counts (see ratings.style_counts), stored when it is saved so that a leaderboard
# snapshot reads four integers per answer instead of re-reading and re-parsing every answer.
STYLE_FIELDS = ("style_tokens", "style_headers", "style_list_items", "style_bold")


def turn_style_fields(response: str) -> dict[str, int]:
    return dict(zip(STYLE_FIELDS, style_counts(response)))


def new_public_id() -> str:
    # Random, not derived from the row id or the time: it must reveal nothing about the battle or its models.
    return secrets.token_urlsafe(16)


class Battle(models.Model):
    class Mode(models.TextChoices):
        ANONYMOUS = "anonymous", "Anonymous side-by-side"
        NAMED = "named", "Named side-by-side"
        DIRECT = "direct", "Direct chat"

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.ANONYMOUS)
    session_key = models.CharField(max_length=64, db_index=True)
    ip_hash = models.CharField(max_length=64, blank=True)
    categories = models.JSONField(default=list, blank=True)
    # A side failed and the voter asked it again: the vote is taken, but the leaderboard leaves the battle out,
    # since how and when a side fails says something about its model before the vote.
    retried_failure = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The session key's, address hash's and normalised first prompt's 64-bit codes (arena.facts.key_code), set as
    # the battle is saved: the trust screen reads every battle's voter and prompt as three integers. A prompt code
    # of 0 means not known yet (the battle was written before its first turn); the screen reads those prompts.
    session_code = models.BigIntegerField(default=0)
    address_code = models.BigIntegerField(default=0)
    prompt_code = models.BigIntegerField(default=0)
    # Has a vote (set with it, arena.facts): the trust screen reads the votes' battles from their fact rows and
    # only the unvoted battles from here, through the partial index below.
    voted = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(mode__in=["anonymous", "named", "direct"]), name="battle_known_mode"),
        ]
        indexes = [models.Index(fields=["id"], condition=Q(voted=False), name="arena_battle_unvoted")]

    def __str__(self) -> str:
        return f"{self.get_mode_display()} {self.public_id}"

    def save(self, *args, **kwargs) -> None:
        self.session_code, self.address_code = key_code(self.session_key), key_code(self.ip_hash)
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "session_code", "address_code"}
        super().save(*args, **kwargs)


class Side(models.Model):
    class Position(models.TextChoices):
        LEFT = "left", "Left (A)"
        RIGHT = "right", "Right (B)"

    battle = models.ForeignKey(Battle, on_delete=models.CASCADE, related_name="sides")
    position = models.CharField(max_length=5, choices=Position.choices)
    model = models.ForeignKey(ModelEntry, on_delete=models.PROTECT, related_name="sides")

    class Meta:
        ordering = ["battle_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["battle", "position"], name="side_one_per_position"),
            models.CheckConstraint(condition=Q(position__in=["left", "right"]), name="side_known_position"),
        ]

    def __str__(self) -> str:
        return f"{self.battle.public_id} {self.position}"


class Turn(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    side = models.ForeignKey(Side, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveIntegerField()
    # Bumped on regenerate and retry, so a late job from an earlier attempt can neither claim nor save this turn.
    attempt = models.PositiveIntegerField(default=0)
    prompt = models.TextField()
    response = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    time_to_first_token = models.FloatField(null=True, blank=True, help_text="Seconds.")
    tokens_per_second = models.FloatField(null=True, blank=True)
    # The answer ended at the model's token limit, mid-sentence perhaps: the page marks it.
    cut_by_limit = models.BooleanField(default=False)
    # The voter pressed stop: the job ends the answer where it is at its next check.
    stop_requested = models.BooleanField(default=False)
    style_tokens = models.PositiveIntegerField(null=True, blank=True)
    style_headers = models.PositiveIntegerField(null=True, blank=True)
    style_list_items = models.PositiveIntegerField(null=True, blank=True)
    style_bold = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(default=timezone.now, help_text="When the current attempt was queued.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["side_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["side", "index"], name="turn_index_unique_per_side"),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]), name="turn_known_status"
            ),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(started_at__isnull=True) | Q(finished_at__gte=F("started_at")),
                name="turn_finishes_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} turn {self.index}"

    def save(self, *args, **kwargs) -> None:
        counts = turn_style_fields(self.response) if self.status == self.Status.DONE else dict.fromkeys(STYLE_FIELDS)
        for name, value in counts.items():
            setattr(self, name, value)
        if kwargs.get("update_fields") is not None and "response" in kwargs["update_fields"]:
            kwargs["update_fields"] = {*kwargs["update_fields"], *STYLE_FIELDS}
        super().save(*args, **kwargs)


# Reasons a voter may give after the vote, for each answer: what was good about it, what was wrong with it.
REASON_TAGS = {
    "correct": "Correct", "helpful": "Helpful", "clear": "Clear", "well_formatted": "Well formatted",
    "wrong": "Wrong", "refused": "Refused", "too_long": "Too long", "unsafe": "Unsafe",
}


class Vote(models.Model):
    class Choice(models.TextChoices):
        LEFT = "left", "A is better"
        RIGHT = "right", "B is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "bothbad", "Both are bad"

    battle = models.OneToOneField(Battle, on_delete=models.CASCADE, related_name="vote")
    choice = models.CharField(max_length=10, choices=Choice.choices)
    session_key = models.CharField(max_length=64)
    # An answer named its own model or maker: the leaderboard can leave such votes out, as LMArena's cleaning does.
    identity_leak = models.BooleanField(default=False)
    # Cast by a simulated voter (arena.simulated): never on the public leaderboard, exported only when asked for.
    simulated = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The voter's optional reasons, given after the vote: {"left": [tag, ...], "right": [tag, ...]} with tags from
    # REASON_TAGS. They never change the choice nor the scores; the leaderboard counts them.
    reasons = models.JSONField(null=True, blank=True)  # None: none given (the vote's insert names no reasons)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(choice__in=["left", "right", "tie", "bothbad"]), name="vote_known_choice"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.battle.public_id}: {self.choice}"


class VoteFact(models.Model):
    """One narrow row per vote, written with it (arena.facts): what a leaderboard snapshot and the trust screen
    read, as fixed-width numbers and without a join. ``counted``: the vote would count on a board (an anonymous
    battle, no identity leak, no failed side nor one retried before the vote, two different models of
    ``modality``); the board is the public one unless ``simulated``."""

    vote = models.OneToOneField(Vote, on_delete=models.CASCADE, primary_key=True, related_name="fact")
    battle_id = models.BigIntegerField()
    modality = models.CharField(max_length=16, blank=True)
    counted = models.BooleanField()
    simulated = models.BooleanField()
    imported = models.BooleanField()
    left_model_id = models.BigIntegerField()
    right_model_id = models.BigIntegerField()
    outcome = models.SmallIntegerField(help_text="Twice the left model's outcome: 2 won, 1 tie or both bad, 0 lost.")
    voted_at = models.DateTimeField()
    done_at = models.DateTimeField(null=True, help_text="When the battle's last answer finished.")
    chars = models.BigIntegerField(help_text="Characters of the done answers, both sides.")
    turns = models.IntegerField(help_text="Done turns, both sides.")
    style_left_0 = models.IntegerField()
    style_left_1 = models.IntegerField()
    style_left_2 = models.IntegerField()
    style_left_3 = models.IntegerField()
    style_right_0 = models.IntegerField()
    style_right_1 = models.IntegerField()
    style_right_2 = models.IntegerField()
    style_right_3 = models.IntegerField()
    has_text = models.BooleanField(help_text="Both sides have an answer to count style on.")
    categories = models.BigIntegerField(help_text="Bitmask over arena.facts.CATEGORY_BITS; -1: others, see the battle.")
    session_code = models.BigIntegerField()
    address_code = models.BigIntegerField()
    # The battle's, for the trust screen (which then reads no voted battle's row): when it started, and its
    # normalised first prompt's code (arena.facts.prompt_code; 0 where not known).
    started_at = models.DateTimeField(null=True)
    prompt_code = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        # The votes of no board (or of the simulated voters' or the voice board): their battles are the few voted
        # ones the trust screen reads from the battle table.
        indexes = [models.Index(fields=["battle_id"], condition=~Q(counted=True, modality="text", simulated=False),
                                name="arena_votefact_off_board")]

    def __str__(self) -> str:
        return f"fact of vote {self.vote_id}"


class SimulatedSession(models.Model):
    """A session that belongs to a simulated voter: every vote it casts is marked simulated as it is written."""

    session_key = models.CharField(max_length=64, unique=True)
    voter = models.CharField(max_length=64, help_text="Which simulated voter, e.g. 'length-instruction'.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"simulated voter {self.voter}"
