"""Build the checkpoints the arena serves offline: converted dense models and the upcycled in-house MoE."""

from __future__ import annotations

from .defaults import (
    DEFAULT_MODELS,
    GEMMA3_SLUG,
    INHOUSE_MOE_SLUG,
    SMOLLM2_SLUG,
    SeedOutcome,
    default_models_seed,
)
from .gguf import gemma3_build, smollm2_build
from .moe import MoeRecipe, ParameterCounts, inhouse_moe_build, inhouse_moe_ensure, parameter_counts, upcycle
from .store import MARKER_NAME, BuildError, BuildResult, checkpoint_build, checkpoint_is_current, marker_read

__all__ = [
    "DEFAULT_MODELS",
    "GEMMA3_SLUG",
    "INHOUSE_MOE_SLUG",
    "MARKER_NAME",
    "SMOLLM2_SLUG",
    "BuildError",
    "BuildResult",
    "MoeRecipe",
    "ParameterCounts",
    "SeedOutcome",
    "checkpoint_build",
    "checkpoint_is_current",
    "default_models_seed",
    "gemma3_build",
    "inhouse_moe_build",
    "inhouse_moe_ensure",
    "marker_read",
    "parameter_counts",
    "smollm2_build",
    "upcycle",
]
