"""manage.py compute_leaderboard: fit and store a leaderboard snapshot now, with progress bars."""

from __future__ import annotations

from functools import partial

from django.core.management.base import BaseCommand
from tqdm import tqdm

from leaderboard.models import LeaderboardSnapshot
from leaderboard.snapshots import leaderboard_snapshot_create


class Command(BaseCommand):
    help = "Fit the leaderboard from the current votes and store a snapshot (skipped when the votes are unchanged)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--force", action="store_true", help="store a snapshot even if the votes are unchanged")
        parser.add_argument("--quiet", action="store_true", help="no progress bars")
        parser.add_argument("--board", choices=LeaderboardSnapshot.Board.values, default="public",
                            help="public (default), or simulated: the staff's board of simulated voters' votes")

    def handle(self, *args, force: bool, quiet: bool, board: str, **options) -> None:
        progress = partial(tqdm, file=self.stderr._out, disable=quiet, leave=False)
        snapshot = leaderboard_snapshot_create(force=force, progress=progress, board=board)
        if snapshot is None:
            self.stdout.write("The votes have not changed since the latest snapshot; nothing stored."
                              if board == "public" else "No simulated votes, or none since the latest snapshot.")
            return
        categories = ", ".join(snapshot.payload["categories"])
        self.stdout.write(self.style.SUCCESS(
            f"Stored snapshot {snapshot.pk}: {snapshot.votes_used} votes in {snapshot.seconds:.2f} s; "
            f"categories: {categories}"
        ))
