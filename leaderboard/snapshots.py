"""Leaderboard snapshots: the votes in, a fitted leaderboard stored once; and the reads that pages and exports make.

The snapshot job (``leaderboard_snapshot_create``) is the only place that fits. It reads the anonymous votes,
leaves out votes flagged for an identity leak, battles with a failed side and named-mode battles, fits the
ratings library once per category and stores one insert-only ``LeaderboardSnapshot``. Pages and exports read
the newest snapshot and never refit: what they do with it (hiding preview models, re-ranking the models left,
a head-to-head from the stored covariance) is arithmetic on a few arrays.

Two jobs at once (two beat ticks, a beat tick and the command) serialise on a lock (a PostgreSQL advisory lock,
a thread lock on SQLite); the second then finds the vote hash unchanged and stores nothing. A job killed half
way stores nothing either: the snapshot is one INSERT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timezone as dt_timezone
from typing import Any, TypedDict

import numpy as np
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connection, transaction

from arena.models import Battle, Side, Turn, Vote
from models_hub.models import ModelEntry
from ratings import (
    Ranking,
    aggregate,
    head_to_head,
    observed_win_matrix,
    rank_upper_bound,
    rate,
    style_counts,
)

from .models import LeaderboardSnapshot

logger = logging.getLogger(__name__)

PAYLOAD_VERSION = 1
OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5, "bothbad": 0.5}
GROUP = "leaderboard"
_LOCK_KEY = 0x6C656164  # "lead": the advisory lock every snapshot job takes
_thread_lock = threading.Lock()

CATEGORY_LABELS = {
    "overall": "Overall",
    "coding": "Coding",
    "long_prompt": "Longer query",
    "multi_turn": "Multi-turn",
}
LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "ru": "Russian", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic",
    "und": "Undetermined",
}

Progress = Callable[..., Iterable]


def no_progress(iterable: Iterable, **_: Any) -> Iterable:
    return iterable


class ModelRow(TypedDict):
    model_id: int
    score: float
    lower: float
    upper: float
    rank: int
    votes: float
    win_rate: float
    preliminary: bool
    style_score: float | None
    style_lower: float | None
    style_upper: float | None
    style_rank: int | None


class CategoryPayload(TypedDict):
    label: str
    battles: int
    models: list[ModelRow]  # best first
    covariance: list[list[float]]  # (M, M) in the order of models
    style_covariance: list[list[float]] | None
    pair_battles: list[list[float]]  # (M, M) battle counts per pair
    win_matrix: list[list[float | None]]  # (M, M) observed win fraction of row over column, None where never met
    style_coefficients: dict[str, float] | None
    left_out: list[dict[str, Any]]  # {"model_id", "votes", "reason": "few_votes" | "disconnected"}


class Payload(TypedDict):
    version: int
    categories: dict[str, CategoryPayload]  # "overall" first
    votes_over_time: list[tuple[str, int]]  # (ISO day, votes that day)
    min_category_votes: int
    preliminary_votes: int


def category_label(key: str) -> str:
    if key.startswith("lang:"):
        return LANGUAGE_NAMES.get(key[5:], key[5:])
    return CATEGORY_LABELS.get(key, key.replace("_", " ").capitalize())


# ---------------------------------------------------------------------------------------------------------------
# Reading the votes


@dataclass
class LeaderboardVotes:
    """The votes a snapshot uses, one entry per battle: (N,) arrays; ``style`` (N, 2, 4) summed over turns."""

    vote_ids: np.ndarray
    left: np.ndarray  # model entry ids
    right: np.ndarray
    outcome: np.ndarray
    categories: list[list[str]]
    days: list[str]
    style: np.ndarray
    has_text: np.ndarray  # (N,) bool: both sides have answers to count style on

    def __len__(self) -> int:
        return int(self.vote_ids.size)


def leaderboard_battles() -> Any:
    """The battles whose votes count: anonymous, voted, no identity leak, no simulated voter, no failed side."""
    failed = Turn.objects.filter(status=Turn.Status.FAILED).values("side__battle_id")
    return Battle.objects.filter(
        mode=Battle.Mode.ANONYMOUS, vote__isnull=False, vote__identity_leak=False, vote__simulated=False
    ).exclude(id__in=failed)


def leaderboard_votes(*, progress: Progress = no_progress) -> LeaderboardVotes:
    battles = leaderboard_battles()
    votes = list(
        Vote.objects.filter(battle__in=battles)
        .order_by("id")
        .values_list("id", "battle_id", "choice", "battle__categories", "created_at")
    )
    sides: dict[int, dict[str, int]] = {}
    for battle_id, position, model_id in Side.objects.filter(battle__in=battles).values_list(
        "battle_id", "position", "model_id"
    ):
        sides.setdefault(battle_id, {})[position] = model_id
    kept = [
        v for v in votes
        if len(sides.get(v[1], {})) == 2 and sides[v[1]]["left"] != sides[v[1]]["right"]
    ]
    row_of = {v[1]: i for i, v in enumerate(kept)}
    style = np.zeros((len(kept), 2, 4))
    answered = np.zeros((len(kept), 2), dtype=bool)
    turns = (
        Turn.objects.filter(side__battle__in=battles, status=Turn.Status.DONE)
        .values_list("side__battle_id", "side__position", "response")
        .iterator(chunk_size=2000)
    )
    for battle_id, position, response in progress(turns, desc="answers", unit="turn"):
        i = row_of.get(battle_id)
        if i is None:
            continue
        j = 0 if position == "left" else 1
        style[i, j] += style_counts(response)
        answered[i, j] = True
    return LeaderboardVotes(
        vote_ids=np.array([v[0] for v in kept], dtype=np.int64),
        left=np.array([sides[v[1]]["left"] for v in kept], dtype=np.int64),
        right=np.array([sides[v[1]]["right"] for v in kept], dtype=np.int64),
        outcome=np.array([OUTCOME[v[2]] for v in kept], dtype=np.float64),
        categories=[list(v[3] or []) for v in kept],
        days=[v[4].astimezone(dt_timezone.utc).date().isoformat() for v in kept],
        style=style,
        has_text=answered.all(axis=1),
    )


def vote_hash(votes: LeaderboardVotes) -> str:
    """Fingerprint of the vote set and of the settings that shape the fit: equal hashes, equal snapshots."""
    digest = hashlib.sha256()
    digest.update(
        f"v{PAYLOAD_VERSION};{settings.ARENA_LEADERBOARD_MIN_CATEGORY_VOTES};"
        f"{settings.ARENA_LEADERBOARD_PRELIMINARY_VOTES}\n".encode()
    )
    table = np.stack([votes.vote_ids, votes.left, votes.right, (votes.outcome * 2).astype(np.int64)], axis=1)
    digest.update(np.ascontiguousarray(table, dtype="<i8").tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Fitting


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def category_fit(
    left: np.ndarray,
    right: np.ndarray,
    outcome: np.ndarray,
    style: np.ndarray | None,
    *,
    min_votes: int,
    preliminary_votes: int,
    label: str,
) -> CategoryPayload:
    """Fit one category's battles ((N,) model entry ids per side, (N,) outcomes, (N, 2, 4) or None style).

    Models with fewer than ``min_votes`` battles are left out (their battles with them, repeated until every
    model left has enough). Bradley-Terry scores are only comparable within a connected comparison graph, so
    only the largest connected component is fitted; the rest are listed in ``left_out`` as disconnected.
    """
    left_out: list[dict[str, Any]] = []
    keep = np.ones(left.size, dtype=bool)
    while True:
        counts = Counter(left[keep].tolist()) + Counter(right[keep].tolist())
        few = {m for m, n in counts.items() if n < min_votes}
        if not few:
            break
        for m in sorted(few):
            left_out.append({"model_id": int(m), "votes": int(counts[m]), "reason": "few_votes"})
        keep &= ~(np.isin(left, list(few)) | np.isin(right, list(few)))
    ids = np.unique(np.concatenate([left[keep], right[keep]]))
    empty: CategoryPayload = {
        "label": label, "battles": 0, "models": [], "covariance": [], "style_covariance": None,
        "pair_battles": [], "win_matrix": [], "style_coefficients": None, "left_out": left_out,
    }
    if ids.size < 2:
        return empty
    local = {int(m): i for i, m in enumerate(ids)}
    a = np.array([local[int(m)] for m in left[keep]], dtype=np.int64)
    b = np.array([local[int(m)] for m in right[keep]], dtype=np.int64)
    y = outcome[keep]
    components = aggregate(a, b, y, ids.size).components()
    if len(components) > 1:
        main = set(components[0].tolist())
        for comp in components[1:]:
            for i in comp:
                left_out.append({"model_id": int(ids[i]), "votes": int(np.sum(a == i) + np.sum(b == i)),
                                 "reason": "disconnected"})
        inside = np.isin(a, list(main))
        keep_idx = np.flatnonzero(keep)[inside]
        fitted = category_fit(
            left[keep_idx], right[keep_idx], outcome[keep_idx], None if style is None else style[keep_idx],
            min_votes=min_votes, preliminary_votes=preliminary_votes, label=label,
        )
        fitted["left_out"] = left_out + fitted["left_out"]
        return fitted
    names = [str(int(m)) for m in ids]
    st = None if style is None else style[keep]
    try:
        ranking = rate(a, b, y, names, style=st)
    except (ValueError, np.linalg.LinAlgError):
        if st is None:
            raise
        # A style fit with degenerate covariates (e.g. every answer empty) must not cost the plain leaderboard.
        logger.warning("style-controlled fit failed for %s; storing the plain fit only", label, exc_info=True)
        ranking = rate(a, b, y, names)
    wins, battles = observed_win_matrix(aggregate(a, b, y, ids.size))
    order = ranking.order()
    won = np.nansum(np.nan_to_num(wins) * battles, axis=1)
    votes = ranking.votes
    styled = ranking.style_scores is not None
    rows: list[ModelRow] = []
    for i in order:
        rows.append({
            "model_id": int(ids[i]),
            "score": float(ranking.scores[i]),
            "lower": float(ranking.lower[i]),
            "upper": float(ranking.upper[i]),
            "rank": int(ranking.rank[i]),
            "votes": float(votes[i]),
            "win_rate": float(won[i] / votes[i]) if votes[i] else 0.0,
            "preliminary": bool(votes[i] < preliminary_votes),
            "style_score": float(ranking.style_scores[i]) if styled else None,
            "style_lower": float(ranking.style_lower[i]) if styled else None,
            "style_upper": float(ranking.style_upper[i]) if styled else None,
            "style_rank": int(ranking.style_rank[i]) if styled else None,
        })
    sub = np.ix_(order, order)
    return {
        "label": label,
        "battles": int(y.size),
        "models": rows,
        "covariance": ranking.covariance[sub].tolist(),
        "style_covariance": ranking.style_covariance[sub].tolist() if styled else None,
        "pair_battles": battles[sub].tolist(),
        "win_matrix": [[_finite(x) for x in row] for row in wins[sub]],
        "style_coefficients": (
            dict(zip(ranking.style_features, map(float, ranking.style_coefficients))) if styled else None
        ),
        "left_out": left_out,
    }


def leaderboard_payload(votes: LeaderboardVotes, *, progress: Progress = no_progress) -> Payload:
    min_votes = settings.ARENA_LEADERBOARD_MIN_CATEGORY_VOTES
    preliminary = settings.ARENA_LEADERBOARD_PRELIMINARY_VOTES
    tags = Counter(tag for cats in votes.categories for tag in set(cats))
    keys = ["overall"] + [k for k in ("coding", "long_prompt", "multi_turn") if tags[k]] + sorted(
        (k for k in tags if k.startswith("lang:")), key=lambda k: -tags[k]
    )
    # Style counts need both answers; imported battles without text would only add zeros that mean nothing.
    styled = len(votes) > 0 and bool(votes.has_text.all())
    categories: dict[str, CategoryPayload] = {}
    for key in progress(keys, desc="categories", unit="category"):
        if key == "overall":
            mask = np.ones(len(votes), dtype=bool)
        else:
            mask = np.array([key in cats for cats in votes.categories], dtype=bool)
        categories[key] = category_fit(
            votes.left[mask], votes.right[mask], votes.outcome[mask], votes.style[mask] if styled else None,
            min_votes=1 if key == "overall" else min_votes, preliminary_votes=preliminary, label=category_label(key),
        )
    return {
        "version": PAYLOAD_VERSION,
        "categories": categories,
        "votes_over_time": sorted(Counter(votes.days).items()),
        "min_category_votes": min_votes,
        "preliminary_votes": preliminary,
    }


@contextmanager
def _snapshot_lock() -> Iterator[None]:
    """One snapshot job at a time across processes (PostgreSQL) or threads (the embedded SQLite server)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
    else:
        with _thread_lock:
            yield


def leaderboard_snapshot_create(*, force: bool = False, progress: Progress = no_progress) -> LeaderboardSnapshot | None:
    """Fit the leaderboard from the current votes and store a snapshot; None when the votes have not changed
    since the latest snapshot (unless ``force``). Publishes the new snapshot to the leaderboard group."""
    with _snapshot_lock():
        started = time.monotonic()
        votes = leaderboard_votes(progress=progress)
        digest = vote_hash(votes)
        latest = LeaderboardSnapshot.objects.order_by("-id").only("vote_hash").first()
        if latest is not None and latest.vote_hash == digest and not force:
            return None
        payload = leaderboard_payload(votes, progress=progress)
        with transaction.atomic():
            snapshot = LeaderboardSnapshot.objects.create(
                votes_used=len(votes), vote_hash=digest, payload=payload, seconds=time.monotonic() - started
            )
            transaction.on_commit(lambda: leaderboard_publish(snapshot))
    logger.info("leaderboard snapshot %s: %s votes in %.2f s", snapshot.pk, snapshot.votes_used, snapshot.seconds)
    return snapshot


class SnapshotEvent(TypedDict):
    type: str
    id: int
    created_at: str
    votes_used: int


def leaderboard_publish(snapshot: LeaderboardSnapshot) -> None:
    """Tell open leaderboard pages that a snapshot landed. Names nothing: the page fetches what it may see."""
    layer = get_channel_layer()
    if layer is None:
        return
    event: SnapshotEvent = {
        "type": "leaderboard.snapshot", "id": snapshot.pk, "created_at": snapshot.created_at.isoformat(),
        "votes_used": snapshot.votes_used,
    }
    try:
        async_to_sync(layer.group_send)(GROUP, event)
    except Exception:
        logger.warning("could not publish leaderboard snapshot %s", snapshot.pk, exc_info=True)


# ---------------------------------------------------------------------------------------------------------------
# The embedded default's timer (no Celery beat there)

_timer: threading.Thread | None = None


def _timer_loop(interval: float) -> None:
    while True:
        time.sleep(interval)
        try:
            leaderboard_snapshot_create()
        except Exception:
            logger.exception("leaderboard snapshot failed")
        finally:
            close_old_connections()
            connection.close()


def leaderboard_timer_start() -> bool:
    """Start the snapshot timer thread in this (server) process, once; True if started now.

    For the embedded default only (``ARENA_SNAPSHOT_TIMER``, on when generation runs in-process): production
    has Celery beat. Call it from the ASGI module, never from ``AppConfig.ready`` (which management commands
    and tests run too).
    """
    global _timer
    if not settings.ARENA_SNAPSHOT_TIMER or _timer is not None:
        return False
    _timer = threading.Thread(
        target=_timer_loop, args=(float(settings.ARENA_SNAPSHOT_SECONDS),), name="leaderboard-snapshots", daemon=True
    )
    _timer.start()
    return True


# ---------------------------------------------------------------------------------------------------------------
# Selectors: what pages and exports read


def leaderboard_latest() -> LeaderboardSnapshot | None:
    return LeaderboardSnapshot.objects.order_by("-id").first()


@dataclass
class Board:
    """One category of a snapshot as one viewer may see it: the models, best first, and a Ranking of them."""

    snapshot: LeaderboardSnapshot
    category: str
    style: bool
    entries: list[ModelEntry]
    rows: list[dict[str, Any]]
    ranking: Ranking | None
    left_out: list[dict[str, Any]]
    staff: bool


def _visible(entry: ModelEntry | None, staff: bool) -> bool:
    return entry is not None and (staff or entry.visibility == ModelEntry.Visibility.PUBLIC)


def model_label(entry: ModelEntry, staff: bool) -> str:
    """Public pages name only published models; staff see a preview model's codename and its real name."""
    if entry.is_preview:
        return f"{entry.codename} ({entry.display_name})" if staff else entry.codename
    return entry.display_name


def leaderboard_board(
    snapshot: LeaderboardSnapshot, *, category: str = "overall", style: bool = False, staff: bool = False
) -> Board | None:
    """The board for ``category`` (None if the snapshot has no such category). Preview models are left out
    unless ``staff``; the ranks are recomputed over the models shown (Rank (UB) depends on who is listed)."""
    cat = snapshot.payload["categories"].get(category)
    if cat is None:
        return None
    style = bool(style and cat["style_covariance"] is not None)
    ids = [r["model_id"] for r in cat["models"]]
    found = ModelEntry.objects.in_bulk(ids + [o["model_id"] for o in cat["left_out"]])
    shown = [i for i, m in enumerate(ids) if _visible(found.get(m), staff)]
    prefix = "style_" if style else ""
    score = np.array([cat["models"][i][f"{prefix}score"] for i in shown], dtype=np.float64)
    lower = np.array([cat["models"][i][f"{prefix}lower"] for i in shown], dtype=np.float64)
    upper = np.array([cat["models"][i][f"{prefix}upper"] for i in shown], dtype=np.float64)
    entries = [found[ids[i]] for i in shown]
    left_out = [o | {"name": model_label(found[o["model_id"]], staff)}
                for o in cat["left_out"] if _visible(found.get(o["model_id"]), staff)]
    if not shown:
        return Board(snapshot, category, style, [], [], None, left_out, staff)
    sub = np.ix_(shown, shown)
    cov = np.array(cat["style_covariance" if style else "covariance"], dtype=np.float64)[sub]
    pair = np.array(cat["pair_battles"], dtype=np.float64)[sub]
    rank = rank_upper_bound(lower, upper)
    votes = np.array([cat["models"][i]["votes"] for i in shown], dtype=np.float64)
    ranking = Ranking(
        names=tuple(e.display_name for e in entries), scores=score, lower=lower, upper=upper, rank=rank,
        votes=votes, covariance=cov, pair_battles=pair,
    )
    order = ranking.order()
    rows = []
    for i in order:
        model = cat["models"][shown[i]]
        entry = entries[i]
        rows.append({
            "index": int(i), "rank": int(rank[i]), "name": model_label(entry, staff), "slug": entry.slug,
            "score": float(score[i]), "lower": float(lower[i]), "upper": float(upper[i]),
            "plus": float(upper[i] - score[i]), "minus": float(score[i] - lower[i]), "votes": int(round(votes[i])),
            "win_rate": model["win_rate"], "organization": entry.organization, "license": entry.license,
            "is_inhouse": entry.is_inhouse, "is_preview": entry.is_preview, "preliminary": model["preliminary"],
        })
    return Board(snapshot, category, style, entries, rows, ranking, left_out, staff)


def board_plots(board: Board) -> dict[str, Any]:
    """The data the page's four plots draw, in the board's order (best first)."""
    cat = board.snapshot.payload["categories"][board.category]
    ids = [r["model_id"] for r in cat["models"]]
    where = {m: i for i, m in enumerate(ids)}
    order = [where[board.entries[r["index"]].pk] for r in board.rows]
    win = [[cat["win_matrix"][i][j] for j in order] for i in order]
    count = [[cat["pair_battles"][i][j] if i != j else None for j in order] for i in order]
    days = board.snapshot.payload["votes_over_time"]
    return {
        "names": [r["name"] for r in board.rows],
        "scores": [round(r["score"], 2) for r in board.rows],
        "plus": [round(r["plus"], 2) for r in board.rows],
        "minus": [round(r["minus"], 2) for r in board.rows],
        "inhouse": [r["is_inhouse"] for r in board.rows],
        "win_matrix": [[None if x is None else round(x, 4) for x in row] for row in win],
        "battle_matrix": count,
        "days": [d for d, _ in days],
        "votes_per_day": [n for _, n in days],
    }


def board_categories(snapshot: LeaderboardSnapshot) -> list[tuple[str, str, int]]:
    """(key, label, battles) of every category the snapshot holds, overall first."""
    return [(k, c["label"], c["battles"]) for k, c in snapshot.payload["categories"].items()]


def board_head_to_head(board: Board) -> list[dict[str, Any]]:
    """Each in-house model shown on the board against each other model shown: P(better), the score difference
    with its interval, the votes on the pair and the votes still needed (from the stored covariance)."""
    if board.ranking is None:
        return []
    out = []
    for i, entry in enumerate(board.entries):
        if not entry.is_inhouse:
            continue
        rivals = []
        for row in board.rows:
            j = row["index"]
            if j == i:
                continue
            h = head_to_head(board.ranking, board.ranking.names[i], board.ranking.names[j])
            rivals.append({
                "name": row["name"], "organization": row["organization"], "rank": row["rank"],
                "probability_better": h.probability_better, "difference": h.difference, "lower": h.lower,
                "upper": h.upper, "battles": int(round(h.battles)), "more_votes_needed": h.more_votes_needed,
                "predicted_win_rate": h.predicted_win_rate,
            })
        out.append({"name": model_label(entry, board.staff), "score": float(board.ranking.scores[i]), "rivals": rivals})
    return out


def board_rankings_for_csv(
    snapshot: LeaderboardSnapshot, *, category: str, style: bool, staff: bool
) -> Ranking | None:
    """The board as a ``Ranking`` named by display name, with the style-controlled fields filled when
    ``style`` (and the snapshot has them), ready for ``ranking_to_csv``."""
    plain = leaderboard_board(snapshot, category=category, style=False, staff=staff)
    if plain is None or plain.ranking is None:
        return None
    if not style:
        return plain.ranking
    styled = leaderboard_board(snapshot, category=category, style=True, staff=staff)
    if styled is None or not styled.style or styled.ranking is None:
        return plain.ranking
    s = styled.ranking
    return dataclasses.replace(
        plain.ranking, style_scores=s.scores, style_lower=s.lower, style_upper=s.upper, style_rank=s.rank,
        style_covariance=s.covariance,
    )
