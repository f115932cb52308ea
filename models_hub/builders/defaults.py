"""The three models every arena has without a network: two comparison models and the in-house MoE."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..forms import check_model_entry_fields
from ..models import ModelEntry
from .gguf import gemma3_build, smollm2_build
from .moe import inhouse_moe_ensure
from .store import BuildError, BuildResult, Log, marker_read

SMOLLM2_SLUG = "smollm2-135m-instruct"
GEMMA3_SLUG = "gemma-3-270m"
INHOUSE_MOE_SLUG = "inhouse-moe-4x135m"


@dataclass(frozen=True)
class DefaultModel:
    slug: str
    build: Callable[[Path, Log], BuildResult]  # (models_dir, log) -> the built checkpoint
    # Facts about the model: kept true on every seed.
    facts: dict[str, Any]
    # Settings an operator may tune in the admin: written only when the entry is created.
    settings: dict[str, Any] = field(default_factory=dict)


def _smollm2(models_dir: Path, log: Log) -> BuildResult:
    return smollm2_build(models_dir / SMOLLM2_SLUG, log=log)


def _gemma3(models_dir: Path, log: Log) -> BuildResult:
    return gemma3_build(models_dir / GEMMA3_SLUG, log=log)


def _inhouse_moe(models_dir: Path, log: Log) -> BuildResult:
    dense = smollm2_build(models_dir / SMOLLM2_SLUG, log=log)
    return inhouse_moe_ensure(models_dir / INHOUSE_MOE_SLUG, dense_dir=dense.path, log=log)


# Short answers by default: on a CPU a 128-token answer comes back in seconds.
_GENERATION = {"max_new_tokens": 128, "temperature": 0.7, "top_p": 0.9, "pool": "default", "sampling_weight": 1.0}
# SmolLM2's chat template, which the MoE inherits, inserts "You are ... SmolLM, trained by Hugging Face" when
# no system prompt is given: the model would name itself to voters. A neutral prompt keeps battles anonymous.
_NEUTRAL_SYSTEM_PROMPT = "You are a helpful assistant."

DEFAULT_MODELS: tuple[DefaultModel, ...] = (
    DefaultModel(
        slug=SMOLLM2_SLUG,
        build=_smollm2,
        facts={
            "organization": "Hugging Face",
            "license": "Apache-2.0",
            "provider": ModelEntry.Provider.TRANSFORMERS,
            "prompt_format": ModelEntry.PromptFormat.CHAT_TEMPLATE,
            "is_inhouse": False,
        },
        settings={
            "display_name": "SmolLM2 135M Instruct",
            "visibility": ModelEntry.Visibility.PUBLIC,
            "system_prompt": _NEUTRAL_SYSTEM_PROMPT,
            **_GENERATION,
        },
    ),
    DefaultModel(
        slug=GEMMA3_SLUG,
        build=_gemma3,
        facts={
            "organization": "Google",
            "license": "Gemma Terms of Use",
            "provider": ModelEntry.Provider.TRANSFORMERS,
            # A base model with no chat template: it continues a plain User/Assistant transcript.
            "prompt_format": ModelEntry.PromptFormat.PLAIN,
            "is_inhouse": False,
        },
        settings={"display_name": "Gemma 3 270M", "visibility": ModelEntry.Visibility.PUBLIC, **_GENERATION},
    ),
    DefaultModel(
        slug=INHOUSE_MOE_SLUG,
        build=_inhouse_moe,
        facts={
            "organization": "In-house",
            "license": "Apache-2.0",
            "provider": ModelEntry.Provider.TRANSFORMERS,
            "prompt_format": ModelEntry.PromptFormat.CHAT_TEMPLATE,
            "is_inhouse": True,
        },
        settings={
            "display_name": "In-house MoE 4x135M",
            "visibility": ModelEntry.Visibility.PREVIEW,
            "codename": "hornbill",
            "system_prompt": _NEUTRAL_SYSTEM_PROMPT,
            **_GENERATION,
        },
    ),
)


@dataclass(frozen=True)
class SeedOutcome:
    slug: str
    entry: ModelEntry | None  # None when the checkpoint was missing and building was skipped
    built: bool
    created: bool


def default_models_seed(*, models_dir: Path, build: bool = True, log: Log = print) -> list[SeedOutcome]:
    """Build what is missing (unless `build` is False) and register the default models, idempotently.

    Safe to run on every start: a complete build is reused, an entry is matched by its slug, its facts are kept
    true and the settings an operator tuned in the admin are left alone.
    """
    models_dir = Path(models_dir)
    outcomes: list[SeedOutcome] = []
    for default in DEFAULT_MODELS:
        path = models_dir / default.slug
        built = False
        if build:
            result = default.build(models_dir, log)
            path, built, marker = result.path, result.built, result.marker
        elif (marker := marker_read(path)) is None:
            log(f"{default.slug}: no complete build at {path}; skipped (run without --skip-build to build it)")
            outcomes.append(SeedOutcome(default.slug, None, False, False))
            continue
        # The lineage of a built default: its build source is its recipe (a trained version has a parent too).
        lineage = {"recipe": marker["source"], "training_data_sha256": marker["source"].get("training_data_sha256", "")}
        facts = {**default.facts, **lineage, "checkpoint_path": str(path.resolve())}
        errors = check_model_entry_fields({**facts, **default.settings})
        if errors:
            raise BuildError(f"{default.slug}: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
        entry, created = ModelEntry.objects.update_or_create(
            slug=default.slug, defaults=facts, create_defaults={**facts, **default.settings}
        )
        log(f"{default.slug}: {'registered' if created else 'already registered, updated'}")
        outcomes.append(SeedOutcome(default.slug, entry, built, created))
    return outcomes
