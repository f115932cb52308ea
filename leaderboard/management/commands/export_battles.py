"""manage.py export_battles OUT: battles in LMArena's public shape, or DPO preference pairs."""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from leaderboard.exports import battle_records, battles_csv, battles_jsonl, exported_votes, preference_pairs


class Command(BaseCommand):
    help = "Write the battles (JSON lines or CSV) or preference pairs (JSON lines) to OUT, or '-' for stdout."

    def add_arguments(self, parser) -> None:
        parser.add_argument("out")
        parser.add_argument("--format", choices=["jsonl", "csv", "preferences", "preferences-plain"], default="jsonl")
        parser.add_argument(
            "--user", required=True,
            help="the account the export is made for; it needs the permission leaderboard.export_battles",
        )
        parser.add_argument("--include-flagged", action="store_true",
                            help="keep battles whose prompts the moderation blocklist flags")
        parser.add_argument("--with-models", action="store_true", help="Name the two models in each preference pair.")
        parser.add_argument("--include-simulated", action="store_true", help="Include simulated voters' votes.")

    def handle(self, *args, out: str, format: str, user: str, include_flagged: bool = False,
               with_models: bool = False, include_simulated: bool = False, **options) -> None:
        account = get_user_model().objects.filter(username=user, is_active=True).first()
        if account is None:
            raise CommandError(f"No active user {user!r}.")
        if not account.has_perm("leaderboard.export_battles"):
            raise CommandError(f"User {user!r} lacks the permission leaderboard.export_battles.")
        records = battle_records(exported_votes(simulated=include_simulated), include_flagged=include_flagged)
        if format == "csv":
            chunks = battles_csv(records)
        elif format == "jsonl":
            chunks = battles_jsonl(records)
        else:
            style = "plain" if format == "preferences-plain" else "messages"
            chunks = preference_pairs(records, style=style, with_models=with_models)
        fh = sys.stdout if out == "-" else open(out, "w", encoding="utf-8", newline="")
        try:
            for chunk in chunks:
                fh.write(chunk)
        finally:
            if fh is not sys.stdout:
                fh.close()
