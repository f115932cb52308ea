"""What goes over a battle's channel group. Frames name sides as A and B, never models (before the vote)."""

from __future__ import annotations

import logging
from typing import Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

SideLabel = Literal["A", "B"]
POSITION_LABEL: dict[str, SideLabel] = {"left": "A", "right": "B"}
LABEL_POSITION = {label: position for position, label in POSITION_LABEL.items()}


class TokenEvent(TypedDict):
    type: Literal["battle.token"]
    side: SideLabel
    turn: int
    attempt: int
    text: str
    offset: int  # where `text` starts in the answer


class TurnEndEvent(TypedDict):
    type: Literal["battle.turn"]
    side: SideLabel
    turn: int
    attempt: int
    status: str
    text: str
    html: str
    error: str
    cut: bool
    stopped: bool


def group_name(public_id: str) -> str:
    return f"battle_{public_id}"


def battle_publish(public_id: str, event: dict) -> None:
    """Send one event to the battle's group. Losing a frame is survivable (the page re-reads state), so a
    channel-layer failure is logged, not raised into the generation job."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(public_id), event)
    except Exception:
        logger.warning("could not publish %s to battle %s", event.get("type"), public_id, exc_info=True)


def turn_publish(turn, *, attempt: int, status: str, text: str = "", error: str = "", cut: bool = False,
                 stopped: bool = False) -> None:
    """Tell the battle's group that a side's turn ended (done or failed), with its sanitised markdown."""
    from .rendering import render_markdown

    event: TurnEndEvent = {
        "type": "battle.turn", "side": POSITION_LABEL[turn.side.position], "turn": turn.index, "attempt": attempt,
        "status": status, "text": text, "html": render_markdown(text) if text else "", "error": error,
        "cut": cut, "stopped": stopped,
    }
    battle_publish(turn.side.battle.public_id, dict(event))
