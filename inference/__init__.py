"""Everything that turns a conversation into tokens: providers, the per-process model cache, streaming generation.

The public surface is `generate`, `GenerationResult` and `GenerationError`; importing this package loads neither
torch nor httpx (the providers are imported on first use).
"""

from __future__ import annotations

from .base import GenerationError, GenerationResult
from .generation import generate

__all__ = ["GenerationError", "GenerationResult", "generate"]
