"""The battle records' rules hold in PostgreSQL itself, not only in Python."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from arena.models import Battle, Side, Turn, Vote
from models_hub.models import ModelEntry


@pytest.fixture
def battle(db) -> Battle:
    left = ModelEntry.objects.create(slug="a", display_name="A", provider="openai", base_url="http://x/v1", remote_model="a")
    right = ModelEntry.objects.create(slug="b", display_name="B", provider="openai", base_url="http://x/v1", remote_model="b")
    battle = Battle.objects.create(session_key="s1")
    Side.objects.create(battle=battle, position="left", model=left)
    Side.objects.create(battle=battle, position="right", model=right)
    return battle


def test_it_runs_on_postgresql(db):
    assert connection.vendor == "postgresql"


def test_it_refuses_a_second_vote_on_a_battle(battle):
    Vote.objects.create(battle=battle, choice="left", session_key="s1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(battle=battle, choice="right", session_key="s1")
    assert Vote.objects.get(battle=battle).choice == "left"


def test_it_refuses_an_unknown_vote_choice(battle):
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(battle=battle, choice="both_great", session_key="s1")
    assert not Vote.objects.exists()


def test_it_refuses_a_repeated_side_position(battle):
    other = ModelEntry.objects.get(slug="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        Side.objects.create(battle=battle, position="left", model=other)
    assert battle.sides.count() == 2


def test_it_refuses_a_repeated_turn_index(battle):
    side = battle.sides.get(position="left")
    Turn.objects.create(side=side, index=0, prompt="hi")
    with pytest.raises(IntegrityError), transaction.atomic():
        Turn.objects.create(side=side, index=0, prompt="again")
    assert side.turns.count() == 1


def test_it_refuses_an_unknown_turn_status(battle):
    side = battle.sides.get(position="left")
    with pytest.raises(IntegrityError), transaction.atomic():
        Turn.objects.create(side=side, index=0, prompt="hi", status="paused")


def test_it_refuses_a_preview_model_without_a_codename(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelEntry.objects.create(slug="p", display_name="P", visibility="preview", codename="")


def test_it_refuses_a_negative_sampling_weight(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelEntry.objects.create(slug="n", display_name="N", sampling_weight=-1)


def test_it_keeps_a_model_that_battles_refer_to(battle):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        ModelEntry.objects.get(slug="a").delete()


def test_its_public_ids_reveal_nothing_sequential(db):
    ids = {Battle.objects.create(session_key="s").public_id for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) >= 20 and not i.isdigit() for i in ids)
