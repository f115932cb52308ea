"""What every provider returns or raises; kept apart so providers and the dispatcher can share it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Message = dict[str, str]  # {"role": "user" | "assistant", "content": ...}, OpenAI style
OnText = Callable[[str], None]
ShouldStop = Callable[[], bool]


@dataclass
class GenerationResult:
    """One finished answer.

    `time_to_first_token` runs from the call to the first piece of text, model loading included: it is what the
    voter waits. `tokens_per_second` is output tokens over the generation itself (prompt processing included,
    model loading not). Figures a provider cannot know (an endpoint that reports no usage) are None.
    `finish_reason` says why the answer ended: "stop" (the model ended it, or a stop string did), "length" (the
    token limit cut it), "cancelled" (should_stop asked).
    """

    text: str
    prompt_tokens: int | None
    output_tokens: int | None
    time_to_first_token: float | None  # seconds
    tokens_per_second: float | None
    finish_reason: str = "stop"


class GenerationError(Exception):
    """Message is safe and readable for a voter: it must NOT contain the model's name, slug, path, URL or
    organisation (anonymous battles). The full detail goes to the log."""
