"""generate(): turn a model entry and a conversation into an answer, streaming its text as it comes.

Used the same way by Celery workers and by the embedded server's threads; it knows models and tokens, not
battles. Every failure ends as a GenerationError whose message a voter may read.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings

from .base import GenerationError, GenerationResult, OnText, ShouldStop

if TYPE_CHECKING:
    from models_hub.models import ModelEntry

logger = logging.getLogger(__name__)

ROLES = ("user", "assistant")


def check_messages(messages: list[dict[str, str]]) -> None:
    if not messages or not isinstance(messages, list):
        raise GenerationError("There is no prompt to answer.")
    for message in messages:
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise GenerationError("The conversation is malformed.")
    if messages[-1]["role"] != "user":
        raise GenerationError("The conversation must end with the user's prompt.")


def generate(
    entry: ModelEntry,
    messages: list[dict[str, str]],
    *,
    on_text: OnText | None = None,
    should_stop: ShouldStop | None = None,
) -> GenerationResult:
    """Answer the conversation `messages` (OpenAI style, the last one the new user prompt) with `entry`'s model.

    `on_text(piece)` is called, in this thread, with each new piece of text; the pieces join to the result's text.
    `should_stop()` is polled between tokens (so keep it cheap): when it returns True the answer ends early and what was written so
    far is returned. The entry's system prompt and sampling settings are applied here (temperature 0 is greedy).
    """
    check_messages(messages)
    if getattr(entry, "modality", "text") != "text":  # a voice cannot answer a chat (inference.speech speaks)
        logger.error("model %s is a %s model, asked for text", entry.slug, entry.modality)
        raise GenerationError("This model is misconfigured on the server.")
    try:
        if entry.provider == "transformers":
            from .local import generate_local

            if settings.ARENA_ENGINE == "vllm":
                from .vllm_engine import EngineUnavailable, generate_vllm

                try:
                    return generate_vllm(entry, messages, on_text=on_text, should_stop=should_stop)
                except EngineUnavailable:
                    pass  # vLLM cannot load this checkpoint: the transformers engine answers (logged once)

            return generate_local(entry, messages, on_text=on_text, should_stop=should_stop)
        if entry.provider == "openai":
            from .openai_compat import generate_openai

            return generate_openai(entry, messages, on_text=on_text, should_stop=should_stop)
    except GenerationError:
        raise
    except MemoryError as exc:
        logger.exception("model %s ran out of memory", entry.slug)
        raise GenerationError("The server ran out of memory while answering.") from exc
    except Exception as exc:
        # torch.cuda.OutOfMemoryError is a RuntimeError; matched by name so this module needs no torch.
        if type(exc).__name__ == "OutOfMemoryError":
            logger.exception("model %s ran out of memory", entry.slug)
            raise GenerationError("The server ran out of memory while answering.") from exc
        logger.exception("model %s failed to answer", entry.slug)
        raise GenerationError("The model failed to answer because of a server error.") from exc
    logger.error("model %s has an unknown provider %r", entry.slug, entry.provider)
    raise GenerationError("This model is misconfigured on the server.")
