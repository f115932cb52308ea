"""Upgrades keep every vote: a database at arena 0006 holding battles, votes, voice battles and snapshots migrates
to the latest schema on SQLite and on PostgreSQL, and every vote counts where it did; no migration imports live
code."""

from __future__ import annotations

import ast
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Exists, OuterRef
from django.utils import timezone

ROOT = Path(__file__).resolve().parents[2]

# Every project app at the step before the vote facts (arena 0006): the migrations the repository held then.
BEFORE = {
    "arena": "0006_simulated_votes",
    "leaderboard": "0003_snapshot_board",
    "models_hub": "0004_modality",
    "speech": "0001_initial",
    "training": "0001_initial",
    "trust": "0001_initial",
}
PROJECT_APPS = {"arena", "leaderboard", "models_hub", "speech", "training", "trust", "inference"}
CHOICES = {"left": 2, "right": 0, "tie": 1, "bothbad": 1}


@contextmanager
def extra_database(alias: str, engine: str, tmp_path: Path, postgres_cluster: Any) -> Iterator[str]:
    """A fresh, empty database under ``alias`` for the test's duration, beside (not instead of) the test database."""
    base = dict(connections.settings["default"])
    if engine == "sqlite":
        config = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "upgrade.sqlite3")}
        name = None
    else:
        name = f"upgrade_{uuid.uuid4().hex[:12]}"
        postgres_cluster.create_database(name)
        options = {k: v for k, v in base.get("OPTIONS", {}).items() if k != "pool"}  # one plain connection
        config = {**{k: base[k] for k in ("ENGINE", "USER", "PASSWORD", "HOST", "PORT")}, "NAME": name,
                  "OPTIONS": options}
    connections.settings[alias] = connections.configure_settings({"default": config})["default"]
    try:
        yield alias
    finally:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]
        if name is not None:
            subprocess.run([str(postgres_cluster.bin_dir / "dropdb"), "-h", "127.0.0.1", "-p",
                            str(postgres_cluster.port), "-U", "arena", name], check=True)


@contextmanager
def as_default(alias: str) -> Iterator[None]:
    """The live code (which reads ``django.db.connection`` and the default alias) pointed at ``alias``."""
    original = connections["default"]
    setattr(connections._connections, "default", connections[alias])
    try:
        yield
    finally:
        setattr(connections._connections, "default", original)


def before_targets(executor: MigrationExecutor) -> list[tuple[str, str]]:
    # Django's own apps at their latest: they never depend on ours.
    return [*BEFORE.items(), *((app, name) for app, name in executor.loader.graph.leaf_nodes()
                               if app not in PROJECT_APPS)]


def seed(apps: Any, db: str) -> dict[str, Any]:
    """Battles of every kind the 0006 schema holds, written through its historical models."""
    ModelEntry = apps.get_model("models_hub", "ModelEntry")
    Battle = apps.get_model("arena", "Battle")
    Side = apps.get_model("arena", "Side")
    Turn = apps.get_model("arena", "Turn")
    Vote = apps.get_model("arena", "Vote")
    SpeechClip = apps.get_model("speech", "SpeechClip")
    models = {slug: ModelEntry.objects.using(db).create(slug=slug, display_name=slug.title(), modality=modality)
              for slug, modality in (("alpha", "text"), ("beta", "text"), ("gamma", "text"),
                                     ("voice-a", "speech"), ("voice-b", "speech"))}
    start = timezone.now() - timedelta(days=3)
    battles: dict[str, Any] = {}
    clock = iter(range(1000))

    def battle(key: str, *, left: str | None, right: str | None, mode: str = "anonymous", turns: int = 1,
               status: dict[str, str] | None = None, categories: list[str] | None = None, choice: str | None = "left",
               stored_style: bool = True, session: str | None = None, retried: bool = False, leak: bool = False,
               simulated: bool = False) -> None:
        b = Battle.objects.using(db).create(mode=mode, session_key=session or f"s-{key}", ip_hash=f"ip-{key}",
                                            categories=categories or [], retried_failure=retried)
        for position, slug in (("left", left), ("right", right)):
            if slug is None:
                continue
            side = Side.objects.using(db).create(battle=b, position=position, model=models[slug])
            for index in range(turns):
                done = (status or {}).get(position, "done") == "done"
                at = start + timedelta(minutes=next(clock))
                response = f"## {key} {position} {index}\n- one\n- two **bold** and more words" if done else ""
                turn = Turn.objects.using(db).create(
                    side=side, index=index, prompt=f"Prompt, {key}! number {index}", response=response,
                    status=(status or {}).get(position, "done"), started_at=at, finished_at=at + timedelta(seconds=3),
                    **({"style_tokens": 9, "style_headers": 1, "style_list_items": 2, "style_bold": 1}
                       if stored_style and done else {}))
                if "voice" in slug:
                    SpeechClip.objects.using(db).create(turn=turn, audio=f"clips/{key}-{position}.wav",
                                                       byte_size=100, sample_rate=16000, audio_seconds=1.5,
                                                       generation_seconds=0.2)
        if choice is not None:
            Vote.objects.using(db).create(battle=b, choice=choice, session_key=b.session_key, identity_leak=leak,
                                          simulated=simulated)
        battles[key] = b

    battle("plain", left="alpha", right="beta", categories=["coding", "lang:en"])
    battle("old-turns", left="beta", right="gamma", choice="right", stored_style=False)
    battle("tie", left="gamma", right="alpha", choice="tie", categories=["long_prompt"])
    battle("unvoted", left="alpha", right="beta", choice=None)
    battle("named", left="alpha", right="gamma", mode="named")
    battle("multi-turn", left="alpha", right="gamma", turns=3, choice="bothbad", categories=["multi_turn"])
    battle("failed-side", left="beta", right="alpha", status={"right": "failed"})
    battle("retried", left="beta", right="gamma", retried=True)
    battle("leak", left="alpha", right="beta", leak=True)
    battle("simulated", left="gamma", right="beta", simulated=True, session="sim-1")
    battle("same-model", left="alpha", right="alpha")
    battle("one-side", left="alpha", right=None, mode="direct")
    battle("imported", left="beta", right="alpha", session="import:llmfao", categories=["llmfao-task"])
    battle("mixed", left="alpha", right="voice-a")
    battle("voice", left="voice-a", right="voice-b", choice="right", categories=["lang:de"])
    battle("voice-unvoted", left="voice-b", right="voice-a", choice=None)

    LeaderboardSnapshot = apps.get_model("leaderboard", "LeaderboardSnapshot")
    SpeechLeaderboardSnapshot = apps.get_model("speech", "SpeechLeaderboardSnapshot")
    LeaderboardSnapshot.objects.using(db).create(votes_used=4, vote_hash="a" * 64, seconds=0.5,
                                                 payload={"models": [1, 2], "scores": [1010.5, 989.5]})
    LeaderboardSnapshot.objects.using(db).create(votes_used=1, vote_hash="b" * 64, seconds=0.1, board="simulated",
                                                 payload={"models": [3]})
    SpeechLeaderboardSnapshot.objects.using(db).create(votes_used=1, vote_hash="c" * 64, payload={"voices": 2})
    return battles


def counted_0006(apps: Any, db: str, *, modality: str, simulated: bool = False) -> set[int]:
    """The votes a leaderboard counted as of arena 0006 (arena.selectors.battles_counted and the leaderboard's and
    voice board's own filter then): anonymous, voted, no identity leak, the voter simulated or not as asked, no
    side retried after a failure, no failed turn, every side of ``modality``, two sides of different models."""
    Battle = apps.get_model("arena", "Battle")
    Side = apps.get_model("arena", "Side")
    Turn = apps.get_model("arena", "Turn")
    Vote = apps.get_model("arena", "Vote")
    other = Exists(Side.objects.using(db).filter(battle=OuterRef("pk")).exclude(model__modality=modality))
    failed = Exists(Turn.objects.using(db).filter(side__battle=OuterRef("pk"), status="failed"))
    battles = Battle.objects.using(db).filter(
        mode="anonymous", vote__isnull=False, vote__identity_leak=False, vote__simulated=simulated,
        retried_failure=False).filter(~failed, ~other)
    sides: dict[int, dict[str, int]] = {}
    for battle_id, position, model_id in Side.objects.using(db).filter(battle__in=battles).values_list(
            "battle_id", "position", "model_id"):
        sides.setdefault(battle_id, {})[position] = model_id
    return {pk for pk, battle_id in Vote.objects.using(db).filter(battle__in=battles).values_list("pk", "battle_id")
            if len(sides.get(battle_id, {})) == 2 and sides[battle_id]["left"] != sides[battle_id]["right"]}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_it_keeps_every_vote_counted_where_it_was_through_an_upgrade_from_0006(engine, tmp_path, django_db_blocker,
                                                                              postgres_cluster):
    """Tried: a database at arena 0006 (and every other app as it was then) holding anonymous voted and unvoted,
    named, multi-turn, failed-side, retried, leaked, simulated, same-model, one-sided, imported, mixed and voice
    battles, and snapshots, migrated to the latest leaf of every app on ``engine``. Every vote has a fact row equal
    to the one the live code writes for it now (models, outcome, categories, style, codes, start, prompt), the
    leaderboard's live readers count exactly the votes the 0006 definition counted (public, simulated and voice
    boards), every battle has its codes and is marked voted as it is, voice clips and snapshots are unchanged."""
    with django_db_blocker.unblock(), extra_database("upgrade", engine, tmp_path, postgres_cluster) as db:
        executor = MigrationExecutor(connections[db])
        targets = before_targets(executor)
        executor.migrate(targets)
        old = executor.loader.project_state(targets).apps
        battles = seed(old, db)
        counted = {board: counted_0006(old, db, modality=modality, simulated=board == "simulated")
                   for board, modality in (("public", "text"), ("simulated", "text"), ("voice", "speech"))}
        ids = {key: b.pk for key, b in battles.items()}
        vote_of = dict(old.get_model("arena", "Vote").objects.using(db).values_list("battle_id", "pk"))
        # The data covers each board, and the 0006 definition leaves out what it should.
        assert counted == {"public": {vote_of[ids[k]] for k in ("plain", "old-turns", "tie", "multi-turn",
                                                                "imported")},
                           "simulated": {vote_of[ids["simulated"]]}, "voice": {vote_of[ids["voice"]]}}
        snapshots = {name: list(old.get_model(app, name).objects.using(db).order_by("pk").values())
                     for app, name in (("leaderboard", "LeaderboardSnapshot"), ("speech", "SpeechLeaderboardSnapshot"))}
        clips = sorted(old.get_model("speech", "SpeechClip").objects.using(db).values_list("pk", "turn_id", "audio"))

        executor = MigrationExecutor(connections[db])
        executor.migrate(executor.loader.graph.leaf_nodes())
        assert not MigrationExecutor(connections[db]).migration_plan(executor.loader.graph.leaf_nodes())

        from arena.facts import categories_of, fact_values, key_code, prompt_code
        from arena.models import Battle, Side, Turn, Vote, VoteFact
        from leaderboard.snapshots import leaderboard_votes
        from leaderboard.models import LeaderboardSnapshot
        from speech.leaderboard import speech_votes
        from speech.models import SpeechClip, SpeechLeaderboardSnapshot

        with as_default(db):
            votes = list(Vote.objects.select_related("battle").order_by("pk"))
            assert len(votes) == len(vote_of) == 14
            facts = {f.pk: f for f in VoteFact.objects.all()}
            assert set(facts) == {v.pk for v in votes}
            for vote in votes:
                turns = list(Turn.objects.filter(side__battle=vote.battle).select_related("side"))
                models = {s.position: s.model for s in Side.objects.filter(battle=vote.battle).select_related("model")}
                fact = facts[vote.pk]
                written = {name: getattr(fact, name) for name in fact_values(vote=vote, battle=vote.battle,
                                                                               turns=turns, models=models)}
                assert written == fact_values(vote=vote, battle=vote.battle, turns=turns, models=models), vote.battle
                assert (fact.left_model_id, fact.right_model_id) == (
                    models["left"].pk, models["right"].pk if "right" in models else 0)
                assert fact.outcome == CHOICES[vote.choice]
                cats = vote.battle.categories
                assert (categories_of(fact.categories) == cats if fact.categories != -1 else cats == ["llmfao-task"])
                assert fact.prompt_code not in (0, None) and fact.started_at == vote.battle.created_at
            first = dict(Turn.objects.filter(side__position="left", index=0).values_list("side__battle_id", "prompt"))
            for b in Battle.objects.all():
                assert (b.session_code, b.address_code, b.prompt_code, b.voted) == (
                    key_code(b.session_key), key_code(b.ip_hash), prompt_code(first[b.pk]), b.pk in vote_of), b
            assert Battle.objects.filter(voted=False).count() == 2

            assert set(leaderboard_votes(board="public").vote_ids.tolist()) == counted["public"]
            assert set(leaderboard_votes(board="simulated").vote_ids.tolist()) == counted["simulated"]
            assert set(speech_votes().vote_ids.tolist()) == counted["voice"]
            assert sorted(SpeechClip.objects.values_list("pk", "turn_id", "audio")) == clips
            assert list(LeaderboardSnapshot.objects.order_by("pk").values(*snapshots["LeaderboardSnapshot"][0])) \
                == snapshots["LeaderboardSnapshot"]
            assert list(SpeechLeaderboardSnapshot.objects.order_by("pk").values(
                *snapshots["SpeechLeaderboardSnapshot"][0])) == snapshots["SpeechLeaderboardSnapshot"]


# A migration may name a callable a field keeps (a default, a storage): Django's migration writer records it by its
# import path and calls it only as the field's default or storage, never to transform rows.
FIELD_CALLABLE_ARGUMENTS = {"default", "storage", "upload_to"}


def live_imports(source: str) -> list[str]:
    """The project modules ``source`` imports, other than ``import app.models`` used only to name a field's
    callable (``default=app.models.new_public_id``)."""
    tree = ast.parse(source)
    allowed = set(sys.stdlib_module_names) | {"django"}
    referenced: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in FIELD_CALLABLE_ARGUMENTS:
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root is not node.value:
                referenced[root.id] = referenced.get(root.id, 0) + 1
    names: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names[node.id] = names.get(node.id, 0) + 1
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if node.level or module.split(".")[0] not in allowed:
                found.append(module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in allowed:
                    continue
                callable_only = (alias.asname is None and alias.name.endswith(".models")
                                 and names.get(top, 0) == referenced.get(top, 0) > 0)
                if not callable_only:
                    found.append(alias.name)
    return found


def test_no_migration_imports_live_code():
    """Tried: every migration file of the project parsed; imports other than the standard library and Django
    (relative ones included) are refused, but for a field's callable named by path. The check itself refuses the
    import 0007 once had and a models import used for more than a field's default."""
    assert live_imports("from arena.facts import fact_values, key_code, prompt_code\n") == ["arena.facts"]
    assert live_imports("from ..facts import key_code\n") == ["..facts"]
    assert live_imports("import arena.models\nx = arena.models.new_public_id()\n"
                        "f = F(default=arena.models.new_public_id)\n") == ["arena.models"]
    assert live_imports("import arena.models\nf = F(default=arena.models.new_public_id)\n") == []
    files = sorted(p for p in ROOT.glob("*/migrations/*.py") if p.name != "__init__.py")
    assert len(files) >= 15
    offending = {str(p.relative_to(ROOT)): found for p in files if (found := live_imports(p.read_text()))}
    assert offending == {}
