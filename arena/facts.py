"""One narrow row per vote (``VoteFact``), written with the vote: what the leaderboard and the trust screen read.

A battle is frozen once voted (no continue, regenerate or retry after the vote), so everything a snapshot needs
of a voted battle is known when the vote is written: who voted when, the two models, the outcome, whether the vote
counts, the answers' style counts, characters and turns, and the battle's categories. Stored as fixed-width
numbers, the snapshot reads ten million of them with one binary ``COPY`` and no join (``vote_facts_read``).

Keys (session keys, address hashes, prompts) are stored as 64-bit codes (``key_code``), which SQL computes the same
way (``KEY_CODE_SQL``), so that the screen groups voters by integer and turns a code back into its key only for
the few voters it writes a record for.
"""

from __future__ import annotations

import hashlib
import re
import select
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from django.db import connection
from psycopg import pq
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from ratings import style_counts

from .categories import LANGUAGES

# The categories a battle can have (arena.categories), one bit each; a battle with any other one (an import's
# own) is stored as -1 and its categories are read from the battle.
CATEGORY_BITS: tuple[str, ...] = ("coding", "long_prompt", "multi_turn") + tuple(f"lang:{c}" for c in LANGUAGES)
_BIT = {name: 1 << i for i, name in enumerate(CATEGORY_BITS)}
OTHER_CATEGORIES = -1

OUTCOME_CODE = {"left": 2, "right": 0, "tie": 1, "bothbad": 1}  # twice the outcome for the left model

# ('x' || left(md5(key), 16))::bit(64)::bigint: the first eight bytes of the key's MD5 as a signed integer.
KEY_CODE_SQL = "CASE WHEN {0} = '' THEN 0 ELSE ('x' || left(md5({0}), 16))::bit(64)::bigint END"


def key_code(key: str | None) -> int:
    """A key's 64-bit code (0 for none): the first eight bytes of its MD5, signed, as ``KEY_CODE_SQL`` computes."""
    if not key:
        return 0
    return int.from_bytes(hashlib.md5(key.encode(), usedforsecurity=False).digest()[:8], "big", signed=True)


def prompt_normalised(prompt: str) -> str:
    """A prompt as the repeated-prompt detector compares them: lower case, runs of non-word characters as one space."""
    return re.sub(r"\W+", " ", prompt.lower()).strip()


def prompt_code(prompt: str) -> int:
    """The normalised prompt's code; never 0, which marks a battle whose first prompt is not known yet."""
    return key_code(prompt_normalised(prompt)) or 1


def categories_mask(categories: Iterable[str] | None) -> int:
    mask = 0
    for name in categories or ():
        if name not in _BIT:
            return OTHER_CATEGORIES
        mask |= _BIT[name]
    return mask


def categories_of(mask: int) -> list[str]:
    return [name for name, bit in _BIT.items() if mask & bit]


def fact_values(*, vote: Any, battle: Any, turns: Sequence[Any], models: dict[str, Any]) -> dict[str, Any]:
    """The fact row of ``vote`` on ``battle``: ``turns`` are all of its turns (each with ``side``), ``models``
    each position's model entry (absent for a missing side)."""
    left, right = models.get("left"), models.get("right")
    modalities = {m.modality for m in (left, right) if m is not None}
    done = [t for t in turns if t.status == "done"]
    style = {"left": [0, 0, 0, 0], "right": [0, 0, 0, 0]}
    answered = {"left": False, "right": False}
    for t in done:
        position = t.side.position
        answered[position] = True
        counts = (t.style_tokens, t.style_headers, t.style_list_items, t.style_bold)
        if any(c is None for c in counts):
            counts = style_counts(t.response)
        style[position] = [s + int(c) for s, c in zip(style[position], counts)]
    counted = (
        battle.mode == "anonymous" and not vote.identity_leak and not battle.retried_failure
        and left is not None and right is not None and left.pk != right.pk and len(modalities) == 1
        and not any(t.status == "failed" for t in turns)
    )
    finished = [t.finished_at for t in done if t.finished_at is not None]
    first = next((t for t in turns if t.side.position == "left" and t.index == 0), None)
    values: dict[str, Any] = {
        "battle_id": battle.pk,
        "modality": modalities.pop() if len(modalities) == 1 else "",
        "counted": counted,
        "simulated": bool(vote.simulated),
        "imported": battle.session_key.startswith("import:"),
        "left_model_id": left.pk if left is not None else 0,
        "right_model_id": right.pk if right is not None else 0,
        "outcome": OUTCOME_CODE[vote.choice],
        "voted_at": vote.created_at,
        "done_at": max(finished) if finished else None,
        "chars": sum(len(t.response) for t in done),
        "turns": len(done),
        "has_text": answered["left"] and answered["right"],
        "categories": categories_mask(battle.categories),
        "session_code": key_code(battle.session_key),
        "address_code": key_code(battle.ip_hash),
        "started_at": battle.created_at,
        "prompt_code": battle.prompt_code or (prompt_code(first.prompt) if first is not None else 0),
    }
    for position in ("left", "right"):
        for k, value in enumerate(style[position]):
            values[f"style_{position}_{k}"] = value
    return values


def vote_fact_write(vote: Any) -> None:
    """Write (or rewrite) the fact row of a saved vote from the database's battle, sides and turns."""
    from .models import Turn, VoteFact

    battle = vote.battle
    turns = list(Turn.objects.filter(side__battle=battle).select_related("side__model"))
    models = {s.position: s.model for s in battle.sides.select_related("model")}
    VoteFact.objects.update_or_create(vote_id=vote.pk,
                                      defaults=fact_values(vote=vote, battle=battle, turns=turns, models=models))


@receiver(post_save, sender="arena.Vote", dispatch_uid="arena.facts.vote_saved")
def _vote_saved(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    # Every vote saved through the ORM (the vote path writes its own in the same transaction: arena.services).
    if not raw:
        from .models import Battle

        Battle.objects.filter(pk=instance.battle_id, voted=False).update(voted=True)
        vote_fact_write(instance)


@receiver(post_delete, sender="arena.Vote", dispatch_uid="arena.facts.vote_deleted")
def _vote_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    from .models import Battle

    Battle.objects.filter(pk=instance.battle_id).update(voted=False)


def vote_facts_write(votes: Sequence[Any]) -> None:
    """The fact rows of many saved votes at once (an import): three reads, one bulk insert and the battles marked
    voted."""
    from .models import Battle, Side, Turn, VoteFact

    battle_ids = [v.battle_id for v in votes]
    turns: dict[int, list[Any]] = {b: [] for b in battle_ids}
    for t in Turn.objects.filter(side__battle_id__in=battle_ids).select_related("side"):
        turns[t.side.battle_id].append(t)
    models: dict[int, dict[str, Any]] = {b: {} for b in battle_ids}
    for s in Side.objects.filter(battle_id__in=battle_ids).select_related("model"):
        models[s.battle_id][s.position] = s.model
    VoteFact.objects.bulk_create([
        VoteFact(vote_id=v.pk, **fact_values(vote=v, battle=v.battle, turns=turns[v.battle_id],
                                             models=models[v.battle_id]))
        for v in votes
    ])
    Battle.objects.filter(pk__in=battle_ids, voted=False).update(voted=True)


def battle_facts_rebuild(battle_ids: Iterable[int]) -> None:
    """Rewrite the codes and the vote's fact row of these battles from their rows as they are now: for rows changed
    behind the ORM's back (an SQL fix, a test's ``update()``), which the facts written with the vote do not see."""
    from .models import Battle, Turn, Vote, VoteFact

    ids = list(battle_ids)
    for start in range(0, len(ids), 5000):
        chunk = ids[start:start + 5000]
        battles = list(Battle.objects.filter(pk__in=chunk))
        first = dict(Turn.objects.filter(side__battle__in=chunk, side__position="left", index=0)
                     .values_list("side__battle_id", "prompt"))
        votes = list(Vote.objects.filter(battle__in=chunk).select_related("battle"))
        voted = {v.battle_id for v in votes}
        for b in battles:
            b.session_code, b.address_code = key_code(b.session_key), key_code(b.ip_hash)
            b.prompt_code = prompt_code(first[b.pk]) if b.pk in first else 0
            b.voted = b.pk in voted
        Battle.objects.bulk_update(battles, ["session_code", "address_code", "prompt_code", "voted"])
        by_id = {b.pk: b for b in battles}
        for v in votes:
            v.battle = by_id[v.battle_id]  # with the codes just written
        VoteFact.objects.filter(vote__in=votes).delete()
        vote_facts_write(votes)


# ---------------------------------------------------------------------------------------------------------------
# Reading


@dataclass
class VoteFacts:
    """Counted votes in vote order, (N,) arrays: model entry ids, twice the left model's outcome (0, 1, 2), times
    in Unix seconds (``done``: nan where no answer finished), style counts (N, 2, 4) int32, the category bitmask
    (``OTHER_CATEGORIES`` where the battle has a category outside ``CATEGORY_BITS``), voter codes, and the battle's
    start and prompt code (what the trust screen would otherwise read from the battle's own row)."""

    vote_ids: np.ndarray
    left: np.ndarray
    right: np.ndarray
    outcome2: np.ndarray
    voted_at: np.ndarray
    done: np.ndarray
    chars: np.ndarray
    turns: np.ndarray
    style: np.ndarray
    has_text: np.ndarray
    categories: np.ndarray
    session: np.ndarray
    address: np.ndarray
    imported: np.ndarray
    started: np.ndarray  # when the battle started, Unix seconds
    prompt: np.ndarray  # the battle's normalised first prompt's code (prompt_code; 0 where not known)

    def __len__(self) -> int:
        return int(self.vote_ids.size)


# The columns read, in order, with their binary COPY type; timestamps come as microseconds since 2000-01-01.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("vote_id", ">i8"), ("left_model_id", ">i8"), ("right_model_id", ">i8"),
    ("outcome", ">i2"), ("voted_at", ">i8"), ("done_at", ">i8"), ("chars", ">i8"), ("turns", ">i4"),
    *((f"style_{p}_{k}", ">i4") for p in ("left", "right") for k in range(4)),
    ("has_text", "?"), ("categories", ">i8"), ("session_code", ">i8"), ("address_code", ">i8"), ("imported", "?"),
    ("started_at", ">i8"), ("prompt_code", ">i8"),
)
_NO_TIME = -(2**63)  # done_at when no answer finished ('-infinity')
# Narrower in memory than on the wire. NARROW: the narrowest signed integer that holds each block's values (model
# ids are small, style counts seldom pass 32767); blocks of different widths are joined at the widest.
NARROW = "narrow"
_MEMORY = {"left_model_id": NARROW, "right_model_id": NARROW, "outcome": np.dtype(np.int8), "chars": NARROW,
           "categories": NARROW,
           "turns": np.dtype(np.int16), "has_text": np.dtype(bool), "imported": np.dtype(bool),
           **{f"style_{p}_{k}": NARROW for p in ("left", "right") for k in range(4)}}
_BLOCK = 1 << 22  # bytes of the stream parsed at a time
_EPOCH_2000 = 946684800.0


def _record_dtype(columns: Sequence[tuple[str, str]]) -> np.dtype:
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for name, kind in columns:
        fields += [(f"{name}_len", ">i4"), (name, kind)]
    return np.dtype(fields)


def _narrowest(values: np.ndarray) -> np.ndarray:
    """Integers in the narrowest signed dtype that holds them all."""
    if not values.size:
        return values.astype(np.int8)
    lo, hi = int(values.min()), int(values.max())
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return values.astype(dtype)
    return values.astype(np.int64)


def copy_columns(sql: str, params: Sequence[Any], columns: Sequence[tuple[str, str]], *,
                 memory: dict[str, Any] | None = None, progress: Any = None) -> dict[str, np.ndarray]:
    """Run ``COPY (sql) TO STDOUT (FORMAT BINARY)`` on PostgreSQL and return its columns as numpy arrays.

    ``columns``: (name, big-endian wire dtype) of every selected column in order; each must be fixed-width and
    never NULL (COALESCE in the query). The stream is parsed in blocks of ``_BLOCK`` bytes with one structured
    dtype, each block's columns turned at once into native arrays (of ``memory[name]`` where given, narrower than
    on the wire; ``NARROW``: the narrowest integer that holds them). ``progress(bytes)`` is called per block. With
    no rows, every column is empty."""
    record = _record_dtype(columns)
    into = {name: (memory or {}).get(name, np.dtype(kind).newbyteorder("=")) for name, kind in columns}
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in columns}
    pending = bytearray()
    header = None

    def parse(block: bytes) -> None:
        # Each block becomes compact native columns at once: the wire records are twice their size.
        records = np.frombuffer(block, dtype=record)
        for name, _ in columns:
            parts[name].append(_narrowest(records[name]) if into[name] is NARROW else records[name].astype(into[name]))

    def take() -> None:
        nonlocal header
        if header is None:
            if len(pending) < 19:
                return
            header = 19 + int.from_bytes(pending[15:19], "big")
            del pending[:header]
        whole = len(pending) // record.itemsize * record.itemsize
        parse(bytes(pending[:whole]))
        del pending[:whole]
        if progress is not None:
            progress(whole)

    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)",
                                                               params):
        # The rows straight from libpq: psycopg's Copy.read waits through a generator for every row, which at ten
        # million rows cost more than PostgreSQL took to send them. Its exit does nothing once the stream ended.
        pgconn = cursor.connection.pgconn
        while True:
            nbytes, data = pgconn.get_copy_data(1)  # 1: a row already received, else 0 at once
            if nbytes > 0:
                pending += data  # copied at once: holding libpq's buffers slows every later row
                if len(pending) >= _BLOCK:
                    take()
            elif nbytes == 0:
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
            else:
                break  # -1: the stream ended
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        while (result := pgconn.get_result()) is not None:
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise psycopg.errors.error_from_result(result, encoding=cursor.connection.info.encoding)
        take()
    if header is None and len(pending) >= 19:
        header = 19 + int.from_bytes(pending[15:19], "big")
        del pending[:header]
    # What is left is the trailer (-1 as a 16-bit field count) after the last records.
    if len(pending) < 2 or bytes(pending[-2:]) != b"\xff\xff" or (len(pending) - 2) % record.itemsize:
        raise RuntimeError(f"unexpected end of a binary COPY stream ({len(pending)} bytes)")
    if len(pending) > 2:
        parse(bytes(pending[:-2]))
    out = {name: np.concatenate(parts.pop(name)) if parts[name] else
           np.zeros(0, dtype=np.int8 if into[name] is NARROW else into[name]) for name, _ in columns}
    del pending
    memory_release()  # the blocks' arrays
    return out


def memory_release() -> None:
    """Hand the pages of freed arrays back to the system, where the C library can (glibc's ``malloc_trim``).

    A snapshot frees many arrays of a few megabytes (a COPY's blocks, a detector's temporaries); glibc keeps such
    blocks in its heap and, once a larger block has been freed, serves ever larger ones from there, so the
    process would hold hundreds of megabytes it no longer uses through the steps that follow."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc() -> Any:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


def copy_timestamps(column: np.ndarray) -> np.ndarray:
    """A binary COPY's timestamps (microseconds since 2000-01-01) as Unix seconds; nan for '-infinity'."""
    missing = column == _NO_TIME
    seconds = column / 1e6 + _EPOCH_2000
    seconds[missing] = np.nan
    return seconds


def _empty() -> VoteFacts:
    z = np.zeros(0, dtype=np.int64)
    return VoteFacts(z, z, z, z.astype(np.int8), np.zeros(0), np.zeros(0), z, z, np.zeros((0, 2, 4), np.int32),
                     z.astype(bool), z, z, z, z.astype(bool), np.zeros(0), z)


def _facts_from(columns: dict[str, np.ndarray]) -> VoteFacts:
    names = [[f"style_{p}_{k}" for k in range(4)] for p in ("left", "right")]
    style = np.empty((columns["vote_id"].size, 2, 4), dtype=np.result_type(*(columns[n] for n in sum(names, []))))
    for j, side in enumerate(names):
        for k, name in enumerate(side):
            style[:, j, k] = columns.pop(name)
    return VoteFacts(
        vote_ids=columns["vote_id"], left=columns["left_model_id"],
        right=columns["right_model_id"], outcome2=columns["outcome"].astype(np.int8), voted_at=columns["voted_at"],
        done=columns["done_at"], chars=columns["chars"], turns=columns["turns"], style=style,
        has_text=columns["has_text"], categories=columns["categories"], session=columns["session_code"],
        address=columns["address_code"], imported=columns["imported"], started=columns["started_at"],
        prompt=columns["prompt_code"],
    )


def vote_facts_read(*, modality: str = "text", simulated: bool = False, progress: Any = None) -> VoteFacts:
    """The counted votes of ``modality`` (only the simulated voters' with ``simulated``), in vote order."""
    from .models import VoteFact

    if connection.vendor != "postgresql":
        rows = (VoteFact.objects.filter(counted=True, modality=modality, simulated=simulated).order_by("vote_id")
                .values_list(*(name for name, _ in _COLUMNS)))
        table = list(rows)
        if not table:
            return _empty()
        columns = {}
        for k, (name, kind) in enumerate(_COLUMNS):
            values = [r[k] for r in table]
            if name in ("voted_at", "done_at", "started_at"):
                columns[name] = np.array([v.timestamp() if v is not None else np.nan for v in values])
            else:
                columns[name] = np.array(values, dtype=np.dtype(kind).newbyteorder("="))
        started = columns["started_at"]
        columns["started_at"] = np.where(np.isnan(started), columns["voted_at"], started)
        return _facts_from(columns)
    select = ", ".join(
        "COALESCE(done_at, '-infinity')" if name == "done_at" else "COALESCE(started_at, voted_at)"
        if name == "started_at" else name for name, _ in _COLUMNS
    )
    sql = (f"SELECT {select} FROM {VoteFact._meta.db_table} WHERE counted AND modality = %s AND "
           f"{'simulated' if simulated else 'NOT simulated'} ORDER BY vote_id")
    columns = copy_columns(sql, [modality], _COLUMNS, memory=_MEMORY, progress=progress)
    if not columns["vote_id"].size:
        return _empty()
    for name in ("voted_at", "done_at", "started_at"):
        columns[name] = copy_timestamps(columns[name])
    return _facts_from(columns)
