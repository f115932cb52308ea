"""What a prompt must pass before a battle starts or continues: the session's proof of work (new battles
only) and the moderation hook. Called by ``arena.services`` before anything is written or sent to a model."""

from __future__ import annotations

from .moderation import check_prompt_allowed
from .pow import check_session_proved
from .refusal import TrustRefusal

__all__ = ["TrustRefusal", "prompt_admit"]


def prompt_admit(*, session_key: str, ip_hash: str, prompt: str, new_battle: bool) -> None:
    """Raise ``TrustRefusal`` (with ``message``, ``code``, ``status``) to refuse the prompt."""
    if new_battle:
        check_session_proved(session_key)
    check_prompt_allowed(prompt=prompt, session_key=session_key, ip_hash=ip_hash)
