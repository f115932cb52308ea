from __future__ import annotations

from tests.models_hub.built_models import built_models

__all__ = ["built_models"]
