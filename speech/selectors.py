"""Reads for voice battles: what the battle's owner may see now."""

from __future__ import annotations

from typing import TypedDict

from django.urls import reverse

from arena.events import POSITION_LABEL
from arena.models import Battle, Turn, Vote

from .models import SpeechClip

# The one reason a voter reads for a voice that did not speak, whatever the engine and whatever went wrong: the
# reasons differ by engine (a missing binary, an endpoint's HTTP error), so the real one stays in Turn.error for
# staff and never reaches the voter.
VOICE_FAILED = "This voice could not read the text. Start a new round."


class SideState(TypedDict):
    status: str  # queued | running | done | failed
    error: str
    audio: str | None  # the battle-scoped URL of the clip once both spoke; it names the side, never the model


def speech_battle_state(battle: Battle) -> dict:
    """The battle as its owner sees it: the text, each side's status, its clip URL, and only after the vote the
    names and each side's figures (generation seconds, audio seconds, real-time factor).

    Before the vote nothing tells the voices apart: a side reads done only once the other has ended too (which
    voice spoke first would tell a fast engine from a slow one), a clip URL appears only once both spoke (each is
    padded to the other's length), and a failed side's reason is always VOICE_FAILED."""
    vote = Vote.objects.filter(battle=battle).first()
    turns = {t.side.position: t for t in Turn.objects.filter(side__battle=battle, index=0).select_related("side__model")}
    clips = {c.turn_id: c for c in SpeechClip.objects.filter(turn__in=turns.values())}
    sides: dict[str, SideState] = {}
    names: dict[str, str] = {}
    figures: dict[str, dict] = {}
    both_spoke = len(turns) == 2 and all(t.status == Turn.Status.DONE and t.pk in clips for t in turns.values())
    settled = all(t.status in (Turn.Status.DONE, Turn.Status.FAILED) for t in turns.values())
    for position, turn in sorted(turns.items()):
        label = POSITION_LABEL[position]
        clip = clips.get(turn.pk)
        status = turn.status
        if status == Turn.Status.DONE and not settled:
            status = Turn.Status.RUNNING  # which voice finished first would tell a fast engine from a slow one
        sides[label] = {
            "status": status, "error": VOICE_FAILED if turn.status == Turn.Status.FAILED else "",
            "audio": reverse("speech:clip", args=[battle.public_id, label]) if both_spoke else None,
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
