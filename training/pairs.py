"""Preference pairs for DPO: read from the arena's own export or straight from the votes, and checked.

A pair is TRL's DPO record, conversational or plain, as `leaderboard.exports.preference_pairs` writes it, with
the names of the two models that answered (`chosen_model`, `rejected_model`). Only pairs in which the model being
trained answered one side are used: DPO learns from contrasts with its own answers. Everything is checked before
any training starts; a bad file raises `PairsError` naming the line, and nothing is trained or registered.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leaderboard.exports import battle_records, exported_votes, preference_pair
from models_hub.models import ModelEntry


class PairsError(ValueError):
    """Preference pairs that cannot be trained on; the message says why, for an operator."""


class EmptyAnswer(PairsError):
    """A pair with an empty answer: an error in a file, a vote left out when reading the votes."""


@dataclass(frozen=True)
class PairSet:
    pairs: list[dict[str, Any]]  # TRL conversational records: prompt, chosen, rejected (lists of messages)
    sha256: str  # of the pairs as trained on, in order
    votes: dict[str, Any]  # which votes they came from: count, sha256 of the vote ids, filters (empty for a file)


def _messages(value: Any, role: str, where: str, key: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        value = [{"role": role, "content": value}]
    if not isinstance(value, list) or not value:
        raise PairsError(f"{where}: '{key}' must be a string or a non-empty list of messages.")
    for message in value:
        if (
            not isinstance(message, dict)
            or message.get("role") not in ("system", "user", "assistant")
            or not isinstance(message.get("content"), str)
        ):
            raise PairsError(f"{where}: '{key}' holds something that is not a {{role, content}} message.")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def pair_check(record: Any, where: str) -> dict[str, Any]:
    """One pair in TRL's conversational form with its model names; raises PairsError saying what is wrong."""
    if not isinstance(record, dict):
        raise PairsError(f"{where}: a pair must be a JSON object with prompt, chosen and rejected.")
    missing = [key for key in ("prompt", "chosen", "rejected", "chosen_model", "rejected_model") if key not in record]
    if missing:
        raise PairsError(f"{where}: missing {', '.join(missing)} (export them with `export_battles OUT --user NAME --format preferences --with-models`).")
    pair = {
        "prompt": _messages(record["prompt"], "user", where, "prompt"),
        "chosen": _messages(record["chosen"], "assistant", where, "chosen"),
        "rejected": _messages(record["rejected"], "assistant", where, "rejected"),
    }
    for key in ("chosen_model", "rejected_model"):
        if not isinstance(record[key], str) or not record[key]:
            raise PairsError(f"{where}: '{key}' must name the model that answered.")
        pair[key] = record[key]
    if not pair["chosen"][-1]["content"].strip() or not pair["rejected"][-1]["content"].strip():
        raise EmptyAnswer(f"{where}: an answer is empty.")
    return pair


def pairs_read(path: Path) -> list[dict[str, Any]]:
    """Every pair of a JSON-lines file, checked; raises PairsError naming the first bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PairsError(f"No file at {path}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PairsError(f"{path.name} cannot be read as UTF-8 text: {exc}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise PairsError(f"{path.name}: line {number}: not valid JSON: {exc}") from None
        pairs.append(pair_check(record, f"{path.name}: line {number}"))
    return pairs


def pairs_from_votes(
    *, since: datetime.datetime | None = None, category: str | None = None, include_simulated: bool = False
) -> tuple[list[dict[str, Any]], list[int], dict[str, Any]]:
    """Pairs from the exported votes (decisive, single-turn), oldest first: (pairs, vote ids, filters)."""
    votes = exported_votes(simulated=include_simulated)
    if since is not None:
        votes = votes.filter(created_at__gte=since)
    if category:
        votes = votes.filter(battle__categories__contains=[category])
    pairs, vote_ids, empty = [], [], 0
    for vote_id, record in battle_records(votes, with_vote_ids=True):
        pair = preference_pair(record, with_models=True)
        if pair is not None:
            try:
                pairs.append(pair_check(pair, f"vote {vote_id}"))
            except EmptyAnswer:
                # A model that answered nothing lost a real vote, but there is no answer to learn from.
                empty += 1
                continue
            vote_ids.append(vote_id)
    filters = {
        "since": since.isoformat() if since else None,
        "category": category or None,
        "include_simulated": include_simulated,
        "left_out_empty_answer": empty,
    }
    return pairs, vote_ids, filters


def pairs_for_model(pairs: list[dict[str, Any]], model: ModelEntry, *, source: str) -> list[dict[str, Any]]:
    """The pairs in which `model` answered one side; raises PairsError when there are none."""
    if not pairs:
        raise PairsError(f"No preference pairs in {source}: nothing to train on.")
    names = {model.display_name, model.slug}
    mine = [pair for pair in pairs if pair["chosen_model"] in names or pair["rejected_model"] in names]
    if not mine:
        others = sorted({pair["chosen_model"] for pair in pairs} | {pair["rejected_model"] for pair in pairs})
        raise PairsError(
            f"None of the {len(pairs)} pairs in {source} involve {model.display_name}; "
            f"they are between {', '.join(others[:6])}{' ...' if len(others) > 6 else ''}."
        )
    return mine


def pairs_with_system_prompt(pairs: list[dict[str, Any]], system_prompt: str) -> list[dict[str, Any]]:
    """The pairs as the model sees them in battles: its system prompt first, model names dropped."""
    out = []
    for pair in pairs:
        prompt = pair["prompt"]
        if system_prompt and prompt[0]["role"] != "system":
            prompt = [{"role": "system", "content": system_prompt}, *prompt]
        out.append({"prompt": prompt, "chosen": pair["chosen"], "rejected": pair["rejected"]})
    return out


def pair_set(pairs: list[dict[str, Any]], vote_ids: list[int] | None = None, filters: dict[str, Any] | None = None) -> PairSet:
    digest = hashlib.sha256(json.dumps(pairs, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    votes: dict[str, Any] = {}
    if vote_ids is not None:
        votes = {
            "count": len(vote_ids),
            "sha256": hashlib.sha256(",".join(map(str, vote_ids)).encode()).hexdigest(),
            "filters": filters or {},
        }
    return PairSet(pairs=pairs, sha256=digest, votes=votes)
