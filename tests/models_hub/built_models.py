"""The session fixture that builds the default models once into the real ARENA_MODELS_DIR.

Built there on purpose: the first run converts and upcycles (a few minutes on a CPU), every later run, and
`make run`, reuses the same checkpoints. Imported by the conftest of each test package that needs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from models_hub.builders import DEFAULT_MODELS, INHOUSE_MOE_SLUG, MoeRecipe, marker_read


@pytest.fixture(scope="session")
def built_models() -> dict[str, Path]:
    """{slug: checkpoint directory} for the three default models, built by the same functions seed_models uses."""
    models_dir = Path(settings.ARENA_MODELS_DIR)
    paths = {default.slug: default.build(models_dir, lambda message: None).path for default in DEFAULT_MODELS}
    moe_source = marker_read(paths[INHOUSE_MOE_SLUG])["source"]
    default = MoeRecipe()
    recipe = MoeRecipe(moe_source["experts"], moe_source["top_k"], moe_source["train_steps"], moe_source["seed"])
    if recipe != default:
        pytest.fail(
            f"{paths[INHOUSE_MOE_SLUG]} holds a custom MoE build ({recipe}); the tests check the default one: "
            "run `manage.py build_inhouse_moe --force` to rebuild it."
        )
    return paths
