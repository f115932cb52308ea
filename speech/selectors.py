"""Reads for voice battles: what the battle's owner may see now."""

from __future__ import annotations

from typing import TypedDict

from django.urls import reverse

from arena.events import POSITION_LABEL
from arena.models import Battle, Turn, Vote

from .models import SpeechClip


class SideState(TypedDict):
    status: str  # queued | running | done | failed
    error: str
    audio: str | None  # the battle-scoped URL of the clip once spoken; it names the side, never the model


def speech_battle_state(battle: Battle) -> dict:
    """The battle as its owner sees it: the text, each side's status and clip URL, and only after the vote the
    names and each side's figures (generation seconds, audio seconds, real-time factor)."""
    vote = Vote.objects.filter(battle=battle).first()
    turns = {t.side.position: t for t in Turn.objects.filter(side__battle=battle, index=0).select_related("side__model")}
    clips = {c.turn_id: c for c in SpeechClip.objects.filter(turn__in=turns.values())}
    sides: dict[str, SideState] = {}
    names: dict[str, str] = {}
    figures: dict[str, dict] = {}
    for position, turn in sorted(turns.items()):
        label = POSITION_LABEL[position]
        clip = clips.get(turn.pk)
        done = turn.status == Turn.Status.DONE and clip is not None
        sides[label] = {
            "status": turn.status, "error": turn.error,
            "audio": reverse("speech:clip", args=[battle.public_id, label]) if done else None,
        }
        names[label] = turn.side.model.public_name
        if clip is not None:
            figures[label] = {
                "generation_seconds": round(clip.generation_seconds, 3), "audio_seconds": round(clip.audio_seconds, 3),
                "real_time_factor": round(clip.real_time_factor, 2) if clip.real_time_factor else None,
            }
    text = next(iter(turns.values())).prompt if turns else ""
    return {
        "battle": battle.public_id,
        "text": text,
        "sides": sides,
        "voted": vote.choice if vote else None,
        "models": names if vote else None,
        "figures": figures if vote else None,
    }
