"""manage.py load_demo_board: fit the repository's sample battles into the demo board (/leaderboard/?board=demo)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from leaderboard.demo import SAMPLE_BATTLES, demo_board_load
from leaderboard.imports import BattleImportError


class Command(BaseCommand):
    help = ("Fit the sample battles (LLMFAO, CC BY 4.0) into a separate demo board at /leaderboard/?board=demo. "
            "Writes no battle, vote or model entry: the demo never mixes with real votes or exports.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--file", default=str(SAMPLE_BATTLES), help="a battle file in LMArena's shape")

    def handle(self, *args, file: str, **options) -> None:
        try:
            snapshot, new = demo_board_load(Path(file))
        except (BattleImportError, OSError) as exc:
            raise CommandError(f"{exc} (the demo board is unchanged)") from None
        models = len(snapshot.payload["categories"]["overall"]["models"])
        verb = "Loaded" if new else "Already loaded:"
        self.stdout.write(self.style.SUCCESS(
            f"{verb} the demo board: {snapshot.votes_used} sample battles, {models} models. "
            f"See /leaderboard/?board=demo"
        ))
