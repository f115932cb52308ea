"""Writes: creating battles, continuing and regenerating them, recording votes.

Every function here takes the voter's session key and checks that the session owns the battle; errors a voter
can cause raise BattleError with a message for the voter and an HTTP-like status.
"""

from __future__ import annotations

import logging
import random
import re

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from inference.dispatch import dispatch
from inference.pools import live_pools
from models_hub.models import ModelEntry
from trust.gate import TrustRefusal, prompt_admit
from trust.moderation import Verdict, refusal_record

from .categories import battle_categories, categories_after
from .events import LABEL_POSITION, POSITION_LABEL, turn_publish
from .generation import turn_reap_stale
from .facts import fact_values, prompt_code
from .models import REASON_TAGS, Battle, Side, Turn, Vote
from .ratelimit import RateLimited, ip_hash, rate_limit_hit
from .rows import battle_by_public_id, battle_turns, vote_insert
from .sampling import (
    DRAW_FIT_CACHE_KEY, ActiveFit, DrawFit, NoPairAvailable, SamplingRules, breaker_closed, pair_sample,
)
from .selectors import draw_fit_latest
from .tasks import generate_turn

_rng = random.SystemRandom()
logger = logging.getLogger(__name__)


class BattleError(Exception):
    def __init__(self, message: str, *, code: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise BattleError("The prompt must be text.", code="invalid_prompt")
    prompt = prompt.strip()
    if not prompt:
        raise BattleError("The prompt is empty or only spaces: type a question or a task first.", code="empty_prompt")
    limit = settings.ARENA_MAX_PROMPT_CHARS
    if len(prompt) > limit:
        # Refused whole, never cut: a cut prompt would be answered as if the voter had asked something else.
        raise BattleError(
            f"The prompt is {len(prompt):,} characters long; the limit is {limit:,}. Shorten it and send again.",
            code="prompt_too_long", status=413,
        )
    if "\x00" in prompt:
        raise BattleError("The prompt contains a NUL character.", code="invalid_prompt")
    return prompt


def rate_limit(action: str, *, session_key: str, ip: str, limit: int) -> None:
    try:
        rate_limit_hit(action, session_key=session_key, ip=ip, limit=limit)
    except RateLimited as exc:
        raise BattleError(str(exc), code="rate_limited", status=429) from None


def _trust_admit(*, session_key: str, ip: str, prompt: str, new_battle: bool, moderate: bool = True) -> None:
    """The trust checks (trust.gate): a new session's proof of work, then moderation (unless the caller moderates
    the prompt itself, off the database threads); before any model is asked and outside any transaction."""
    try:
        prompt_admit(session_key=session_key, ip_hash=ip_hash(ip), prompt=prompt, new_battle=new_battle,
                     moderate=moderate)
    except TrustRefusal as exc:
        raise BattleError(exc.message, code=exc.code, status=exc.status) from None


def prompt_refuse(*, session_key: str, ip: str, prompt: str, verdict: Verdict) -> None:
    """Keep a prompt the moderation refused (``trust.moderation.moderation_verdict_async``) and raise its
    BattleError (422)."""
    try:
        refusal_record(verdict=verdict, prompt=prompt, session_key=session_key, ip_hash=ip_hash(ip))
    except TrustRefusal as exc:
        raise BattleError(exc.message, code=exc.code, status=exc.status) from None


def _drawable_entries() -> list[ModelEntry]:
    entries = list(
        ModelEntry.objects.filter(is_active=True, sampling_weight__gt=0, modality="text", anonymous_excluded=False)
        .prefetch_related("battle_targets", "never_meets")
    )
    live = live_pools({e.pool for e in entries})
    return breaker_closed([e for e in entries if e.pool in live], now=timezone.now())


def draw_fit_publish(*, snapshot_id: int, category: dict) -> None:
    """Leave what the draw reads from a public snapshot's overall category (its rows, covariance and each model's
    counted votes) in the cache: one get per anonymous battle, no fit in the request. The leaderboard calls this
    when it stores a snapshot; a cache outage leaves the configured draw."""
    votes = {int(r["model_id"]): float(r["votes"]) for r in category.get("left_out", []) if "votes" in r}
    votes.update({int(r["model_id"]): float(r["votes"]) for r in category["models"]})
    fit: DrawFit = {
        "snapshot_id": snapshot_id,
        "models": [{k: r[k] for k in ("model_id", "score", "lower", "upper")} for r in category["models"]],
        "covariance": category["covariance"],
        "votes": votes,
    }
    try:
        cache.set(DRAW_FIT_CACHE_KEY, fit, timeout=None)
    except Exception:
        logger.warning("could not leave the draw's fit in the cache", exc_info=True)


def _anonymous_pair(entries: list[ModelEntry]) -> tuple[ModelEntry, ModelEntry]:
    """The configured draw with the registry's rules; the active draw too when ARENA_ACTIVE_SAMPLING > 0 and the
    latest snapshot left its fit."""
    published = draw_fit_latest()
    votes = {int(k): v for k, v in published["votes"].items()} if published else {}
    active = settings.ARENA_ACTIVE_SAMPLING > 0 and published is not None and len(published["models"]) >= 2
    return pair_sample(
        entries,
        rng=_rng,
        inhouse_share=settings.ARENA_INHOUSE_SHARE,
        rivals=settings.ARENA_INHOUSE_RIVALS,
        previews_meet=settings.ARENA_PREVIEWS_MEET,
        active_fit=ActiveFit.from_category(published) if active else None,
        active_strength=settings.ARENA_ACTIVE_SAMPLING,
        active_floor=settings.ARENA_ACTIVE_FLOOR,
        rules=SamplingRules.from_entries(entries, votes=votes),
    )


def _chosen_entries(slugs: object, count: int) -> list[ModelEntry]:
    if not isinstance(slugs, list) or len(slugs) != count or not all(isinstance(s, str) for s in slugs):
        raise BattleError(f"Choose {count} model{'s' if count > 1 else ''}.", code="invalid_models")
    if len(set(slugs)) != len(slugs):
        raise BattleError("Choose two different models.", code="invalid_models")
    found = {e.slug: e for e in ModelEntry.objects.filter(slug__in=slugs, is_active=True, visibility="public", modality="text")}
    missing = [s for s in slugs if s not in found]
    if missing:
        raise BattleError("That model is not available.", code="unknown_model", status=404)
    entries = [found[s] for s in slugs]
    live = live_pools({e.pool for e in entries})
    if any(e.pool not in live for e in entries):
        raise BattleError("That model has no worker running right now. Try another one.", code="model_offline", status=503)
    return entries


def _queue_turn(turn: Turn, pool: str) -> None:
    transaction.on_commit(lambda: turn_dispatch(turn, pool))


QUEUE_FAILED = "The answer could not be queued just now. Press retry to ask again."


def turn_dispatch(turn: Turn, pool: str) -> None:
    """Hand the turn's job to its pool; if the broker refuses, end the turn as failed so nothing waits for ever."""
    try:
        dispatch(generate_turn, args=(turn.pk, turn.attempt), pool=pool)
    except Exception:
        logger.exception("could not queue turn %s", turn.pk)
        failed = Turn.objects.filter(pk=turn.pk, attempt=turn.attempt, status=Turn.Status.QUEUED).update(
            status=Turn.Status.FAILED, error=QUEUE_FAILED, finished_at=timezone.now()
        )
        if failed:
            turn_publish(turn, attempt=turn.attempt, status=Turn.Status.FAILED, error=QUEUE_FAILED)


def battle_start_admit(*, session_key: str, ip: str, mode: object, prompt: object, moderate: bool = True) -> str:
    """The checks of a new battle that lock nothing: the mode, the prompt, the rate limit, the proof of work and
    (``moderate``) moderation. Returns the prompt as it will be asked."""
    if mode not in Battle.Mode.values:
        raise BattleError("Unknown battle mode.", code="invalid_mode")
    prompt = check_prompt(prompt)
    rate_limit("battles", session_key=session_key, ip=ip, limit=settings.ARENA_RATE_LIMIT_BATTLES)
    _trust_admit(session_key=session_key, ip=ip, prompt=prompt, new_battle=True, moderate=moderate)
    return prompt


def battle_create(
    *, session_key: str, ip: str, mode: str, prompt: object, models: object = None, public_id: str | None = None,
    admitted: bool = False,
) -> Battle:
    """Start a battle: pick or check the models, create one side and a first turn each, queue their generation.
    ``admitted``: the caller has already passed the prompt through ``battle_start_admit`` and moderation."""
    if not admitted:
        prompt = battle_start_admit(session_key=session_key, ip=ip, mode=mode, prompt=prompt)
    elif mode not in Battle.Mode.values:
        raise BattleError("Unknown battle mode.", code="invalid_mode")
    elif not isinstance(prompt, str):
        raise BattleError("The prompt must be text.", code="invalid_prompt")
    if mode == Battle.Mode.ANONYMOUS:
        try:
            left, right = _anonymous_pair(_drawable_entries())
        except NoPairAvailable:
            raise BattleError(
                "Not enough models are available for a battle right now. Please try again later.",
                code="no_models", status=503,
            ) from None
        chosen = [left, right]
    elif mode == Battle.Mode.NAMED:
        chosen = _chosen_entries(models, 2)
    else:
        chosen = _chosen_entries(models, 1)
    with transaction.atomic():
        battle = Battle.objects.create(
            mode=mode, session_key=session_key, ip_hash=ip_hash(ip), categories=battle_categories([prompt]),
            prompt_code=prompt_code(prompt),
            **({"public_id": public_id} if public_id else {}),
        )
        for position, entry in zip(("left", "right"), chosen):
            side = Side.objects.create(battle=battle, position=position, model=entry)
            _queue_turn(Turn.objects.create(side=side, index=0, prompt=prompt), entry.pool)
    return battle


def _owned_battle(public_id: object, session_key: str, *, for_update: bool, modality: str = "text") -> Battle:
    """The session's own battle between `modality` models. Another session's battle, and a battle of the other
    modality (a voice battle on the text socket: its vote must wait until both clips were played), answer
    exactly like a missing one: ids are not to be probed."""
    if not isinstance(public_id, str) or not public_id or len(public_id) > 32:
        raise BattleError("Unknown battle.", code="not_found", status=404)
    battle, other_modality = battle_by_public_id(public_id, modality=modality, for_update=for_update)
    if battle is None or battle.session_key != session_key or other_modality:
        raise BattleError("Unknown battle.", code="not_found", status=404)
    return battle


def battle_resume(*, public_id: object, session_key: str, modality: str = "text", reap: bool = True) -> Battle:
    """The voter's own battle for a reconnecting page, its stale turns failed first so what it shows is final
    (``reap=False`` where the caller reads it with battle_state, which does that itself)."""
    battle = _owned_battle(public_id, session_key, for_update=False, modality=modality)
    if reap:
        turn_reap_stale(battle=battle)
    return battle


def _last_turns(battle: Battle) -> list[Turn]:
    sides = list(battle.sides.select_related("model"))
    last = Turn.objects.filter(side__battle=battle).values("side_id").annotate(last=Max("index"))
    last_index = {row["side_id"]: row["last"] for row in last}
    return [
        Turn.objects.select_related("side__model").get(side=side, index=last_index[side.pk])
        for side in sorted(sides, key=lambda s: s.position)
    ]


def battle_continue_admit(
    *, public_id: object, session_key: str, ip: str, prompt: object, moderate: bool = True
) -> str:
    """The checks of a follow-up that lock nothing: the prompt, the battle being this session's, the rate limit
    and (``moderate``) moderation, which may wait on its endpoint and so never runs under the battle's row lock.
    Returns the prompt as it will be asked."""
    prompt = check_prompt(prompt)
    _owned_battle(public_id, session_key, for_update=False)
    # Counted only once the battle is known to be this session's: nobody spends another voter's budget.
    rate_limit("battles", session_key=session_key, ip=ip, limit=settings.ARENA_RATE_LIMIT_BATTLES)
    _trust_admit(session_key=session_key, ip=ip, prompt=prompt, new_battle=False, moderate=moderate)
    return prompt


def battle_continue(
    *, public_id: object, session_key: str, ip: str, prompt: object, admitted: bool = False
) -> list[Turn]:
    """Ask the same models a follow-up: one new turn per side, with the conversation so far as history.
    ``admitted``: the caller has already passed the prompt through ``battle_continue_admit`` and moderation."""
    if not admitted:
        prompt = battle_continue_admit(public_id=public_id, session_key=session_key, ip=ip, prompt=prompt)
    elif not isinstance(prompt, str):
        raise BattleError("The prompt must be text.", code="invalid_prompt")
    with transaction.atomic():
        battle = _owned_battle(public_id, session_key, for_update=True)
        if Vote.objects.filter(battle=battle).exists():
            raise BattleError("This battle has been voted on; start a new round.", code="already_voted", status=409)
        last = _last_turns(battle)
        if any(t.status != Turn.Status.DONE for t in last):
            raise BattleError("Wait until both answers are finished.", code="not_finished", status=409)
        if last[0].index + 1 >= settings.ARENA_MAX_TURNS:
            raise BattleError(
                f"A battle holds at most {settings.ARENA_MAX_TURNS} turns. Vote, then start a new round.",
                code="too_many_turns", status=409,
            )
        turns = [Turn.objects.create(side=t.side, index=t.index + 1, prompt=prompt) for t in last]
        # The earlier prompts' categories are already the battle's: only the new prompt is read.
        battle.categories = categories_after(battle.categories, prompt)
        battle.save(update_fields=["categories"])
        for turn in turns:
            _queue_turn(turn, turn.side.model.pool)
    return turns


def battle_regenerate(*, public_id: object, session_key: str, ip: str, side: object = None) -> list[Turn]:
    """Ask again for the last answer of both sides, or of one side (`side` "A" or "B", e.g. after a failure)."""
    if side is not None and side not in LABEL_POSITION:
        raise BattleError("Unknown side: use A or B.", code="invalid_side")
    with transaction.atomic():
        battle = _owned_battle(public_id, session_key, for_update=True)
        rate_limit("battles", session_key=session_key, ip=ip, limit=settings.ARENA_RATE_LIMIT_BATTLES)
        if Vote.objects.filter(battle=battle).exists():
            raise BattleError("This battle has been voted on; start a new round.", code="already_voted", status=409)
        last = [t for t in _last_turns(battle) if side is None or POSITION_LABEL[t.side.position] == side]
        if not last:
            raise BattleError("Unknown side: use A or B.", code="invalid_side")
        if any(t.status == Turn.Status.FAILED for t in last) and not battle.retried_failure:
            # The voter saw a side fail before voting, and how and when a side fails can hint at what it is:
            # the vote is still taken (and names the models), but the leaderboard leaves the battle out.
            battle.retried_failure = True
            battle.save(update_fields=["retried_failure"])
        for turn in last:
            # A new attempt number retires any job still working on the old one: it can no longer save.
            turn.attempt += 1
            turn.status = Turn.Status.QUEUED
            turn.response = ""
            turn.error = ""
            turn.prompt_tokens = turn.output_tokens = None
            turn.time_to_first_token = turn.tokens_per_second = None
            turn.cut_by_limit = turn.stop_requested = False
            turn.started_at = turn.finished_at = None
            turn.queued_at = timezone.now()
            turn.save()
            _queue_turn(turn, turn.side.model.pool)
    return last


def battle_stop(*, public_id: object, session_key: str) -> list[Turn]:
    """Stop the answers still being written: a running job ends its answer where it is at its next check (within
    a second) and saves it as done; a turn no job has started yet ends done and empty. Returns the turns stopped."""
    with transaction.atomic():
        battle = _owned_battle(public_id, session_key, for_update=True)
        writing = [t for t in _last_turns(battle) if t.status in (Turn.Status.QUEUED, Turn.Status.RUNNING)]
        if not writing:
            raise BattleError("Nothing is being written right now.", code="not_running", status=409)
        now = timezone.now()
        for turn in writing:
            Turn.objects.filter(pk=turn.pk, attempt=turn.attempt, status=Turn.Status.RUNNING).update(stop_requested=True)
            if Turn.objects.filter(pk=turn.pk, attempt=turn.attempt, status=Turn.Status.QUEUED).update(
                status=Turn.Status.DONE, stop_requested=True, started_at=now, finished_at=now
            ):
                # Its job, when it comes, finds the turn no longer queued and does nothing.
                transaction.on_commit(
                    lambda turn=turn: turn_publish(turn, attempt=turn.attempt, status=Turn.Status.DONE, stopped=True)
                )
    return writing


def _names_of(entry: ModelEntry) -> set[str]:
    names = {entry.display_name, entry.slug, entry.codename, entry.remote_model, entry.organization}
    first_word = entry.display_name.split()[0] if entry.display_name.split() else ""
    names.add(first_word)
    return {n for n in names if n and len(n) >= 4}


def answer_reveals_identity(text: str, entry: ModelEntry) -> bool:
    """True when an answer names its own model or maker, which makes an anonymous vote a named one."""
    lowered = text.lower()
    return any(re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", lowered) for name in _names_of(entry))


def vote_record(
    *, public_id: object, session_key: str, ip: str, choice: object, modality: str = "text",
) -> tuple[Vote, dict[str, str]]:
    """Record the vote once, on a finished battle of this session, and return it with the names to reveal.

    Three statements on the vote's path: the battle (locked), its turns with their models, the insert; a second
    vote is refused by the one-vote-per-battle constraint rather than by a query of its own.
    """
    if choice not in Vote.Choice.values:
        raise BattleError("Unknown vote: choose left, right, tie or bothbad.", code="invalid_choice")
    try:
        with transaction.atomic():
            battle = _owned_battle(public_id, session_key, for_update=True, modality=modality)
            # Counted only once the battle is known to be this session's: nobody spends another voter's budget.
            rate_limit("votes", session_key=session_key, ip=ip, limit=settings.ARENA_RATE_LIMIT_VOTES)
            if battle.mode == Battle.Mode.DIRECT:
                raise BattleError("A direct chat has nothing to vote on.", code="no_vote_in_direct", status=409)
            turns, _ = battle_turns(battle)
            if any(t.status == Turn.Status.FAILED for t in turns):
                raise BattleError("A side failed to answer, so this battle cannot be voted on.", code="side_failed", status=409)
            if any(t.status != Turn.Status.DONE for t in turns):
                raise BattleError("Wait until both answers are finished before voting.", code="not_finished", status=409)
            leak = any(answer_reveals_identity(t.response, t.side.model) for t in turns)
            models = {t.side.position: t.side.model for t in turns}
            vote = vote_insert(battle, choice=choice, session_key=session_key, identity_leak=leak,
                               fact=lambda v: fact_values(vote=v, battle=battle, turns=turns, models=models))
    except IntegrityError:
        raise BattleError("You already voted on this battle.", code="already_voted", status=409) from None
    sides = {POSITION_LABEL[t.side.position]: t.side.model.public_name for t in turns}
    return vote, sides



def check_reasons(reasons: object) -> dict[str, list[str]]:
    """{"A": [tag, ...], "B": [tag, ...]} (either side may be left out) as stored: {"left": [...], "right": [...]},
    each side's tags known, unique and in REASON_TAGS order. Anything else is refused whole."""
    if not isinstance(reasons, dict) or not set(reasons) <= set(LABEL_POSITION):
        raise BattleError("Give reasons for answer A and answer B.", code="invalid_reasons")
    stored: dict[str, list[str]] = {}
    for label, tags in reasons.items():
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BattleError("Reasons are a list of tags for each answer.", code="invalid_reasons")
        unknown = [t for t in tags if t not in REASON_TAGS]
        if unknown:
            raise BattleError(f"Unknown reason: {unknown[0][:40]!r}. Choose from {', '.join(REASON_TAGS)}.",
                              code="unknown_reason")
        stored[LABEL_POSITION[label]] = [t for t in REASON_TAGS if t in tags]
    return stored


def vote_reasons_record(*, public_id: object, session_key: str, reasons: object) -> dict[str, list[str]]:
    """Store the voter's reasons with the vote of their own battle, replacing any given before. Only after the
    vote; the choice, the vote's fact row and so the scores are left as they were. Returns the stored reasons."""
    stored = check_reasons(reasons)
    with transaction.atomic():
        battle = _owned_battle(public_id, session_key, for_update=True)
        if not Vote.objects.filter(battle=battle).update(reasons=stored or None):
            raise BattleError("Vote first, then say why.", code="not_voted", status=409)
    return stored
