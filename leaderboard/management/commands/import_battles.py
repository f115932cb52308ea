"""manage.py import_battles FILE: load battles in LMArena's public shape (JSON lines, JSON or CSV)."""

from __future__ import annotations

from functools import partial

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from leaderboard.imports import BattleImportError, battles_import


class Command(BaseCommand):
    help = ("Import battles (model_a, model_b, winner, and optionally conversation_a/b, anony, tstamp, judge, "
            "language, question_id) from a JSON lines, JSON or CSV file. Idempotent; all or nothing.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--quiet", action="store_true", help="no progress bars")

    def handle(self, *args, file: str, quiet: bool, **options) -> None:
        progress = partial(tqdm, file=self.stderr._out, disable=quiet, leave=False)
        try:
            result = battles_import(file, progress=progress)
        except (BattleImportError, OSError) as exc:
            raise CommandError(f"{exc} (nothing was imported)") from None
        self.stdout.write(self.style.SUCCESS(
            f"Imported {result.created} battles ({result.skipped} already imported); "
            f"{len(result.models_created)} new inactive model entries."
        ))
