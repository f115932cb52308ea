"""Security probes: cross-site websockets, CSRF, and HTML in names, prompts and answers rendered inert."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from leaderboard.snapshots import leaderboard_snapshot_create
from arena.models import Battle, Side, Turn, Vote
from config.asgi import application
from models_hub.models import ModelEntry

EVIL_NAME = '<img src=x onerror="alert(1)">Evil'
EVIL_PROMPT = "<script>alert('prompt')</script>"
EVIL_ANSWER = '<iframe src="javascript:alert(2)"></iframe>'


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_it_refuses_a_websocket_opened_from_another_site():
    communicator = WebsocketCommunicator(
        application, "/ws/battle/", headers=[(b"origin", b"http://evil.example"), (b"host", b"localhost")]
    )
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


@pytest.mark.django_db
def test_admin_posts_without_a_csrf_token_are_refused():
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    response = client.post("/admin/models_hub/modelentry/add/", {
        "display_name": "Sneaky", "slug": "sneaky", "provider": "openai", "base_url": "http://h/v1", "remote_model": "m",
        "pool": "default", "prompt_format": "chat", "max_new_tokens": "16", "temperature": "0", "top_p": "1",
        "sampling_weight": "1", "visibility": "public",
    })
    assert response.status_code == 403
    assert not ModelEntry.objects.exists()


@pytest.fixture
def hostile_battles(db):
    evil = ModelEntry.objects.create(slug="evil", display_name=EVIL_NAME, organization="<b>Org</b>", license="<i>L</i>")
    plain = ModelEntry.objects.create(slug="plain", display_name="Plain", organization="Plain Org")
    for i in range(6):
        battle = Battle.objects.create(session_key="s")
        for position, entry in (("left", evil), ("right", plain)):
            side = Side.objects.create(battle=battle, position=position, model=entry)
            Turn.objects.create(side=side, index=0, prompt=EVIL_PROMPT, response=EVIL_ANSWER, status="done")
        Vote.objects.create(battle=battle, choice=["left", "right", "tie"][i % 3], session_key="s")
    leaderboard_snapshot_create()


def test_the_leaderboard_renders_hostile_model_names_as_text(client, hostile_battles):
    for url in ("/leaderboard/", "/leaderboard/head-to-head/"):
        html = client.get(url).content.decode()
        assert 'onerror="alert(1)"' not in html and "<img src=x" not in html
        assert "<b>Org</b>" not in html
    # The page swaps in server-rendered table HTML on a live update: it must be escaped the same way.
    table_html = client.get("/leaderboard/data/").json()["table_html"]
    assert "&lt;img" in table_html and "<img src=x" not in table_html


def test_the_admin_renders_hostile_prompts_answers_and_names_as_text(client, hostile_battles):
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    turn = Turn.objects.first()
    pages = [
        "/admin/arena/turn/", f"/admin/arena/turn/{turn.pk}/change/", "/admin/arena/battle/",
        "/admin/models_hub/modelentry/", "/admin/arena/vote/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert EVIL_PROMPT not in html and EVIL_ANSWER not in html and EVIL_NAME not in html, url
