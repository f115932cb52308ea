"""Writes for voice battles: create one (two anonymous voices read the same text), serve a clip, record the vote.

A voice battle is an arena Battle in anonymous mode whose sides are speech models, with one Turn per side holding
the text. A new battle passes the text arena's checks first: its rate limit and the trust gate (the session's
proof of work, then moderation of the text). Both clips go out padded to one length (speech.delivery); votes are
arena Votes, recorded by ``arena.services.vote_record`` once both clips were delivered in full and their duration
has passed. Errors a voter can cause raise the arena's BattleError (a message for the voter and an HTTP status).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from arena.categories import battle_categories
from arena.events import LABEL_POSITION
from arena.models import Battle, Side, Turn, Vote
from arena.ratelimit import ip_hash
from arena.sampling import NoPairAvailable, pair_sample
from arena.services import QUEUE_FAILED, BattleError, battle_resume, rate_limit, vote_record
from inference.dispatch import dispatch
from inference.pools import live_pools
from models_hub.models import ModelEntry
from trust.gate import TrustRefusal, prompt_admit

from .delivery import wav_frames, wav_padded
from .languages import prompt_language, voices_reading
from .models import SpeechClip, clip_storage
from .tasks import speech_leaderboard_snapshot, synthesize_clip

_rng = random.SystemRandom()
logger = logging.getLogger(__name__)

# Texts a voter may pick instead of typing one, as TTS Arena offers.
EXAMPLE_TEXTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog, and the dog does not seem to mind at all.",
    "Please remember to bring your umbrella tomorrow; the forecast says it will rain after lunch.",
    "In 1969, two astronauts walked on the Moon while millions of people watched on television.",
    "Could you tell me the way to the nearest train station? I think I took a wrong turn.",
    "Wow! I can't believe we actually won the match. What a finish!",
    "Le petit chat dort au soleil pendant que les enfants jouent dans le jardin.",
    "Pourriez-vous m'indiquer le chemin de la gare ? Je crois que je me suis perdu.",
)


def check_speech_text(text: object) -> str:
    if not isinstance(text, str):
        raise BattleError("The text must be text.", code="invalid_text")
    text = " ".join(text.split())  # newlines and runs of spaces read the same; one line goes to every engine
    if not text:
        raise BattleError("Type a text for the voices to read, or pick an example.", code="empty_text")
    limit = settings.ARENA_SPEECH_MAX_CHARS
    if len(text) > limit:
        raise BattleError(
            f"The text is {len(text)} characters long; the limit for voices is {limit}.", code="text_too_long",
            status=413,
        )
    if "\x00" in text:
        raise BattleError("The text contains a NUL character.", code="invalid_text")
    return text


def speech_entries_drawable(language: str = "und") -> list[ModelEntry]:
    """Speech models that may be drawn now: active, weighted, reading `language`, with a live worker for their pool."""
    entries = voices_reading(
        ModelEntry.objects.filter(is_active=True, sampling_weight__gt=0, modality="speech"), language
    )
    live = live_pools({e.pool for e in entries})
    return [e for e in entries if e.pool in live]


def clip_dispatch(turn: Turn, pool: str) -> None:
    """Hand the side's synthesis to its pool; if the broker refuses, end the turn failed so nothing waits."""
    try:
        dispatch(synthesize_clip, args=(turn.pk, turn.attempt), pool=pool)
    except Exception:
        logger.exception("could not queue speech turn %s", turn.pk)
        Turn.objects.filter(pk=turn.pk, attempt=turn.attempt, status=Turn.Status.QUEUED).update(
            status=Turn.Status.FAILED, error=QUEUE_FAILED, finished_at=timezone.now()
        )


def _trust_admit(*, session_key: str, ip: str, text: str) -> None:
    """The text arena's trust gate (trust.gate) for a new voice battle: the session's proof of work, then
    moderation of the text, before anything is written or any voice is asked; refusals as BattleErrors."""
    try:
        prompt_admit(session_key=session_key, ip_hash=ip_hash(ip), prompt=text, new_battle=True)
    except TrustRefusal as exc:
        raise BattleError(exc.message, code=exc.code, status=exc.status) from None


def speech_battle_create(*, session_key: str, ip: str, text: object) -> Battle:
    """Draw two voices, create the battle with one side and one turn each, and queue both syntheses."""
    text = check_speech_text(text)
    rate_limit("battles", session_key=session_key, ip=ip, limit=settings.ARENA_RATE_LIMIT_BATTLES)
    _trust_admit(session_key=session_key, ip=ip, text=text)
    try:
        left, right = pair_sample(
            speech_entries_drawable(prompt_language(text)), rng=_rng, inhouse_share=settings.ARENA_INHOUSE_SHARE,
            rivals=settings.ARENA_INHOUSE_RIVALS, previews_meet=settings.ARENA_PREVIEWS_MEET,
        )
    except NoPairAvailable:
        raise BattleError(
            "Not enough voices are available for a battle right now. Please try again later.",
            code="no_models", status=503,
        ) from None
    with transaction.atomic():
        battle = Battle.objects.create(
            mode=Battle.Mode.ANONYMOUS, session_key=session_key, ip_hash=ip_hash(ip),
            categories=battle_categories([text]),
        )
        for position, entry in (("left", left), ("right", right)):
            side = Side.objects.create(battle=battle, position=position, model=entry)
            turn = Turn.objects.create(side=side, index=0, prompt=text)
            transaction.on_commit(lambda turn=turn, pool=entry.pool: clip_dispatch(turn, pool))
    return battle


def speech_battle_owned(*, public_id: object, session_key: str) -> Battle:
    """The voter's own voice battle, stale turns failed first (arena.services.battle_resume); a text battle, another
    session's battle and a missing one all answer the same 404."""
    return battle_resume(public_id=public_id, session_key=session_key, modality="speech")


NOT_READY = "The voices have not both spoken yet."
NOT_PLAYED = "Play both voices to the end before voting."
NOT_LISTENED = "Listen to both voices to the end before voting."


@dataclass(frozen=True)
class ServedClip:
    """A clip as it leaves the server: the WAV bytes padded to the battle's one length, the clip's id and when it
    was asked for (for marking it delivered once those bytes went out in full)."""

    clip_id: int
    data: bytes
    asked_at: datetime


def _battle_clips(battle: Battle) -> dict[str, SpeechClip]:
    """Both clips of the battle by position; the voter hears neither until both voices have spoken, because
    each is padded to the longer one."""
    turns = list(Turn.objects.filter(side__battle=battle, index=0).select_related("side"))
    clips = {c.turn_id: c for c in SpeechClip.objects.filter(turn__in=turns)}
    if len(turns) != 2 or any(t.status != Turn.Status.DONE or t.pk not in clips for t in turns):
        raise BattleError(NOT_READY, code="not_ready", status=404)
    return {t.side.position: clips[t.pk] for t in turns}


def clip_serve(*, public_id: object, session_key: str, side: object) -> ServedClip:
    """The clip of side A or B for its owner, padded with silence to the longer of the battle's two clips (one byte
    length, one declared duration for both). The first ask is kept for staff (served_at)."""
    if side not in LABEL_POSITION:
        raise BattleError("Unknown side: use A or B.", code="invalid_side", status=404)
    battle = speech_battle_owned(public_id=public_id, session_key=session_key)
    clips = _battle_clips(battle)
    storage = clip_storage()
    audio: dict[str, bytes] = {}
    for position, clip in clips.items():
        with storage.open(clip.audio.name, "rb") as handle:
            audio[position] = handle.read()
    frames = max(wav_frames(data) for data in audio.values())
    clip = clips[LABEL_POSITION[side]]
    asked_at = timezone.now()
    if clip.served_at is None:
        SpeechClip.objects.filter(pk=clip.pk, served_at__isnull=True).update(served_at=asked_at)
    return ServedClip(clip_id=clip.pk, data=wav_padded(audio[LABEL_POSITION[side]], frames), asked_at=asked_at)


def clip_delivered(clip: ServedClip) -> None:
    """Mark the clip delivered, the first time a response carrying all of its bytes was handed to the server in
    full: called by that response's body once its last chunk went out (speech.delivery), never for a range or a
    cut connection. The time stored is when that response was asked for: playing it cannot end sooner than its
    duration after that, however slowly the bytes reach the voter."""
    SpeechClip.objects.filter(pk=clip.clip_id, delivered_at__isnull=True).update(delivered_at=clip.asked_at)


def check_listened(clips: list[SpeechClip], *, now: datetime) -> None:
    """Refuse the vote unless both clips were delivered in full and, since each delivery was asked for, as long
    as their one padded duration (the longer clip's) times ARENA_SPEECH_LISTEN_FACTOR has passed."""
    if len(clips) != 2 or any(c.delivered_at is None for c in clips):
        raise BattleError(NOT_PLAYED, code="not_played", status=409)
    duration = max(c.audio_seconds for c in clips) * settings.ARENA_SPEECH_LISTEN_FACTOR
    if now < max(c.delivered_at for c in clips) + timedelta(seconds=duration):
        raise BattleError(NOT_LISTENED, code="not_listened", status=409)


def speech_vote_record(*, public_id: object, session_key: str, ip: str, choice: object) -> tuple[Vote, dict[str, str]]:
    """Record the vote on a voice battle once both clips were heard out; returns the vote and the names to reveal."""
    battle = speech_battle_owned(public_id=public_id, session_key=session_key)
    if Vote.objects.filter(battle=battle).exists():
        raise BattleError("You already voted on this battle.", code="already_voted", status=409)
    turns = list(Turn.objects.filter(side__battle=battle))
    if any(t.status == Turn.Status.FAILED for t in turns):
        raise BattleError("A voice failed to speak, so this battle cannot be voted on.", code="side_failed", status=409)
    if len(turns) != 2:
        raise BattleError(NOT_PLAYED, code="not_played", status=409)
    check_listened(list(SpeechClip.objects.filter(turn__side__battle=battle)), now=timezone.now())
    vote, names = vote_record(public_id=public_id, session_key=session_key, ip=ip, choice=choice, modality="speech")
    transaction.on_commit(_leaderboard_refit_soon)
    return vote, names


def _leaderboard_refit_soon() -> None:
    # The vote is stored; a refit that cannot be queued now happens with the next vote or the command.
    try:
        dispatch(speech_leaderboard_snapshot, args=(), pool=settings.ARENA_SNAPSHOT_QUEUE)
    except Exception:
        logger.warning("could not queue a voice leaderboard fit", exc_info=True)
