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
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

import numpy as np
from django.conf import settings
from django.db import close_old_connections, connection, transaction

from arena.events import group_send
from arena.facts import CATEGORY_BITS, OTHER_CATEGORIES, memory_release, vote_facts_read
from arena.models import REASON_TAGS, Battle, Turn, Vote
from arena.selectors import battles_counted, draw_fit_latest
from arena.services import draw_fit_publish
from models_hub.models import ModelEntry
from trust.risk import BattleTable, RiskResult, VoteTable, battle_table, columns_empty, risk_recompute
from ratings import (
    Ranking,
    aggregate,
    head_to_head,
    observed_win_matrix,
    rank_upper_bound,
    rate,
    sequential_head_to_head,
)
from ratings.sequential import NOT_YET

from .models import LeaderboardSnapshot

T = TypeVar("T")
logger = logging.getLogger(__name__)

# 2: per-category vote counts; style control fitted on the battles that have answer text. 3: each model's speed and
# the voters' reason tags.
PAYLOAD_VERSION = 3
OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5, "bothbad": 0.5}
GROUP = "leaderboard"
_LOCK_KEY = 0x6C656164  # "lead": the advisory lock every snapshot job takes
_thread_lock = threading.Lock()

# Votes still needed on a pair are given up to this many; beyond it the page says "more than" the cap.
VOTES_NEEDED_CAP = 10_000

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
    votes: int  # every counted vote tagged with the category, fitted or left out
    battles: int  # the battles fitted (the largest connected group of models with enough votes)
    style_battles: int  # the battles the style-controlled fit used: those with both answers' text
    models: list[ModelRow]  # best first
    covariance: list[list[float]]  # (M, M) in the order of models
    style_covariance: list[list[float | None]] | None  # None where a model has no style-controlled score
    pair_battles: list[list[float]]  # (M, M) battle counts per pair
    style_pair_battles: list[list[float | None]] | None  # over the style fit's battles, where fewer (else None)
    win_matrix: list[list[float | None]]  # (M, M) observed win fraction of row over column, None where never met
    style_coefficients: dict[str, float] | None
    left_out: list[dict[str, Any]]  # {"model_id", "votes", "reason": "few_votes" | "disconnected"}
    one_sided: list[dict[str, Any]]  # {"model_id", "never": "won" | "lost"}: its score is a placeholder
    style_left_out: list[dict[str, Any]]  # models ranked but without a style-controlled score: reason "no_text"


class ModelSpeed(TypedDict):
    tokens_per_second: float | None  # the median over the model's timed turns
    first_token_seconds: float | None  # the median time to the first token
    turns: int  # the timed turns behind the medians
    pool: str  # the hardware pool its entry runs on


class Payload(TypedDict, total=False):
    version: int
    categories: dict[str, CategoryPayload]  # "overall" first
    votes_over_time: list[tuple[str, int]]  # (ISO day, votes that day)
    min_category_votes: int
    preliminary_votes: int
    speed: dict[str, ModelSpeed]  # model entry id (as text: JSON) -> its speed; none for a model never timed
    reasons: dict[str, dict[str, int]]  # model entry id -> reason tag -> times voters gave it to the model's answer


def category_label(key: str) -> str:
    if key.startswith("lang:"):
        return LANGUAGE_NAMES.get(key[5:], key[5:])
    return CATEGORY_LABELS.get(key, key.replace("_", " ").capitalize())


# ---------------------------------------------------------------------------------------------------------------
# Reading the votes


@dataclass
class LeaderboardVotes:
    """The votes a snapshot uses, one entry per battle: (N,) arrays; ``style`` (N, 2, 4) int32 summed over turns."""

    vote_ids: np.ndarray
    left: np.ndarray  # model entry ids
    right: np.ndarray
    outcome: np.ndarray
    categories: np.ndarray  # bitmask over arena.facts.CATEGORY_BITS, or OTHER_CATEGORIES
    other_categories: dict[int, list[str]]  # vote id -> its categories, for those outside CATEGORY_BITS
    style: np.ndarray
    has_text: np.ndarray  # (N,) bool: both sides have answers to count style on
    # For the trust screen (trust.risk.VoteTable), read in the same pass: the battle's session and address codes
    # (arena.facts.key_code), when the vote was cast and the last answer finished (Unix seconds; nan for none),
    # the answers' characters and turns summed over both sides, and whether the battle was imported.
    session: np.ndarray
    address: np.ndarray
    voted_at: np.ndarray
    done: np.ndarray
    chars: np.ndarray
    turns: np.ndarray
    imported: np.ndarray
    started: np.ndarray  # when the battle started (Unix seconds), and its first prompt's code: the screen's
    prompt: np.ndarray  # battle table takes the voted battles from these

    def __len__(self) -> int:
        return int(self.vote_ids.size)

    @property
    def days(self) -> np.ndarray:
        """Each vote's UTC day, as days since 1970-01-01."""
        return np.floor(self.voted_at / 86400.0).astype(np.int64)

    def in_category(self, key: str) -> np.ndarray:
        """(N,) True for the votes whose battle has category ``key``."""
        bit = CATEGORY_BITS.index(key) if key in CATEGORY_BITS else None
        mask = _has_bit(self.categories, bit) if bit is not None else np.zeros(len(self), dtype=bool)
        other = self.categories == OTHER_CATEGORIES
        if other.any():
            rows = np.flatnonzero(other)
            mask[rows] = [key in self.other_categories.get(int(v), ()) for v in self.vote_ids[rows].tolist()]
        return mask

    def category_counts(self) -> Counter:
        """Votes per category."""
        tags: Counter = Counter()
        known = self.categories[self.categories != OTHER_CATEGORIES]
        for bit, name in enumerate(CATEGORY_BITS):
            count = int(np.count_nonzero(_has_bit(known, bit)))
            if count:
                tags[name] = count
        for cats in self.other_categories.values():
            tags.update(set(cats))
        return tags


def _has_bit(masks: np.ndarray, bit: int) -> np.ndarray:
    """(N,) whether each bitmask has ``bit``; the masks are read in the narrowest integer that holds them, which
    has no such bit where the bit is past its width."""
    if masks.dtype.kind in "iu" and 1 << bit > np.iinfo(masks.dtype).max:
        return np.zeros(masks.size, dtype=bool)
    return (masks & (1 << bit)) != 0


def leaderboard_battles(*, board: str = "public") -> Any:
    """The text battles whose votes count (voice battles have their own board, speech.leaderboard); with
    ``board="simulated"`` the simulated voters' battles instead, for the staff's board of them."""
    return battles_counted(modality="text", simulated=board == LeaderboardSnapshot.Board.SIMULATED)


def leaderboard_votes(*, board: str = "public", progress: Progress = no_progress) -> LeaderboardVotes:
    """The votes of ``leaderboard_battles()`` in vote order, from their fact rows (arena.facts): one streamed read
    of fixed-width numbers, no join. The same read holds what the trust screen needs (who voted when, how long
    the answers were), so it reads no votes itself."""
    facts = vote_facts_read(modality="text", simulated=board == LeaderboardSnapshot.Board.SIMULATED)
    other_ids = facts.vote_ids[facts.categories == OTHER_CATEGORIES].tolist()
    other: dict[int, list[str]] = {}
    for start in range(0, len(other_ids), 5000):
        other.update((pk, list(cats or [])) for pk, cats in Vote.objects.filter(
            pk__in=other_ids[start:start + 5000]).values_list("pk", "battle__categories"))
    return LeaderboardVotes(
        vote_ids=facts.vote_ids, left=facts.left, right=facts.right, outcome=facts.outcome2 / np.float32(2),
        categories=facts.categories, other_categories=other, style=facts.style, has_text=facts.has_text,
        session=facts.session, address=facts.address, voted_at=facts.voted_at, done=facts.done,
        chars=facts.chars, turns=facts.turns, imported=facts.imported, started=facts.started, prompt=facts.prompt,
    )


def model_speeds(*, model_ids: Iterable[int] | None = None) -> dict[str, ModelSpeed]:
    """Each model's median tokens per second and median seconds to the first token over the latest
    ``ARENA_LEADERBOARD_SPEED_TURNS`` done turns of anonymous battles that the turn job timed, with its entry's
    pool; keyed by model entry id as text. A model with no timed turn in that window has no entry.
    ``model_ids``: only these models (default: every model).

    The window keeps the read bounded whatever the arena's size (newest turns first, by the primary key: an index
    scan that stops at the window), and shows the speed of the hardware that serves the model now."""
    turns = Turn.objects.filter(status=Turn.Status.DONE, side__battle__mode=Battle.Mode.ANONYMOUS).exclude(
        tokens_per_second__isnull=True, time_to_first_token__isnull=True)
    if model_ids is not None:
        turns = turns.filter(side__model_id__in=list(model_ids))
    turns = turns.order_by("-pk")[: settings.ARENA_LEADERBOARD_SPEED_TURNS]
    rows = list(turns.values_list("side__model_id", "tokens_per_second", "time_to_first_token"))
    if not rows:
        return {}
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    timed = np.array([(r[1], r[2]) for r in rows], dtype=np.float64)  # (T, 2); None -> nan
    del rows
    order = np.argsort(ids, kind="stable")
    models, starts = np.unique(ids[order], return_index=True)
    pools = dict(ModelEntry.objects.filter(pk__in=models.tolist()).values_list("pk", "pool"))

    def median(column: np.ndarray) -> float | None:
        column = column[np.isfinite(column)]
        return float(np.median(column)) if column.size else None

    out: dict[str, ModelSpeed] = {}
    for model_id, part in zip(models.tolist(), np.split(timed[order], starts[1:])):
        out[str(model_id)] = {
            "tokens_per_second": median(part[:, 0]), "first_token_seconds": median(part[:, 1]),
            "turns": int(part.shape[0]), "pool": pools.get(model_id, ""),
        }
    return out


def reason_counts(votes: LeaderboardVotes) -> dict[str, dict[str, int]]:
    """How often voters gave each reason tag to each model's answer, over ``votes`` (the counted ones); keyed by
    model entry id as text, tags in REASON_TAGS order. Read after the fit's votes: a reason never moves a score."""
    counts: dict[int, Counter] = {}
    if not len(votes):
        return {}
    rows = Vote.objects.filter(reasons__isnull=False).values_list("pk", "reasons").order_by("pk")
    for vote_id, reasons in rows.iterator(chunk_size=5000):
        at = int(np.searchsorted(votes.vote_ids, vote_id))
        if at >= len(votes) or int(votes.vote_ids[at]) != vote_id or not isinstance(reasons, dict):
            continue  # not a counted vote of this board
        for position, model_id in (("left", int(votes.left[at])), ("right", int(votes.right[at]))):
            tags = reasons.get(position) or []
            counts.setdefault(model_id, Counter()).update(t for t in tags if t in REASON_TAGS)
    return {str(m): {t: c[t] for t in REASON_TAGS if c[t]} for m, c in sorted(counts.items()) if +c}


def vote_hash(votes: LeaderboardVotes, *, reasons: dict[str, dict[str, int]] | None = None) -> str:
    """Fingerprint of the vote set, of the settings that shape the fit and of the reasons given with the votes:
    equal hashes, equal snapshots."""
    digest = hashlib.sha256()
    if reasons:
        digest.update(json.dumps(reasons, sort_keys=True).encode())
    digest.update(
        f"v{PAYLOAD_VERSION};{settings.ARENA_LEADERBOARD_MIN_CATEGORY_VOTES};"
        f"{settings.ARENA_LEADERBOARD_PRELIMINARY_VOTES}\n".encode()
    )
    step = 1 << 20  # rows at a time: the same bytes as the whole (N, 4) table, without it in memory
    for start in range(0, len(votes), step):
        part = slice(start, start + step)
        table = np.stack([votes.vote_ids[part], votes.left[part], votes.right[part],
                          (votes.outcome[part] * 2).astype(np.int64)], axis=1)
        digest.update(np.ascontiguousarray(table, dtype="<i8").tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Fitting


def _rows(mask: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray]:
    """Take a column's rows that ``mask`` marks; with no mask, or one that marks every row, the column as it is
    (at ten million votes a copy of each column costs a gigabyte)."""
    if mask is None or mask.all():
        return lambda column: column
    return lambda column: column[mask]


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
    has_text: np.ndarray | None = None,
) -> CategoryPayload:
    """Fit one category's battles ((N,) model entry ids per side, (N,) outcomes, (N, 2, 4) or None style).

    Models with fewer than ``min_votes`` battles are left out (their battles with them, repeated until every
    model left has enough). Bradley-Terry scores are only comparable within a connected comparison graph, so
    only the largest connected component is fitted; the rest are listed in ``left_out`` as disconnected.

    ``has_text`` ((N,) bool) marks the battles whose style counts mean something (both answers' text is
    known; imported battles may have none). Where some lack it, the plain fit uses every battle and the style
    fit only those with text, by the same rules; a model without enough of them has no style-controlled score.
    """
    if style is not None and has_text is not None and not has_text.all():
        plain = category_fit(left, right, outcome, None, min_votes=min_votes, preliminary_votes=preliminary_votes,
                             label=label)
        styled = category_fit(left[has_text], right[has_text], outcome[has_text], style[has_text],
                              min_votes=min_votes, preliminary_votes=preliminary_votes, label=label)
        return _style_merged(plain, styled)
    left_out: list[dict[str, Any]] = []
    keep = np.ones(left.size, dtype=bool)
    size = int(max(left.max(), right.max())) + 1 if left.size else 0  # model ids are small positive integers
    while True:
        counts = np.bincount(left[keep], minlength=size) + np.bincount(right[keep], minlength=size)
        few = np.flatnonzero((counts > 0) & (counts < min_votes))
        if not few.size:
            break
        for m in few.tolist():
            left_out.append({"model_id": m, "votes": int(counts[m]), "reason": "few_votes"})
        gone = np.zeros(size, dtype=bool)
        gone[few] = True
        keep &= ~(gone[left] | gone[right])
    ids = np.flatnonzero(counts)
    empty: CategoryPayload = {
        "label": label, "votes": int(left.size), "battles": 0, "style_battles": 0, "models": [], "covariance": [],
        "style_covariance": None, "pair_battles": [], "style_pair_battles": None, "win_matrix": [],
        "style_coefficients": None, "left_out": left_out, "style_left_out": [], "one_sided": [],
    }
    if ids.size < 2:
        return empty
    pick = _rows(keep)
    local = np.zeros(size, dtype=np.int32)
    local[ids] = np.arange(ids.size, dtype=np.int32)
    a, b, y = local[pick(left)], local[pick(right)], pick(outcome)
    pairs = aggregate(a, b, y, ids.size)
    components = pairs.components()
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
        fitted["votes"] = int(left.size)
        return fitted
    names = [str(int(m)) for m in ids]
    st = None if style is None else pick(style)
    try:
        ranking = rate(a, b, y, names, style=st)
    except (ValueError, np.linalg.LinAlgError):
        if st is None:
            raise
        # A style fit with degenerate covariates (e.g. every answer empty) must not cost the plain leaderboard.
        logger.warning("style-controlled fit failed for %s; storing the plain fit only", label, exc_info=True)
        ranking = rate(a, b, y, names)
    wins, battles = observed_win_matrix(pairs)
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
        "votes": int(left.size),
        "battles": int(y.size),
        "style_battles": int(y.size) if styled else 0,
        "models": rows,
        "covariance": ranking.covariance[sub].tolist(),
        "style_covariance": ranking.style_covariance[sub].tolist() if styled else None,
        "pair_battles": battles[sub].tolist(),
        "style_pair_battles": None,  # the style fit used these same battles
        "win_matrix": [[_finite(x) for x in row] for row in wins[sub]],
        "style_coefficients": (
            dict(zip(ranking.style_features, map(float, ranking.style_coefficients))) if styled else None
        ),
        "left_out": left_out,
        # A model that never won (or never lost) has no finite score; the library names it, and the page says so.
        "one_sided": [{"model_id": int(ids[i]), "never": "won" if ranking.one_sided[i] < 0 else "lost"}
                      for i in order if ranking.one_sided[i]],
        "style_left_out": [],
    }


def _style_merged(plain: CategoryPayload, styled: CategoryPayload) -> CategoryPayload:
    """The plain fit of every battle with the style-controlled fields of the fit on the battles with text."""
    style_fields = ("style_score", "style_lower", "style_upper", "style_rank")
    if styled["style_covariance"] is None:  # too few battles with text: no style control in this category
        return plain
    where = {r["model_id"]: i for i, r in enumerate(styled["models"])}
    index = [where.get(r["model_id"]) for r in plain["models"]]

    def spread(matrix: list[list[float]]) -> list[list[float | None]]:
        return [[None if i is None or j is None else matrix[i][j] for j in index] for i in index]

    rows = [r | {f: None if i is None else styled["models"][i][f] for f in style_fields}
            for r, i in zip(plain["models"], index)]
    counts = {o["model_id"]: o["votes"] for o in styled["left_out"]}  # its battles with text, if it had any
    return plain | {
        "models": rows,
        "style_battles": styled["battles"],
        "style_covariance": spread(styled["style_covariance"]),
        "style_pair_battles": spread(styled["pair_battles"]),
        "style_coefficients": styled["style_coefficients"],
        "style_left_out": [{"model_id": r["model_id"], "votes": counts.get(r["model_id"], 0), "reason": "no_text"}
                           for r, i in zip(plain["models"], index) if i is None],
    }


def leaderboard_payload(votes: LeaderboardVotes, *, progress: Progress = no_progress) -> Payload:
    min_votes = settings.ARENA_LEADERBOARD_MIN_CATEGORY_VOTES
    preliminary = settings.ARENA_LEADERBOARD_PRELIMINARY_VOTES
    tags = votes.category_counts()
    keys = ["overall"] + [k for k in ("coding", "long_prompt", "multi_turn") if tags[k]] + sorted(
        (k for k in tags if k.startswith("lang:")), key=lambda k: -tags[k]
    )
    # Style counts need both answers; imported battles without text would only add zeros that mean nothing, so
    # the style-controlled fit uses the battles with text (category_fit), and there is none without any.
    styled = len(votes) > 0 and bool(votes.has_text.any())
    categories: dict[str, CategoryPayload] = {}
    for key in progress(keys, desc="categories", unit="category"):
        mask = None if key == "overall" else votes.in_category(key)
        if mask is not None and mask.all():
            mask = None  # every vote: the columns as they are, not copies
            overall = categories["overall"]
            if (not overall["left_out"] and all(r["votes"] >= min_votes for r in overall["models"])
                    and (not styled or bool(votes.has_text.all()))):
                # The same battles, no model under the category's minimum (nor under it among the battles with
                # text, which are all of them): the overall fit, to the digit.
                categories[key] = overall | {"label": category_label(key)}
                continue
        pick = _rows(mask)
        categories[key] = category_fit(
            pick(votes.left), pick(votes.right), pick(votes.outcome), pick(votes.style) if styled else None,
            min_votes=1 if key == "overall" else min_votes, preliminary_votes=preliminary, label=category_label(key),
            has_text=pick(votes.has_text),
        )
    return {
        "version": PAYLOAD_VERSION,
        "categories": categories,
        "votes_over_time": _votes_per_day(votes),
        "min_category_votes": min_votes,
        "preliminary_votes": preliminary,
    }


def _votes_per_day(votes: LeaderboardVotes) -> list[tuple[str, int]]:
    days, counts = np.unique(votes.days, return_counts=True)
    names = np.datetime_as_string(days.astype("datetime64[D]"), unit="D")
    return [(str(d), int(c)) for d, c in zip(names, counts)]


def _votes_subset(votes: LeaderboardVotes, mask: np.ndarray) -> LeaderboardVotes:
    """The votes ``mask`` marks; columns already emptied (trust_votes_split) stay empty."""
    return dataclasses.replace(votes, **{
        f.name: value[mask] if len(value) == mask.size else value
        for f in dataclasses.fields(votes) for value in [getattr(votes, f.name)] if isinstance(value, np.ndarray)
    })


def trust_vote_table(votes: LeaderboardVotes) -> VoteTable:
    """What the trust screen reads of the votes (trust.risk.vote_table), from the snapshot's own read: the live
    voters' votes (imported battles were judged where they were collected)."""
    live = ~votes.imported
    pick = _rows(live)
    return VoteTable.from_columns(
        vote_ids=pick(votes.vote_ids), session=pick(votes.session), address=pick(votes.address),
        left=pick(votes.left), right=pick(votes.right), outcome=pick(votes.outcome), voted_at=pick(votes.voted_at),
        done=pick(votes.done), chars=pick(votes.chars), turns=pick(votes.turns),
    )


def trust_votes_split(votes: LeaderboardVotes, *, battles: BattleTable | None = None
                      ) -> tuple[LeaderboardVotes, LeaderboardVotes, RiskResult]:
    """Recompute the voters' risk (trust.risk) and split the votes: (counted, left out as flagged, the risk).
    ``battles``: the battles none of these votes is on (``battle_table(beyond_votes=True)``) where the caller has
    read them already; the votes' own battles come from their fact rows. The screen empties that table, and the
    columns only it reads (voters, when the answers finished, their characters and turns, the battles' starts and
    prompts) are emptied in ``votes`` once it has them.

    A vote cast between the two reads may find its battle in both (as unvoted there) or in neither; one battle of
    one voter, which moves no detector that counts dozens."""
    table = trust_vote_table(votes)
    live = _rows(~votes.imported)
    battles = (battle_table(beyond_votes=True) if battles is None else battles).with_vote_battles(
        table, live(votes.started), live(votes.prompt))
    columns_empty(votes, ("done", "chars", "turns", "started", "prompt", "session", "address"))
    risk = risk_recompute(votes=table, battles=battles)
    del table, battles
    memory_release()  # the screen's tables, before the fits
    out = np.isin(votes.vote_ids, np.fromiter(risk.excluded_vote_ids, dtype=np.int64, count=len(risk.excluded_vote_ids)))
    if not out.any():  # the usual case: no copy of every column (a gigabyte at ten million votes)
        return votes, _votes_subset(votes, out), risk
    return _votes_subset(votes, ~out), _votes_subset(votes, out), risk


def trust_note(kept: LeaderboardVotes, flagged: LeaderboardVotes, risk: RiskResult, payload: Payload) -> dict[str, Any]:
    """The snapshot's note on flagged votes: how many were left out, of whom, and how far they would move
    each overall score (plain Bradley-Terry) if they counted."""
    note: dict[str, Any] = {
        "excluded_votes": len(flagged), "flagged_sessions": sum(v.kind == "session" for v in risk.flagged),
        "flagged_addresses": sum(v.kind == "address" for v in risk.flagged), "voters_scored": risk.voters,
        "shift": [],
    }
    if not len(flagged) or not len(kept):
        return note
    try:
        fit = category_fit(
            np.concatenate([kept.left, flagged.left]), np.concatenate([kept.right, flagged.right]),
            np.concatenate([kept.outcome, flagged.outcome]), None, min_votes=1,
            preliminary_votes=settings.ARENA_LEADERBOARD_PRELIMINARY_VOTES, label="with flagged votes",
        )
    except (ValueError, np.linalg.LinAlgError):
        logger.warning("could not fit the leaderboard with the %s flagged votes", len(flagged), exc_info=True)
        return note
    with_flagged = {r["model_id"]: r["score"] for r in fit["models"]}
    for row in payload["categories"]["overall"]["models"]:
        if row["model_id"] in with_flagged:
            note["shift"].append({
                "model_id": row["model_id"], "score": row["score"], "lower": row["lower"], "upper": row["upper"],
                "with_flagged": with_flagged[row["model_id"]], "delta": with_flagged[row["model_id"]] - row["score"],
            })
    return note


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


def _on_own_connection(read: Callable[[], T]) -> T:
    """Run ``read`` on this thread's own database connection, closed afterwards."""
    try:
        return read()
    finally:
        connection.close()


def leaderboard_snapshot_create(
    *, force: bool = False, progress: Progress = no_progress, board: str = "public",
) -> LeaderboardSnapshot | None:
    """Fit the leaderboard from the current votes and store a snapshot; None when the votes have not changed
    since the latest snapshot (unless ``force``). Publishes the new snapshot to the leaderboard group.

    ``board="simulated"``: the staff's board of simulated voters' votes (no trust screening: they are ours), never
    published to the public pages, and none at all while there are no such votes."""
    public = board == LeaderboardSnapshot.Board.PUBLIC
    if board not in LeaderboardSnapshot.Board.values:
        raise ValueError(f"unknown board {board!r}")
    with _snapshot_lock(), ThreadPoolExecutor(1) as beside:
        started = time.monotonic()
        # PostgreSQL streams the trust screen's battles on a second connection while this one streams the votes:
        # each COPY keeps one server process busy, and the two overlap on separate cores. Not inside a transaction,
        # whose uncommitted rows another connection would not see.
        battles = (beside.submit(_on_own_connection, lambda: battle_table(beyond_votes=True))
                   if public and connection.vendor == "postgresql" and not connection.in_atomic_block else None)
        votes = leaderboard_votes(board=board, progress=progress)
        if public:
            votes, flagged, risk = trust_votes_split(votes, battles=None if battles is None else battles.result())
        reasons = reason_counts(votes)
        digest = vote_hash(votes, reasons=reasons)
        latest = LeaderboardSnapshot.objects.filter(board=board).order_by("-id").only("vote_hash").first()
        if latest is not None and latest.vote_hash == digest and not force:
            if public and draw_fit_latest() is None:  # the cache was emptied (a Redis restart): fill it again
                draw_fit_publish_from(LeaderboardSnapshot.objects.get(pk=latest.pk))
            return None
        if not public and latest is None and not len(votes):
            return None
        payload = leaderboard_payload(votes, progress=progress)
        payload["speed"] = model_speeds(model_ids=np.union1d(votes.left, votes.right).tolist())
        payload["reasons"] = reasons
        if public:
            payload["trust"] = trust_note(votes, flagged, risk, payload)
        with transaction.atomic():
            snapshot = LeaderboardSnapshot.objects.create(
                board=board, votes_used=len(votes), vote_hash=digest, payload=payload,
                seconds=time.monotonic() - started,
            )
            if public:
                parent_verdicts_record(snapshot)
                transaction.on_commit(lambda: leaderboard_publish(snapshot))
                transaction.on_commit(lambda: draw_fit_publish_from(snapshot))
    logger.info("leaderboard snapshot %s (%s): %s votes in %.2f s", snapshot.pk, board, snapshot.votes_used,
                snapshot.seconds)
    return snapshot


def leaderboard_snapshots_create(*, force: bool = False, progress: Progress = no_progress) -> LeaderboardSnapshot | None:
    """The scheduled job: the public board's snapshot, then the simulated voters' one; returns the public one."""
    snapshot = leaderboard_snapshot_create(force=force, progress=progress)
    leaderboard_snapshot_create(force=force, progress=progress, board=LeaderboardSnapshot.Board.SIMULATED)
    return snapshot


def parent_verdicts_record(snapshot: LeaderboardSnapshot) -> None:
    """Write each versioned model's always-valid verdict against its parent (ratings.sequential, overall
    category) onto its registry entry, where the admin's promotion gate reads it. A version its snapshot does not
    rank beside its parent reads "not yet"."""
    board = leaderboard_board(snapshot, category="overall", staff=True)
    ranked = {e.pk: e for e in board.entries} if board is not None and board.ranking is not None else {}
    for entry in ModelEntry.objects.filter(parent__isnull=False).select_related("parent"):
        verdict: dict[str, Any] = {"snapshot": snapshot.pk, "verdict": NOT_YET, "parent": entry.parent.display_name}
        if entry.pk in ranked and entry.parent_id in ranked:
            s = sequential_head_to_head(
                board.ranking, entry.display_name, entry.parent.display_name,
                alpha=settings.ARENA_DECISION_ALPHA, tuned_votes=settings.ARENA_DECISION_TUNED_VOTES,
            )
            verdict |= {"verdict": s.verdict, "lower": _finite(s.lower), "upper": _finite(s.upper)}
        if entry.parent_verdict != verdict:
            ModelEntry.objects.filter(pk=entry.pk).update(parent_verdict=verdict)


def draw_fit_publish_from(snapshot: LeaderboardSnapshot) -> None:
    """Hand the arena's draw the overall category of a public snapshot (arena.services.draw_fit_publish)."""
    overall = snapshot.payload["categories"].get("overall")
    if overall is not None:
        draw_fit_publish(snapshot_id=snapshot.pk, category=overall)


class SnapshotEvent(TypedDict):
    type: str
    id: int
    created_at: str
    votes_used: int


def leaderboard_publish(snapshot: LeaderboardSnapshot) -> None:
    """Tell open leaderboard pages that a snapshot landed. Names nothing: the page fetches what it may see."""
    event: SnapshotEvent = {
        "type": "leaderboard.snapshot", "id": snapshot.pk, "created_at": snapshot.created_at.isoformat(),
        "votes_used": snapshot.votes_used,
    }
    try:
        group_send(GROUP, dict(event))
    except Exception:
        logger.warning("could not publish leaderboard snapshot %s", snapshot.pk, exc_info=True)


# ---------------------------------------------------------------------------------------------------------------
# The embedded default's timer (no Celery beat there)

_timer: threading.Thread | None = None


def _timer_loop(interval: float) -> None:
    while True:
        time.sleep(interval)
        try:
            leaderboard_snapshots_create()
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


def leaderboard_latest(board: str = "public") -> LeaderboardSnapshot | None:
    return LeaderboardSnapshot.objects.filter(board=board).order_by("-id").first()


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
    one_sided: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # {"model_id", "never", "name"}
    votes: int = 0  # the category's counted votes, fitted or not (the snapshot's votes for overall)
    battles: int = 0  # the battles behind the scores shown (with style control: those with answer text)


def category_votes(category: dict[str, Any]) -> int:
    return category.get("votes", category["battles"])  # snapshots before payload version 2 had no count


def _visible(entry: ModelEntry | None, staff: bool) -> bool:
    return entry is not None and (staff or entry.visibility == ModelEntry.Visibility.PUBLIC)


def demo_entries(snapshot: LeaderboardSnapshot) -> dict[int, ModelEntry]:
    """A demo snapshot's models (leaderboard.demo) as unsaved public model entries by local id: the demo board
    names models the arena's registry does not hold, and never writes them there."""
    return {
        int(i): ModelEntry(pk=int(i), slug=f"demo-{i}", display_name=name, organization="", license="",
                           visibility=ModelEntry.Visibility.PUBLIC)
        for i, name in (snapshot.payload.get("demo_models") or {}).items()
    }


def model_label(entry: ModelEntry, staff: bool) -> str:
    """Public pages name only published models; staff see a preview model's codename and its real name."""
    if entry.is_preview:
        return f"{entry.codename} ({entry.display_name})" if staff else entry.codename
    return entry.display_name


def _is_demo(snapshot: object) -> bool:
    """Whether ``snapshot`` is the demo board's: only text snapshots have boards; the voice board's have none."""
    return getattr(snapshot, "board", None) == LeaderboardSnapshot.Board.DEMO


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
    style_left_out = cat.get("style_left_out", []) if style else []
    if _is_demo(snapshot):
        found = demo_entries(snapshot)
    else:
        found = ModelEntry.objects.in_bulk(ids + [o["model_id"] for o in cat["left_out"] + style_left_out])
    shown = [i for i, m in enumerate(ids) if _visible(found.get(m), staff)]
    if style:  # a model without battles that have answer text has no style-controlled score
        shown = [i for i in shown if cat["models"][i]["style_score"] is not None]
    prefix = "style_" if style else ""
    votes_in, battles = category_votes(cat), (cat.get("style_battles", cat["battles"]) if style else cat["battles"])
    score = np.array([cat["models"][i][f"{prefix}score"] for i in shown], dtype=np.float64)
    lower = np.array([cat["models"][i][f"{prefix}lower"] for i in shown], dtype=np.float64)
    upper = np.array([cat["models"][i][f"{prefix}upper"] for i in shown], dtype=np.float64)
    entries = [found[ids[i]] for i in shown]
    left_out = [o | {"name": model_label(found[o["model_id"]], staff)}
                for o in cat["left_out"] + style_left_out if _visible(found.get(o["model_id"]), staff)]
    one_sided = [o | {"name": model_label(found[o["model_id"]], staff)}
                 for o in cat.get("one_sided", []) if _visible(found.get(o["model_id"]), staff)]
    if not shown:
        return Board(snapshot, category, style, [], [], None, left_out, staff, one_sided, votes_in, battles)
    sub = np.ix_(shown, shown)
    cov = np.array(cat["style_covariance" if style else "covariance"], dtype=np.float64)[sub]
    pairs = cat.get("style_pair_battles") if style else None
    all_pairs = np.array(pairs if pairs is not None else cat["pair_battles"], dtype=np.float64)  # None -> nan
    pair = all_pairs[sub]
    rank = rank_upper_bound(lower, upper)
    if pairs is not None:  # the votes behind the style-controlled score: its battles with text
        votes = np.nansum(all_pairs, axis=1)[shown]
    else:
        votes = np.array([cat["models"][i]["votes"] for i in shown], dtype=np.float64)
    ranking = Ranking(
        names=tuple(e.display_name for e in entries), scores=score, lower=lower, upper=upper, rank=rank,
        votes=votes, covariance=cov, pair_battles=pair,
    )
    order = ranking.order()
    speeds, reasons = snapshot.payload.get("speed") or {}, snapshot.payload.get("reasons") or {}
    rows = []
    for i in order:
        model = cat["models"][shown[i]]
        entry = entries[i]
        given = reasons.get(str(entry.pk)) or {}
        rows.append({
            "index": int(i), "rank": int(rank[i]), "name": model_label(entry, staff), "slug": entry.slug,
            "score": float(score[i]), "lower": float(lower[i]), "upper": float(upper[i]),
            "plus": float(upper[i] - score[i]), "minus": float(score[i] - lower[i]), "votes": int(round(votes[i])),
            "win_rate": model["win_rate"], "organization": entry.organization, "license": entry.license,
            "is_inhouse": entry.is_inhouse, "is_preview": entry.is_preview, "preliminary": model["preliminary"],
            "is_retired": entry.is_retired, "speed": speeds.get(str(entry.pk)),
            "reasons": [{"tag": t, "label": REASON_TAGS[t], "count": given[t]} for t in REASON_TAGS if given.get(t)],
        })
    return Board(snapshot, category, style, entries, rows, ranking, left_out, staff, one_sided, votes_in, battles)


def board_retired(board: Board) -> list[dict[str, Any]]:
    """The retired models this viewer may see, last retired first, each with its retirement date and its last
    score in the board's category (None where the snapshot does not rank it there)."""
    if _is_demo(board.snapshot):
        return []  # the demo's models are none of the arena's
    cat = board.snapshot.payload["categories"][board.category]
    fitted = {r["model_id"]: r for r in cat["models"]}
    prefix = "style_" if board.style else ""
    out = []
    for entry in ModelEntry.objects.filter(retired_at__isnull=False).order_by("-retired_at", "display_name"):
        if not _visible(entry, board.staff):
            continue
        row = fitted.get(entry.pk) or {}
        out.append({
            "name": model_label(entry, board.staff), "organization": entry.organization, "retired_at": entry.retired_at,
            "score": row.get(f"{prefix}score"), "lower": row.get(f"{prefix}lower"), "upper": row.get(f"{prefix}upper"),
            "votes": int(round(row["votes"])) if row else None,
        })
    return out


def board_trust(board: Board) -> dict[str, Any] | None:
    """What the flagged voters' votes would do to the overall scores shown, for the page's note: how many votes
    were left out, and the largest move among the models on this board (None without flagged votes). Names no
    voter; models are named only as the board itself names them."""
    note = board.snapshot.payload.get("trust") or {}
    if board.category != "overall" or board.style or not note.get("excluded_votes"):
        return None
    shift = {s["model_id"]: s for s in note.get("shift", [])}
    moves = [(abs(shift[e.pk]["delta"]), row["name"], shift[e.pk]) for e, row in
             ((board.entries[r["index"]], r) for r in board.rows) if e.pk in shift]
    outside = [name for _, name, s in moves if not s["lower"] <= s["with_flagged"] <= s["upper"]]
    largest = max(moves, default=None, key=lambda m: m[0])
    return {
        "excluded_votes": note["excluded_votes"],
        "largest": None if largest is None else {"name": largest[1], "delta": largest[2]["delta"]},
        "outside": outside,
    }


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
    """(key, label, votes) of every category the snapshot holds, overall first: every counted vote of the
    category, as the page's header counts them, whether or not its models could be fitted."""
    return [(k, c["label"], category_votes(c)) for k, c in snapshot.payload["categories"].items()]


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
            needed = h.more_votes_needed
            rivals.append({
                "name": row["name"], "organization": row["organization"], "rank": row["rank"],
                "probability_better": h.probability_better, "difference": h.difference, "lower": h.lower,
                "upper": h.upper, "battles": int(round(h.battles)),
                # Past the cap the estimate says only "not at this rate": 329048512545575 votes is no plan.
                "more_votes_needed": None if needed is None or needed > VOTES_NEEDED_CAP else needed,
                "votes_needed_beyond_cap": needed is not None and needed > VOTES_NEEDED_CAP,
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
    s, base = styled.ranking, plain.ranking
    if s.names != base.names:
        # Style control was fitted on the battles with answer text: list only the models it could score.
        keep = [base.index(name) for name in s.names]
        sub = np.ix_(keep, keep)
        base = dataclasses.replace(
            base, names=s.names, scores=base.scores[keep], lower=base.lower[keep], upper=base.upper[keep],
            rank=rank_upper_bound(base.lower[keep], base.upper[keep]), votes=base.votes[keep],
            covariance=base.covariance[sub], pair_battles=base.pair_battles[sub],
        )
    return dataclasses.replace(
        base, style_scores=s.scores, style_lower=s.lower, style_upper=s.upper, style_rank=s.rank,
        style_covariance=s.covariance,
    )
