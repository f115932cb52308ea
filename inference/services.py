"""Writes of the inference app: an operator's test of a model entry, recorded in the admin log."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType

from models_hub.endpoints import checkpoint_path_problem
from models_hub.models import ModelEntry, breaker_record

from . import GenerationError, generate

TEST_PROMPT = "Say hello in one short sentence."
TEST_MAX_NEW_TOKENS = 32
# One text for every failure: a test must not tell a refused port from a closed connection, a timeout or a
# missing directory, or the button becomes a scanner of the servers' network and disks. The model server's HTTP
# status is the one detail added, since an operator needs it to fix an entry and it tells nothing about sockets.
TEST_FAILED = "The model did not answer the test; the servers' log says why."


@dataclass(frozen=True)
class ModelTestOutcome:
    answered: bool
    text: str  # the answer, or TEST_FAILED with the HTTP status where the server sent one
    http_status: int | None = None


def model_entry_test(entry: ModelEntry, *, user: AbstractBaseUser) -> ModelTestOutcome:
    """Ask `entry` (saved or not) one short question here and now, and write who tested what, and how it went, to
    the admin log (an unsaved entry's log row names no object). A saved entry that answers closes its breaker."""
    entry.max_new_tokens = min(entry.max_new_tokens or TEST_MAX_NEW_TOKENS, TEST_MAX_NEW_TOKENS)
    try:
        if entry.provider == ModelEntry.Provider.TRANSFORMERS and checkpoint_path_problem(entry.checkpoint_path):
            # An entry written straight into the database: nothing outside the checkpoint roots is opened.
            raise GenerationError(TEST_FAILED)
        result = generate(entry, [{"role": "user", "content": TEST_PROMPT}])
    except GenerationError as exc:
        status = getattr(exc, "status", None)
        outcome = ModelTestOutcome(False, TEST_FAILED + (f" (the model's server answered HTTP {status})" if status else ""),
                              status)
    else:
        if entry.pk:
            breaker_record(entry.pk, ok=True)
        text = result.text.strip() or "(an empty answer)"
        outcome = ModelTestOutcome(
            True, f"{text[:500]} [{result.output_tokens or '?'} tokens, ended by {result.finish_reason}]"
        )
    _test_log(entry, user=user, outcome=outcome)
    return outcome


def _test_log(entry: ModelEntry, *, user: AbstractBaseUser, outcome: ModelTestOutcome) -> None:
    if entry.provider == ModelEntry.Provider.OPENAI:
        where = f"{entry.base_url} model {entry.remote_model!r}, key variable {entry.api_key_env or '(none)'}"
    elif entry.provider == ModelEntry.Provider.TRANSFORMERS:
        where = f"checkpoint {entry.checkpoint_path}"
    else:
        where = f"voice {entry.voice!r}"
    if outcome.answered:
        result = "answered"
    else:
        result = "failed" + (f" (HTTP {outcome.http_status})" if outcome.http_status else "")
    LogEntry.objects.create(
        user_id=user.pk,
        content_type=ContentType.objects.get_for_model(ModelEntry),
        object_id=str(entry.pk) if entry.pk else None,
        object_repr=(str(entry.display_name or entry.slug) + ("" if entry.pk else " (unsaved)"))[:200],
        action_flag=CHANGE,
        change_message=f"Tested ({entry.provider}: {where}): {result}."[:2000],
    )
