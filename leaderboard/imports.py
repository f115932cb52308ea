"""Import battles in the shape of LMArena's public battle data (the shape ``leaderboard.exports`` writes).

Accepts JSON lines (one object per line), a JSON array, or CSV with a header. Only ``model_a``, ``model_b`` and
``winner`` are required (LLMFAO's file has nothing else); ``conversation_a``/``conversation_b`` (lists of
{"role", "content"} messages, JSON text in CSV), ``anony`` (default true), ``tstamp``, ``judge``, ``language``
and ``question_id`` are used when present; ``modality`` ("text", the default, or "speech": the arena's own
column, so voice battles come back as voice battles) says which board the battle counts on.

- Models are found by display name; unknown ones are created inactive with sampling weight 0 in the pool
  "imported", so they are never drawn into a live battle, with the record's modality. A model the file names
  with both modalities, or with another modality than its entry here, is an error naming the line.
- Every record gets a key, the SHA-256 of its content and of how many identical records came before it in the
  file, stored on ``ImportedBattle``: a second import of the same file adds nothing, also when lines were added,
  removed or reordered around it (blank lines, a new header position), while two identical votes stay two.
- Everything is checked before anything is written, and written in one transaction: a malformed record raises
  ``BattleImportError`` naming its line and the database is left as it was.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from arena.categories import battle_categories
from arena.facts import key_code, prompt_code, vote_facts_write
from arena.models import Battle, Side, Turn, Vote, turn_style_fields
from models_hub.models import ModelEntry

from .models import ImportedBattle
from .snapshots import LANGUAGE_NAMES, Progress, no_progress

CHOICE = {"model_a": "left", "model_b": "right", "tie": "tie", "tie (bothbad)": "bothbad"}
LANGUAGE_CODES = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}
IMPORTED_POOL = "imported"
MODALITIES = ("text", "speech")
BATCH = 2000


class BattleImportError(ValueError):
    """A malformed battle file; the message names the line (or record) at fault."""


@dataclass
class ParsedBattle:
    line: int
    key: str
    legacy_key: str  # the key earlier versions stored (line number and content), so their imports are known too
    model_a: str
    model_b: str
    choice: str
    turns_a: list[tuple[str, str]]
    turns_b: list[tuple[str, str]]
    anony: bool
    created_at: datetime | None
    judge: str
    categories: list[str]
    question_id: str
    modality: str = "text"


@dataclass
class ImportResult:
    created: int = 0
    skipped: int = 0
    models_created: list[str] = field(default_factory=list)


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, raw record) for every record of the file; raises BattleImportError on bad syntax."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        head = fh.read(4096).lstrip()
        fh.seek(0)
        if head.startswith("["):
            try:
                data = json.load(fh)
            except ValueError as exc:
                raise BattleImportError(f"{path.name}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
            except RecursionError:
                raise BattleImportError(f"{path.name}: the JSON array is nested too deeply to read") from None
            for i, record in enumerate(data, start=1):
                if not isinstance(record, dict):
                    raise BattleImportError(f"{path.name}: record {i}: expected an object")
                yield i, record
        elif head.startswith("{"):
            for i, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except ValueError as exc:
                    raise BattleImportError(f"{path.name}: line {i}: not valid JSON: {exc.msg}") from None
                except RecursionError:
                    raise BattleImportError(f"{path.name}: line {i}: nested too deeply to read") from None
                if not isinstance(record, dict):
                    raise BattleImportError(f"{path.name}: line {i}: expected a JSON object")
                yield i, record
        else:
            # Blank lines before the header are skipped, and counted, so that line numbers stay the file's.
            blank = 0
            while True:
                start = fh.tell()
                text = fh.readline()
                if text.strip() or not text:
                    fh.seek(start)
                    break
                blank += 1
            reader = csv.DictReader(fh)
            try:
                fieldnames = reader.fieldnames or []
            except csv.Error as exc:
                raise BattleImportError(f"{path.name}: line {blank + 1}: {exc}") from None
            missing = [c for c in ("model_a", "model_b", "winner") if c not in fieldnames]
            if missing:
                raise BattleImportError(f"{path.name}: line {blank + 1}: missing column(s) {', '.join(missing)}")
            try:
                for row in reader:
                    if None in row:
                        raise BattleImportError(
                            f"{path.name}: line {blank + reader.line_num}: more fields than the header"
                        )
                    if all(not (v or "").strip() for v in row.values()):
                        continue
                    yield blank + reader.line_num, row
            except csv.Error as exc:
                raise BattleImportError(f"{path.name}: line {blank + reader.line_num}: {exc}") from None


def _text(value: Any) -> str:
    # Newer LMArena releases give content as a list of parts: [{"type": "text", "text": ...}, ...].
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    raise ValueError("message content must be text")


def _turns(value: Any, name: str) -> list[tuple[str, str]]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"{name} is not valid JSON") from None
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise ValueError(f"{name} must be a list of messages")
    turns: list[tuple[str, str]] = []
    prompt: str | None = None
    for message in value:
        role, content = message.get("role"), _text(message.get("content", ""))
        if role == "user":
            if prompt is not None:
                raise ValueError(f"{name}: two user messages in a row")
            prompt = content
        elif role == "assistant":
            if prompt is None:
                raise ValueError(f"{name}: an assistant message without a user message before it")
            turns.append((prompt, content))
            prompt = None
        elif role != "system":
            raise ValueError(f"{name}: unknown role {role!r}")
    return turns


def _bool(value: Any) -> bool:
    if value in (None, ""):
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"anony must be true or false, not {value!r}")


MAX_DEPTH = 16


def _check_value(value: Any) -> None:
    """Refuse what PostgreSQL cannot store (NUL characters) and structures deeper than a battle record is,
    walking without recursion."""
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
        children = []
        for item in level:
            if isinstance(item, str):
                if "\x00" in item:
                    raise ValueError("contains a NUL character")
            elif isinstance(item, dict):
                children.extend(item.keys())
                children.extend(item.values())
            elif isinstance(item, list):
                children.extend(item)
        level = children


def _check_prompt_lengths(turns: list[tuple[str, str]], name: str) -> None:
    """Refuse a prompt over ``ARENA_MAX_PROMPT_CHARS``, the limit of a prompt typed in the arena: an imported
    battle is categorised and shown like one, and is not to cost more than one."""
    limit = settings.ARENA_MAX_PROMPT_CHARS
    for i, (prompt, _) in enumerate(turns, start=1):
        if len(prompt) > limit:
            raise ValueError(f"{name}: prompt {i} is {len(prompt):,} characters long; the limit is {limit:,} "
                             f"(ARENA_MAX_PROMPT_CHARS)")


def _parse(line: int, raw: dict[str, Any], occurrence: int = 0) -> ParsedBattle:
    """One checked record (see _check_value) as a battle to write; `occurrence`: identical records before it."""
    a, b, winner = (str(raw.get(k) or "").strip() for k in ("model_a", "model_b", "winner"))
    if not a or not b:
        raise ValueError("empty model name")
    if a == b:
        raise ValueError(f"model {a!r} battles itself")
    if max(len(a), len(b)) > 100:
        raise ValueError("a model name is longer than 100 characters")
    if winner not in CHOICE:
        raise ValueError(f"unknown winner {winner!r} (expected model_a, model_b, tie or tie (bothbad))")
    turns_a = _turns(raw.get("conversation_a"), "conversation_a")
    turns_b = _turns(raw.get("conversation_b"), "conversation_b")
    _check_prompt_lengths(turns_a, "conversation_a")
    _check_prompt_lengths(turns_b, "conversation_b")
    if bool(turns_a) != bool(turns_b):
        raise ValueError("only one side has a conversation")
    created_at = None
    if raw.get("tstamp") not in (None, ""):
        try:
            created_at = datetime.fromtimestamp(float(raw["tstamp"]), tz=dt_timezone.utc)
        except (TypeError, ValueError, OverflowError, OSError):
            raise ValueError(f"tstamp must be Unix seconds, not {raw['tstamp']!r}") from None
    if turns_a:
        categories = battle_categories([p for p, _ in turns_a])
    else:
        language = str(raw.get("language") or "").strip().lower()
        code = LANGUAGE_CODES.get(language, language if language in LANGUAGE_NAMES else "")
        categories = [f"lang:{code}"] if code else []
    modality = str(raw.get("modality") or "text").strip().lower()
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {raw.get('modality')!r} (expected text or speech)")
    canonical = record_canonical(raw)
    return ParsedBattle(
        line=line, key=record_key(canonical, occurrence), model_a=a, model_b=b,
        legacy_key=hashlib.sha256(
            f"{line}\n{json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)}".encode()
        ).hexdigest(),
        choice=CHOICE[winner], turns_a=turns_a, turns_b=turns_b, anony=_bool(raw.get("anony")),
        created_at=created_at, judge=str(raw.get("judge") or ""), categories=categories,
        question_id=str(raw.get("question_id") or "").strip(), modality=modality,
    )


def record_canonical(raw: dict[str, Any]) -> str:
    # CSV cells a row leaves empty and absent JSON fields mean the same: neither changes a record's identity.
    return json.dumps({k: v for k, v in raw.items() if v not in (None, "")}, sort_keys=True, ensure_ascii=False,
                      default=str)


def record_key(canonical: str, occurrence: int) -> str:
    """A record's identity: its content and its place among identical records of the file, not its line."""
    return hashlib.sha256(f"{occurrence}\n{canonical}".encode()).hexdigest()


def _chunks(items: list, size: int = BATCH) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _model_modalities(parsed: list[ParsedBattle], source: str) -> dict[str, tuple[str, int]]:
    """{model name: (its modality, the first line naming it)}; a model named with both modalities is an error."""
    out: dict[str, tuple[str, int]] = {}
    for p in parsed:
        for name in (p.model_a, p.model_b):
            modality, line = out.setdefault(name, (p.modality, p.line))
            if modality != p.modality:
                raise BattleImportError(
                    f"{source}: line {p.line}: model {name!r} is a {modality} model on line {line}, {p.modality} here")
    return out


def _model_entries(names: dict[str, tuple[str, int]], result: ImportResult, source: str) -> dict[str, ModelEntry]:
    found = {e.display_name: e for e in ModelEntry.objects.filter(display_name__in=names)}
    for name, entry in found.items():
        modality, line = names[name]
        if entry.modality != modality:
            raise BattleImportError(f"{source}: line {line}: model {name!r} is a {entry.modality} model in this "
                                    f"arena, and the file has it in a {modality} battle")
    taken = set(ModelEntry.objects.values_list("slug", flat=True))
    new = []
    for name in sorted(set(names) - set(found)):
        base = (slugify(name) or "model")[:56]
        slug, n = base, 1
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
        taken.add(slug)
        # Inactive, weight 0, a pool no worker serves: an imported model is rated, never drawn into a battle.
        new.append(ModelEntry(
            slug=slug, display_name=name, provider=ModelEntry.Provider.OPENAI, is_active=False,
            sampling_weight=0.0, pool=IMPORTED_POOL, modality=names[name][0],
        ))
    for entry in ModelEntry.objects.bulk_create(new):
        found[entry.display_name] = entry
        result.models_created.append(entry.display_name)
    return found


def battles_read(path: str | Path, *, progress: Progress = no_progress) -> list[ParsedBattle]:
    """Every battle of ``path``, checked, nothing written; raises BattleImportError naming the line at fault."""
    path = Path(path)
    parsed: list[ParsedBattle] = []
    seen: dict[str, int] = {}
    for line, raw in progress(_records(path), desc="reading", unit="record"):
        try:
            _check_value(raw)
            canonical = record_canonical(raw)
            occurrence = seen.get(canonical, 0)
            seen[canonical] = occurrence + 1
            parsed.append(_parse(line, raw, occurrence))
        except ValueError as exc:
            raise BattleImportError(f"{path.name}: line {line}: {exc}") from None
    if not parsed:
        raise BattleImportError(f"{path.name}: no battles in the file")
    return parsed


def battles_import(path: str | Path, *, progress: Progress = no_progress) -> ImportResult:
    """Load the battles of ``path`` (see the module notes); returns how many were created and skipped."""
    path = Path(path)
    parsed = battles_read(path, progress=progress)
    result = ImportResult()
    now = timezone.now()
    with transaction.atomic():
        known: set[str] = set()
        for chunk in _chunks([k for p in parsed for k in (p.key, p.legacy_key)], 5000):
            known.update(ImportedBattle.objects.filter(key__in=chunk).values_list("key", flat=True))
        todo = [p for p in parsed if p.key not in known and p.legacy_key not in known]
        result.skipped = len(parsed) - len(todo)
        if not todo:
            return result
        entries = _model_entries(_model_modalities(todo, path.name), result, path.name)
        wanted = {p.question_id for p in todo if 0 < len(p.question_id) <= 32}
        used: set[str] = set()
        for chunk in _chunks(sorted(wanted), 5000):
            used.update(Battle.objects.filter(public_id__in=chunk).values_list("public_id", flat=True))
        for chunk in progress(list(_chunks(todo)), desc="writing", unit="batch"):
            battles = []
            for p in chunk:
                session_key = f"import:{hashlib.sha256(p.judge.encode()).hexdigest()[:40]}"
                battle = Battle(
                    mode=Battle.Mode.ANONYMOUS if p.anony else Battle.Mode.NAMED, session_key=session_key,
                    categories=p.categories, session_code=key_code(session_key),
                    prompt_code=prompt_code(p.turns_a[0][0]) if p.turns_a else 0,
                )
                if p.question_id in wanted and p.question_id not in used:
                    battle.public_id = p.question_id
                    used.add(p.question_id)
                battles.append(battle)
            Battle.objects.bulk_create(battles)
            for battle, p in zip(battles, chunk):
                battle.created_at = p.created_at or now
            # created_at is auto_now_add, which bulk_create overwrites: the vote's own time goes in afterwards.
            Battle.objects.bulk_update(battles, ["created_at"])
            sides = []
            for battle, p in zip(battles, chunk):
                sides.append(Side(battle=battle, position="left", model=entries[p.model_a]))
                sides.append(Side(battle=battle, position="right", model=entries[p.model_b]))
            Side.objects.bulk_create(sides)
            turns = []
            for i, p in enumerate(chunk):
                for side, conv in ((sides[2 * i], p.turns_a), (sides[2 * i + 1], p.turns_b)):
                    for index, (prompt, response) in enumerate(conv):
                        turns.append(Turn(
                            side=side, index=index, prompt=prompt, response=response, status=Turn.Status.DONE,
                            queued_at=battles[i].created_at, **turn_style_fields(response),
                        ))
            Turn.objects.bulk_create(turns, batch_size=BATCH)
            votes = [Vote(battle=battle, choice=p.choice, session_key=battle.session_key)
                     for battle, p in zip(battles, chunk)]
            Vote.objects.bulk_create(votes)
            for vote, battle in zip(votes, battles):
                vote.created_at = battle.created_at
            Vote.objects.bulk_update(votes, ["created_at"])
            vote_facts_write(votes)
            ImportedBattle.objects.bulk_create(
                [ImportedBattle(battle=battle, key=p.key, source=path.name[:255], line=p.line)
                 for battle, p in zip(battles, chunk)]
            )
            result.created += len(chunk)
    return result
