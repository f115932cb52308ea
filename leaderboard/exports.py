"""Exports: rankings CSV from a snapshot, battles in the shape of LMArena's public data, and preference pairs.

Battle records (JSON lines or CSV) carry LMArena's / FastChat's columns, so ``arena-rank``, FastChat's
``elo_analysis.py`` and ``python -m ratings`` read them unchanged:

    question_id, model_a, model_b, winner ("model_a" | "model_b" | "tie" | "tie (bothbad)"), judge,
    conversation_a, conversation_b ([{"role": "user"|"assistant", "content": str}, ...]), turn, anony,
    language, tstamp (Unix seconds of the vote), modality ("text" or "speech", the arena's own column),
    reasons_a, reasons_b (the arena's own: the voter's optional reason tags for each answer, arena.models.REASON_TAGS)

``judge`` is "arena_user_" + an HMAC-SHA256 of the voter's session keyed with ``settings.ARENA_VOTER_SALT``:
stable per voter, not reversible without the salt. In CSV the conversations and the reasons are JSON text. Battles whose vote
was flagged for an identity leak, and direct chats, are not exported (LMArena's released data is cleaned the
same way); named battles are, with ``anony`` false.

Preference pairs come from decisive votes (A or B better) on single-turn battles, in TRL's DPO dataset shape,
one JSON object per line. The default is TRL's *conversational* form::

    {"prompt": [{"role": "user", "content": "..."}],
     "chosen": [{"role": "assistant", "content": "..."}],
     "rejected": [{"role": "assistant", "content": "..."}]}

and ``style="plain"`` gives TRL's *standard* form with strings: {"prompt": "...", "chosen": "...", "rejected": "..."}.
Multi-turn battles are left out: the two sides' histories differ, so there is no shared prompt to put first.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections.abc import Iterator
from typing import Any, Literal, TypedDict

from django.conf import settings
from django.db.models import Exists, OuterRef, Prefetch

from arena.models import Battle, Side, Turn, Vote
from ratings import ranking_to_csv
from trust.moderation import prompt_flagged

from .models import LeaderboardSnapshot
from .snapshots import LANGUAGE_NAMES, board_rankings_for_csv

BATTLE_COLUMNS = (
    "question_id", "model_a", "model_b", "winner", "judge", "conversation_a", "conversation_b", "turn", "anony",
    "language", "tstamp", "modality", "reasons_a", "reasons_b",
)
WINNER = {"left": "model_a", "right": "model_b", "tie": "tie", "bothbad": "tie (bothbad)"}


class Message(TypedDict):
    role: Literal["user", "assistant"]
    content: str


class BattleRecord(TypedDict):
    question_id: str
    model_a: str
    model_b: str
    winner: str
    judge: str
    conversation_a: list[Message]
    conversation_b: list[Message]
    turn: int
    anony: bool
    language: str
    tstamp: float
    modality: str
    reasons_a: list[str]
    reasons_b: list[str]


def voter_hash(session_key: str) -> str:
    digest = hmac.new(settings.ARENA_VOTER_SALT.encode(), session_key.encode(), hashlib.sha256).hexdigest()
    return f"arena_user_{digest[:20]}"


def _language(categories: list[str]) -> str:
    for tag in categories:
        if tag.startswith("lang:"):
            return LANGUAGE_NAMES.get(tag[5:], tag[5:]) if tag[5:] != "und" else "unknown"
    return "unknown"


def _conversation(side: Side) -> list[Message]:
    messages: list[Message] = []
    for turn in side.turns.all():
        messages.append({"role": "user", "content": turn.prompt})
        messages.append({"role": "assistant", "content": turn.response})
    return messages


def exported_votes(*, simulated: bool = False) -> Any:
    """Votes whose battles are exported: voted, not a direct chat, no identity leak, no failed side, and no
    simulated voter's unless `simulated`."""
    failed = Exists(Turn.objects.filter(side__battle=OuterRef("battle_id"), status=Turn.Status.FAILED))
    votes = Vote.objects.all() if simulated else Vote.objects.filter(simulated=False)
    return (
        votes.filter(identity_leak=False, battle__mode__in=[Battle.Mode.ANONYMOUS, Battle.Mode.NAMED])
        .filter(~failed)
        .select_related("battle")
        .prefetch_related(
            Prefetch("battle__sides", queryset=Side.objects.select_related("model").prefetch_related(
                Prefetch("turns", queryset=Turn.objects.order_by("index"))
            ))
        )
        .order_by("id")
    )


def battle_records(votes: Any = None, *, with_vote_ids: bool = False, include_flagged: bool = False) -> Iterator[Any]:
    """Every exported battle (of `votes`, default `exported_votes()`), oldest vote first, with the models' real
    names (exports are for staff); (vote id, record) pairs when `with_vote_ids`. Battles with a prompt the
    moderation blocklist flags are left out unless `include_flagged`."""
    for vote in (exported_votes() if votes is None else votes).iterator(chunk_size=500):
        battle = vote.battle
        sides = {s.position: s for s in battle.sides.all()}
        if set(sides) != {"left", "right"}:
            continue
        if not include_flagged and prompt_flagged([t.prompt for t in sides["left"].turns.all()]):
            continue
        conv_a, conv_b = _conversation(sides["left"]), _conversation(sides["right"])
        record: BattleRecord = {
            "question_id": battle.public_id,
            "model_a": sides["left"].model.display_name,
            "model_b": sides["right"].model.display_name,
            "winner": WINNER[vote.choice],
            "judge": voter_hash(vote.session_key),
            "conversation_a": conv_a,
            "conversation_b": conv_b,
            "turn": len(conv_a) // 2,
            "anony": battle.mode == Battle.Mode.ANONYMOUS,
            "language": _language(battle.categories),
            "tstamp": round(vote.created_at.timestamp(), 3),
            "modality": sides["left"].model.modality,  # "text" or "speech" (voice battles: prompt is the text read)
            "reasons_a": (vote.reasons or {}).get("left", []),
            "reasons_b": (vote.reasons or {}).get("right", []),
        }
        yield (vote.id, record) if with_vote_ids else record


def battles_jsonl(records: Iterator[BattleRecord]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False) + "\n"


def battles_csv(records: Iterator[BattleRecord]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(BATTLE_COLUMNS)
    for record in records:
        writer.writerow([
            json.dumps(record[c], ensure_ascii=False) if c.startswith(("conversation_", "reasons_"))
            else ("True" if record[c] else "False") if c == "anony" else record[c]
            for c in BATTLE_COLUMNS
        ])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    if buf.getvalue():
        yield buf.getvalue()


def preference_pairs(
    records: Iterator[BattleRecord], *, style: Literal["messages", "plain"] = "messages", with_models: bool = False
) -> Iterator[str]:
    """DPO pairs (see the module notes) from decisive single-turn battles; `with_models` adds `chosen_model` and
    `rejected_model`, the names of the versions that answered (what `train_inhouse --pairs` reads)."""
    for record in records:
        pair = preference_pair(record, style=style, with_models=with_models)
        if pair is not None:
            yield json.dumps(pair, ensure_ascii=False) + "\n"


def preference_pair(
    record: BattleRecord, *, style: Literal["messages", "plain"] = "messages", with_models: bool = False
) -> dict[str, Any] | None:
    """One DPO pair (with the names of the versions that answered when `with_models`), None for a tie or
    a multi-turn battle."""
    if record["winner"] not in ("model_a", "model_b") or record["turn"] != 1 or record["modality"] != "text":
        return None
    a, b = record["conversation_a"], record["conversation_b"]
    chosen, rejected = (a, b) if record["winner"] == "model_a" else (b, a)
    if style == "plain":
        pair: dict[str, Any] = {"prompt": chosen[0]["content"], "chosen": chosen[1]["content"],
                                "rejected": rejected[1]["content"]}
    else:
        pair = {"prompt": [chosen[0]], "chosen": [chosen[1]], "rejected": [rejected[1]]}
    if with_models:
        names = (record["model_a"], record["model_b"])
        pair["chosen_model"], pair["rejected_model"] = names if record["winner"] == "model_a" else names[::-1]
    reasons = (record.get("reasons_a") or [], record.get("reasons_b") or [])
    if any(reasons):  # the voter's tags for each answer, where given (training.pairs.pair_check keeps its own keys)
        pair["chosen_reasons"], pair["rejected_reasons"] = reasons if record["winner"] == "model_a" else reasons[::-1]
    return pair


def rankings_filename(snapshot: LeaderboardSnapshot, category: str, style: bool) -> str:
    stamp = snapshot.created_at.strftime("%Y%m%dT%H%M%SZ")
    slug = "".join(c if c.isalnum() else "-" for c in category)
    return f"leaderboard-{slug}{'-style' if style else ''}-{stamp}-{snapshot.votes_used}votes.csv"


def rankings_csv(snapshot: LeaderboardSnapshot, *, category: str, style: bool, staff: bool) -> str | None:
    """The ratings command line's CSV (``ranking_to_csv``) for one category of the snapshot, with the
    style-controlled columns when ``style``; None when the category is unknown or empty for this viewer."""
    ranking = board_rankings_for_csv(snapshot, category=category, style=style, staff=staff)
    return None if ranking is None else ranking_to_csv(ranking)
