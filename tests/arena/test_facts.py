"""The vote's fact row (arena.facts): written with the vote by the vote path, equal to what the battle's rows say,
and read back by the snapshot's binary COPY as the rows hold it."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.utils import timezone

from arena.facts import (KEY_CODE_SQL, OTHER_CATEGORIES, categories_mask, categories_of, key_code, prompt_code,
                         vote_fact_write, vote_facts_read)
from arena.models import Battle, Side, Turn, Vote, VoteFact
from arena.services import vote_record
from models_hub.models import ModelEntry

pytestmark = pytest.mark.django_db


def test_key_codes_are_the_same_in_python_and_in_postgresql():
    keys = ["voter", "import:llmfao:0", "ünïcode ключ 鍵", "a" * 64, "x"]
    with connection.cursor() as cursor:
        for key in keys:
            cursor.execute("SELECT " + KEY_CODE_SQL.format("%s"), [key] * 2)
            assert cursor.fetchone()[0] == key_code(key), key
        cursor.execute("SELECT " + KEY_CODE_SQL.format("%s"), [""] * 2)
        assert cursor.fetchone()[0] == key_code("") == 0
    assert len({key_code(k) for k in keys}) == len(keys)


def test_category_masks_round_trip_and_an_unknown_category_is_marked():
    assert categories_of(categories_mask(["coding", "lang:de", "multi_turn"])) == ["coding", "multi_turn", "lang:de"]
    assert categories_mask([]) == 0
    assert categories_mask(["coding", "imported-tag"]) == OTHER_CATEGORIES


def battle(left: ModelEntry, right: ModelEntry, session: str, answers: tuple[list[str], list[str]]) -> Battle:
    b = Battle.objects.create(mode="anonymous", session_key=session, ip_hash="ip-1", categories=["coding", "lang:en"])
    for position, entry, texts in (("left", left, answers[0]), ("right", right, answers[1])):
        side = Side.objects.create(battle=b, position=position, model=entry)
        for i, text in enumerate(texts):
            Turn.objects.create(side=side, index=i, prompt=f"prompt {i}", response=text, status="done",
                                finished_at=timezone.now())
    return b


def test_the_vote_path_writes_the_fact_the_battles_rows_give_and_the_copy_reads_it_back():
    """Tried: a two-turn battle voted through the vote path; its fact row against one rebuilt from the database, and
    the snapshot's COPY read against the rows; a second battle with one side without text (no style to count), its
    vote saved through the ORM."""
    a = ModelEntry.objects.create(slug="fact-a", display_name="Fact A")
    b = ModelEntry.objects.create(slug="fact-b", display_name="Fact B")
    first = battle(a, b, "s1", (["## One\n\n- x\n- y", "**bold** two"], ["plain answer", "another one here"]))
    second = battle(b, a, "s2", (["only left"], []))
    vote, _ = vote_record(public_id=first.public_id, session_key="s1", ip="192.0.2.1", choice="left")
    written = model_to_dict(VoteFact.objects.get(vote=vote))
    vote_fact_write(vote)
    assert model_to_dict(VoteFact.objects.get(vote=vote)) == written
    assert written["turns"] == 4 and written["chars"] == sum(
        len(t.response) for t in Turn.objects.filter(side__battle=first))
    assert (written["style_left_1"], written["style_left_2"], written["style_left_3"]) == (1, 2, 1)
    assert written["counted"] and written["outcome"] == 2 and written["has_text"]
    # Saved through the ORM (as an import or the admin would): the post-save receiver writes its fact.
    Vote.objects.create(battle=second, choice="tie", session_key="s2")

    facts = vote_facts_read()
    assert facts.vote_ids.tolist() == sorted(VoteFact.objects.values_list("vote_id", flat=True))
    assert facts.left.tolist() == [a.pk, b.pk] and facts.right.tolist() == [b.pk, a.pk]
    assert facts.outcome2.tolist() == [2, 1] and facts.has_text.tolist() == [True, False]
    assert facts.session.tolist() == [key_code("s1"), key_code("s2")]
    assert (facts.address == key_code(first.ip_hash)).all()
    assert facts.categories.tolist() == [categories_mask(["coding", "lang:en"])] * 2
    assert facts.style[0].tolist() == [[written[f"style_{p}_{k}"] for k in range(4)] for p in ("left", "right")]
    assert facts.style[1, 1].tolist() == [0, 0, 0, 0]
    assert np.allclose(facts.voted_at, [f.voted_at.timestamp() for f in VoteFact.objects.order_by("vote_id")])
    last = [max(t.finished_at for t in Turn.objects.filter(side__battle=x)).timestamp() for x in (first, second)]
    assert np.allclose(facts.done, last) and facts.turns.tolist() == [4, 1]
    # The battle's start and first prompt, which the trust screen then reads from no battle row; neither battle
    # was written with its prompt's code, so the fact row takes it from the first turn.
    assert np.allclose(facts.started, [x.created_at.timestamp() for x in (first, second)])
    assert facts.prompt.tolist() == [prompt_code("prompt 0")] * 2 and first.prompt_code == 0
    assert Battle.objects.filter(pk__in=[first.pk, second.pk], voted=True).count() == 2
    Vote.objects.filter(battle=second).delete()  # a vote taken back (the admin): the battle is open again
    assert not Battle.objects.get(pk=second.pk).voted
    assert len(vote_facts_read(simulated=True)) == 0 and len(vote_facts_read(modality="speech")) == 0
