"""What a prompt must pass before a battle starts or continues: the session's proof of work (new battles
only) and the moderation hook. Called by ``arena.services`` before anything is written or sent to a model."""

from __future__ import annotations

from .moderation import check_prompt_allowed
from .pow import check_session_proved
from .refusal import TrustRefusal

__all__ = ["TrustRefusal", "prompt_admit"]


def prompt_admit(*, session_key: str, ip_hash: str, prompt: str, new_battle: bool, moderate: bool = True) -> None:
    """Raise ``TrustRefusal`` (with ``message``, ``code``, ``status``) to refuse the prompt. Call it outside any
    transaction: moderation may wait on its endpoint. ``moderate=False`` where the caller moderates the prompt
    itself (the socket, on its event loop: ``trust.moderation.moderation_verdict_async``)."""
    if new_battle:
        check_session_proved(session_key)
    if moderate:
        check_prompt_allowed(prompt=prompt, session_key=session_key, ip_hash=ip_hash)
