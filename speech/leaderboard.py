"""The voice leaderboard: the votes of voice battles fitted with the same statistics as the text board.

Reading and fitting reuse the text leaderboard's own pieces (``leaderboard.snapshots.category_fit`` for the
Bradley-Terry fit, intervals and Rank (UB); ``leaderboard_board`` to hide preview models and re-rank), so the two
boards cannot drift apart. A fit is stored insert-only as a ``SpeechLeaderboardSnapshot`` after each vote (a job
through ``inference.dispatch``) or by ``manage.py compute_speech_leaderboard``; the page reads the newest one.
Beside the scores: per model, on the device that spoke most of its clips, mean generation seconds, mean seconds to
the first audio, mean audio seconds and the real-time factor (total audio seconds over total generation seconds),
and the word error rate of the voice's newest intelligibility check (speech.intelligibility), read at page view.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError
from django.db.models import Avg, Count, Sum
from django.db.models.functions import Coalesce

from arena.models import Side, Vote
from arena.selectors import battles_counted
from leaderboard.snapshots import OUTCOME, Board, category_fit, leaderboard_board

from .models import SpeechClip, SpeechLeaderboardSnapshot, SpeechVoiceCheck

_lock = threading.Lock()


def speech_battles() -> Any:
    """The voice battles whose votes count: anonymous, voted, no identity leak, no failed side, speech models."""
    return battles_counted(modality="speech")


@dataclass
class SpeechVotes:
    vote_ids: np.ndarray  # (N,)
    left: np.ndarray  # (N,) model entry ids
    right: np.ndarray
    outcome: np.ndarray  # (N,) 1 left won, 0 right won, 0.5 tie or both bad


def speech_votes() -> SpeechVotes:
    battles = speech_battles()
    votes = list(Vote.objects.filter(battle__in=battles).order_by("id").values_list("id", "battle_id", "choice"))
    sides: dict[int, dict[str, int]] = {}
    for battle_id, position, model_id in Side.objects.filter(battle__in=battles).values_list(
        "battle_id", "position", "model_id"
    ):
        sides.setdefault(battle_id, {})[position] = model_id
    kept = [v for v in votes if len(sides.get(v[1], {})) == 2 and sides[v[1]]["left"] != sides[v[1]]["right"]]
    return SpeechVotes(
        vote_ids=np.array([v[0] for v in kept], dtype=np.int64),
        left=np.array([sides[v[1]]["left"] for v in kept], dtype=np.int64),
        right=np.array([sides[v[1]]["right"] for v in kept], dtype=np.int64),
        outcome=np.array([OUTCOME[v[2]] for v in kept], dtype=np.float64),
    )


def _vote_hash(votes: SpeechVotes) -> str:
    digest = hashlib.sha256(f"speech;{settings.ARENA_LEADERBOARD_PRELIMINARY_VOTES}\n".encode())
    table = np.stack([votes.vote_ids, votes.left, votes.right, (votes.outcome * 2).astype(np.int64)], axis=1)
    digest.update(np.ascontiguousarray(table, dtype="<i8").tobytes())
    return digest.hexdigest()


def clip_figures() -> dict[str, dict[str, float | int | str | None]]:
    """{model entry id (as text): {"clips", "generation_seconds", "first_audio_seconds", "audio_seconds",
    "real_time_factor", "device"}} over the clips each voice spoke on the device that spoke most of them (cpu, cuda
    or remote: a factor means something only on the hardware that served it). Means per clip; the factor is total
    audio over total generation time; first audio is the whole generation for a voice that speaks all at once."""
    rows = (
        SpeechClip.objects.values("turn__side__model_id", "device")
        .annotate(
            clips=Count("id"), gen=Avg("generation_seconds"), audio=Avg("audio_seconds"),
            first=Avg(Coalesce("first_audio_seconds", "generation_seconds")),
            gen_total=Sum("generation_seconds"), audio_total=Sum("audio_seconds"),
        )
        .order_by("turn__side__model_id", "-clips", "device")
    )
    figures: dict[str, dict[str, float | int | str | None]] = {}
    for r in rows:
        figures.setdefault(str(r["turn__side__model_id"]), {
            "clips": r["clips"], "generation_seconds": r["gen"], "first_audio_seconds": r["first"],
            "audio_seconds": r["audio"], "device": r["device"],
            "real_time_factor": r["audio_total"] / r["gen_total"] if r["gen_total"] else None,
        })
    return figures


def speech_snapshot_create() -> SpeechLeaderboardSnapshot | None:
    """Fit the voice votes and store a snapshot, unless the newest one already used exactly these votes."""
    with _lock:
        votes = speech_votes()
        digest = _vote_hash(votes)
        latest = speech_snapshot_latest()
        if latest is not None and latest.vote_hash == digest:
            return None
        overall = category_fit(
            votes.left, votes.right, votes.outcome, None,
            min_votes=1, preliminary_votes=settings.ARENA_LEADERBOARD_PRELIMINARY_VOTES, label="Overall",
        )
        payload = {"categories": {"overall": overall}, "figures": clip_figures()}
        try:
            return SpeechLeaderboardSnapshot.objects.create(
                votes_used=int(votes.vote_ids.size), vote_hash=digest, payload=payload
            )
        except IntegrityError:  # another process stored the same fit first
            return None


def speech_snapshot_latest() -> SpeechLeaderboardSnapshot | None:
    return SpeechLeaderboardSnapshot.objects.order_by("-id").first()


def speech_board(snapshot: SpeechLeaderboardSnapshot, *, staff: bool = False) -> Board | None:
    """The overall voice board as this viewer may see it, each row with its generation figures."""
    board = leaderboard_board(snapshot, category="overall", staff=staff)  # reads only the payload
    if board is None:
        return None
    figures = snapshot.payload.get("figures", {})
    by_slug = {e.slug: e for e in board.entries}
    checks = voice_checks_latest([e.pk for e in board.entries])
    for row in board.rows:
        entry_id = by_slug[row["slug"]].pk
        row.update(figures.get(str(entry_id), {}))
        row["word_error_rate"] = checks.get(entry_id)
    return board


def voice_checks_latest(model_ids: list[int]) -> dict[int, float]:
    """{model entry id: word error rate of its newest intelligibility check} (speech.intelligibility)."""
    latest: dict[int, float] = {}
    rows = SpeechVoiceCheck.objects.filter(model_id__in=model_ids).order_by("-created_at", "-id")
    for model_id, rate in rows.values_list("model_id", "word_error_rate"):
        latest.setdefault(model_id, rate)
    return latest
