"""manage.py build_inhouse_moe: upcycle the dense SmolLM2 into the in-house Mixtral-architecture MoE."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_hub.builders import INHOUSE_MOE_SLUG, SMOLLM2_SLUG, BuildError, MoeRecipe, inhouse_moe_build, smollm2_build


class Command(BaseCommand):
    help = (
        "Build the in-house MoE by sparse upcycling of SmolLM2 (every expert a copy of the dense MLP, a small "
        "random router), optionally with a short training run. Reuses a build of the same source and recipe."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = MoeRecipe()
        parser.add_argument("--experts", type=int, default=defaults.experts, help="Number of experts (E).")
        parser.add_argument("--top-k", type=int, default=defaults.top_k, help="Experts per token.")
        parser.add_argument(
            "--train-steps",
            type=int,
            default=defaults.train_steps,
            help="Continued training steps with the load-balancing loss (0: the pure upcycle).",
        )
        parser.add_argument("--seed", type=int, default=defaults.seed, help="Seed for the router and training.")
        parser.add_argument("--force", action="store_true", help="Build again even if an up-to-date build exists.")
        parser.add_argument(
            "--models-dir", type=Path, default=None, help="Where the dense model is (default: ARENA_MODELS_DIR)."
        )
        parser.add_argument(
            "--output", type=Path, default=None, help=f"Where to write the MoE (default: <models-dir>/{INHOUSE_MOE_SLUG})."
        )

    def handle(self, *args: object, **options: object) -> None:
        models_dir = Path(options["models_dir"] or settings.ARENA_MODELS_DIR)
        recipe = MoeRecipe(
            experts=options["experts"], top_k=options["top_k"], train_steps=options["train_steps"], seed=options["seed"]
        )
        try:
            recipe.check()
            dense = smollm2_build(models_dir / SMOLLM2_SLUG, log=self.stdout.write)
            result = inhouse_moe_build(
                Path(options["output"] or models_dir / INHOUSE_MOE_SLUG),
                dense_dir=dense.path,
                recipe=recipe,
                force=options["force"],
                log=self.stdout.write,
            )
        except BuildError as exc:
            raise CommandError(str(exc)) from exc
        marker = result.marker
        self.stdout.write(
            self.style.SUCCESS(
                f"In-house MoE {'built' if result.built else 'up to date'} at {result.path}: "
                f"{marker['experts']} experts, top-{marker['top_k']}, "
                f"{marker['total_parameters'] / 1e6:.1f}M parameters in total, "
                f"{marker['active_parameters'] / 1e6:.1f}M active per token."
            )
        )
