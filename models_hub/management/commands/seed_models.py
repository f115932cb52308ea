"""manage.py seed_models: build the offline default models that are missing and register them."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_hub.builders import BuildError, default_models_seed


class Command(BaseCommand):
    help = (
        "Convert or build the offline default models that are missing (SmolLM2 135M Instruct, Gemma 3 270M, "
        "the in-house MoE) under ARENA_MODELS_DIR and register them. Safe to run again: builds are reused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--skip-build", action="store_true", help="Register only the models already built.")
        parser.add_argument(
            "--models-dir", type=Path, default=None, help="Where the checkpoints live (default: ARENA_MODELS_DIR)."
        )

    def handle(self, *args: object, skip_build: bool, models_dir: Path | None, **options: object) -> None:
        try:
            outcomes = default_models_seed(
                models_dir=models_dir or settings.ARENA_MODELS_DIR, build=not skip_build, log=self.stdout.write
            )
        except BuildError as exc:
            raise CommandError(str(exc)) from exc
        registered = sum(1 for outcome in outcomes if outcome.entry is not None)
        self.stdout.write(self.style.SUCCESS(f"{registered} of {len(outcomes)} default models registered."))
