"""The model registry: every model that can answer in the arena, local checkpoint or remote endpoint."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

pool_name = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "A pool is a Celery queue name: letters, digits, '.', '_' and '-', at most 64 characters.",
)
# The circuit breaker: after this many failed turns in a row a model is not drawn into anonymous battles for
# BREAKER_COOLDOWN; then it is drawn again, and one more failure opens the breaker again, one success closes it.
BREAKER_FAILURES = 3
BREAKER_COOLDOWN = timedelta(minutes=2)

env_var_name = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
    "Give the name of an environment variable (letters, digits and '_'), never the key itself.",
)

language_codes = RegexValidator(
    r"^([a-z]{2,3}(,[a-z]{2,3})*)?$", "Give ISO 639-1 language codes separated by commas, e.g. en,fr."
)


class ModelEntry(models.Model):
    class Provider(models.TextChoices):
        TRANSFORMERS = "transformers", "Local transformers checkpoint"
        OPENAI = "openai", "OpenAI-compatible endpoint"
        ESPEAK = "espeak", "Local espeak-ng voice"
        PIPER = "piper", "Local Piper neural voice"
        KOKORO = "kokoro", "Local Kokoro neural voice"

    class Modality(models.TextChoices):
        TEXT = "text", "Text"
        SPEECH = "speech", "Speech"

    class PromptFormat(models.TextChoices):
        CHAT_TEMPLATE = "chat", "The tokenizer's chat template"
        PLAIN = "plain", "Plain transcript (base models)"

    class Visibility(models.TextChoices):
        PUBLIC = "public", "Public"
        PREVIEW = "preview", "Preview under a codename"

    slug = models.SlugField(max_length=64, unique=True)
    display_name = models.CharField(max_length=100, unique=True)
    organization = models.CharField(max_length=100, blank=True)
    license = models.CharField(max_length=100, blank=True)

    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.TRANSFORMERS)
    # What the model answers with: text battles and voice battles each draw only their own modality.
    modality = models.CharField(max_length=10, choices=Modality.choices, default=Modality.TEXT, db_index=True)
    voice = models.CharField(
        max_length=100, blank=True,
        help_text="Speech: the voice, e.g. en-us+m3 for espeak-ng or alloy for an OpenAI-compatible endpoint.",
    )
    languages = models.CharField(
        max_length=100, blank=True, validators=[language_codes],
        help_text="Speech: the languages the voice reads, as ISO 639-1 codes (en,fr); blank for any language. A "
        "voice battle draws only voices that read its text's language.",
    )
    checkpoint_path = models.CharField(
        max_length=500, blank=True, help_text="Transformers: a local checkpoint directory holding config.json."
    )
    base_url = models.URLField(
        max_length=500, blank=True, help_text="OpenAI-compatible: the base URL, for example http://host:8000/v1"
    )
    remote_model = models.CharField(max_length=200, blank=True, help_text="OpenAI-compatible: the model name.")
    api_key_env = models.CharField(
        max_length=128,
        blank=True,
        validators=[env_var_name],
        help_text="OpenAI-compatible: the environment variable that holds the API key (never the key itself).",
    )
    prompt_format = models.CharField(max_length=10, choices=PromptFormat.choices, default=PromptFormat.CHAT_TEMPLATE)

    max_new_tokens = models.PositiveIntegerField(
        default=256, validators=[MinValueValidator(1), MaxValueValidator(8192)]
    )
    temperature = models.FloatField(default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    top_p = models.FloatField(default=0.9, validators=[MinValueValidator(0.01), MaxValueValidator(1.0)])
    system_prompt = models.TextField(blank=True)

    pool = models.CharField(max_length=64, default="default", validators=[pool_name])
    sampling_weight = models.FloatField(default=1.0, validators=[MinValueValidator(0.0)])
    is_active = models.BooleanField(default=True)
    is_inhouse = models.BooleanField(default=False, help_text="The team's own model, given a share of battles.")
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    codename = models.CharField(
        max_length=64, blank=True, help_text="Preview models are shown to voters by this name after a vote."
    )

    # FastChat's sampling knobs (serve/gradio_block_arena_anony.py), kept in the registry. None of them reaches the
    # voter: they change which pair is drawn, never what a side shows before the vote.
    battle_targets = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="targeted_by",
        help_text="Named rivals: when this model is drawn first, its rival is one of these in target share of draws.",
    )
    battle_target_share = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="The share of this model's first draws whose rival is one of its battle targets (0 to 1).",
    )
    boost_factor = models.FloatField(
        default=1.0, validators=[MinValueValidator(1.0), MaxValueValidator(100.0)],
        help_text="A new model's sampling weight is multiplied by this until it has the votes below.",
    )
    boost_until_votes = models.PositiveIntegerField(
        default=0, help_text="The boost lasts until the latest leaderboard counts this many votes on the model.",
    )
    never_meets = models.ManyToManyField(
        "self", symmetrical=True, blank=True,
        help_text="Models this one is never drawn against in anonymous battles.",
    )
    anonymous_excluded = models.BooleanField(
        default=False, help_text="Left out of anonymous battles (still chosen by name in named and single battles).",
    )
    # Retired: out of every battle, listed apart on the public leaderboard with its last score.
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The head-to-head verdict against its parent from the latest public snapshot (written by the leaderboard when
    # it stores one): {"snapshot": id, "verdict": "better" | "worse" | "not yet", "lower", "upper", "parent"}.
    parent_verdict = models.JSONField(default=dict, blank=True, editable=False)
    # A preview promoted although the head-to-head verdict did not show it beats its parent: who said why.
    promotion_override = models.TextField(blank=True, editable=False)

    failures_in_row = models.PositiveIntegerField(
        default=0, editable=False, help_text="Failed turns since the model last answered."
    )
    breaker_open_until = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="While set and in the future, the model is not drawn into anonymous battles.",
    )

    # Lineage: where a checkpoint came from. A trained version is a new entry whose parent is the entry it was
    # trained from; `recipe` says how (the trainer's settings), `training_data_sha256` what text or pairs it saw,
    # and `training_votes` which votes it learnt from (count, hash of their ids, the filters used).
    version = models.PositiveIntegerField(default=1, help_text="1 for a built model; a trained child is parent + 1.")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children",
        help_text="The model entry this version was trained from.",
    )
    recipe = models.JSONField(default=dict, blank=True, help_text="How this checkpoint was built or trained.")
    training_data_sha256 = models.CharField(max_length=64, blank=True)
    training_votes = models.JSONField(
        default=dict, blank=True, help_text="The votes this version learnt from: count, sha256 of their ids, filters."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_name"]
        verbose_name = "model entry"
        verbose_name_plural = "model entries"
        permissions = [
            ("publish_preview", "Can publish a preview model under its real name"),
            ("test_modelentry", "Can test a model entry against its server"),
            ("retire_modelentry", "Can retire a model entry and bring it back"),
            ("override_promotion", "Can promote a preview without a verdict that it beats its parent"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(sampling_weight__gte=0), name="model_entry_weight_non_negative"),
            models.CheckConstraint(
                condition=Q(provider__in=["transformers", "openai", "espeak", "piper", "kokoro"]),
                name="model_entry_known_provider",
            ),
            models.CheckConstraint(
                condition=~Q(visibility="preview") | ~Q(codename=""), name="model_entry_preview_has_codename"
            ),
            models.CheckConstraint(condition=Q(modality__in=["text", "speech"]), name="model_entry_known_modality"),
        ]

    def __str__(self) -> str:
        return self.display_name

    def reads(self, language: str) -> bool:
        """Whether this voice reads `language` (an ISO 639-1 code; "und", unknown, is read by every voice)."""
        codes = [c for c in self.languages.split(",") if c]
        return not codes or language == "und" or language in codes

    @property
    def is_preview(self) -> bool:
        return self.visibility == self.Visibility.PREVIEW

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None

    @property
    def version_label(self) -> str:
        """"v2, from <parent's display name> v1": how staff pages and exports name a trained version."""
        if self.parent_id is None:
            return f"v{self.version}"
        return f"v{self.version}, from {self.parent.display_name}"

    @property
    def public_name(self) -> str:
        """The name a voter may see after the vote: a preview model's codename, else its display name."""
        return self.codename if self.is_preview else self.display_name

    def breaker_is_open(self, now: datetime | None = None) -> bool:
        return self.breaker_open_until is not None and self.breaker_open_until > (now or timezone.now())


def breaker_record(entry_id: int, *, ok: bool) -> None:
    """Feed the model's circuit breaker with the outcome of one turn: a success closes it, the BREAKER_FAILURES-th
    failure in a row (and every one after it, once the cool-down let the model back in) opens it."""
    entries = ModelEntry.objects.filter(pk=entry_id)
    if ok:
        entries.exclude(failures_in_row=0, breaker_open_until__isnull=True).update(
            failures_in_row=0, breaker_open_until=None
        )
        return
    now = timezone.now()
    # One UPDATE each, so concurrent turns of the same model count every failure.
    entries.update(failures_in_row=F("failures_in_row") + 1)
    entries.filter(failures_in_row__gte=BREAKER_FAILURES).update(breaker_open_until=now + BREAKER_COOLDOWN)
