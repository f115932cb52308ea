"""Attacks on the model registry's admin, made as a staff user would make them: logged in through the login form
of a real daphne server, posting the real admin's forms and actions over HTTP.

- "Test this model" must not lend the server's secrets (SECRET_KEY, DATABASE_URL, REDIS_URL) as an API key to a
  URL of the attacker's choosing, even for an entry written straight into the database;
- its failures must read alike whatever answered (a closed port, a server that hangs up, Redis, PostgreSQL, a
  server that is not a model): only the model server's HTTP status is shown; every test is in the admin log;
- the checkpoint directory field must not tell which directories exist on the server.
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import threading
from urllib.parse import urlsplit

import httpx
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.db import connection

from devstack import free_port
from inference.services import TEST_FAILED
from models_hub.endpoints import NO_CHECKPOINT
from models_hub.models import ModelEntry
from tests.browser import LiveArena

pytestmark = [pytest.mark.django_db(transaction=True)]

ADD_URL = "/admin/models_hub/modelentry/add/"
CHANGELIST = "/admin/models_hub/modelentry/"
ALLOWED_KEY = "sk-allowed-standin-key"
SECRET_NAMES = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")
MESSAGE = re.compile(r'<li class="(?:success|error|warning|info)">(.*?)</li>', re.S)


class AdminSession:
    """A staff user's browser without the page: logs in through the admin's login form and posts forms with the
    CSRF token, as a browser does, to a live server."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=60)

    def login(self, username: str, password: str) -> AdminSession:
        self.client.get("/admin/login/")
        response = self.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})
        assert response.status_code == 302, response.text[-2000:]
        return self

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def post(self, path: str, data: dict, *, follow: bool = False) -> httpx.Response:
        data = {**data, "csrfmiddlewaretoken": self.client.cookies["csrftoken"]}
        return self.client.post(path, data=data, follow_redirects=follow)

    @staticmethod
    def messages(response: httpx.Response) -> list[str]:
        return [html.unescape(re.sub(r"<[^>]*>", "", m)).strip() for m in MESSAGE.findall(response.text)]

    def close(self) -> None:
        self.client.close()


def entry_form(**overrides) -> dict:
    data = {
        "display_name": "Probe", "slug": "probe", "organization": "", "license": "", "modality": "text",
        "provider": "openai", "checkpoint_path": "", "base_url": "", "remote_model": "m", "voice": "",
        "api_key_env": "", "pool": "default", "prompt_format": "chat", "max_new_tokens": "16", "temperature": "0.7",
        "top_p": "0.9", "system_prompt": "", "is_active": "on", "sampling_weight": "1.0", "visibility": "public",
        "codename": "",
    }
    return data | overrides


class HangUp:
    """A TCP server on loopback that accepts each connection and closes it at once: "server disconnected"."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def live(tmp_path):
    roots = tmp_path / "checkpoints"
    roots.mkdir()
    server = LiveArena(
        tmp_path / "daphne.log", ARENA_KEY_STANDIN=ALLOWED_KEY, ARENA_CHECKPOINT_ROOTS=str(roots),
        ARENA_OPENAI_CONNECT_TIMEOUT="3",
    ).start()
    server.checkpoint_root = roots
    yield server
    server.stop()


@pytest.fixture
def operator(live):
    User.objects.create_superuser("operator", password="pw-operator-123")
    session = AdminSession(live.url).login("operator", "pw-operator-123")
    yield session
    session.close()


def test_the_test_button_lends_no_secret_and_fails_alike_for_every_target(live, operator, standin):
    """Tried: api_key_env = SECRET_KEY, DATABASE_URL, REDIS_URL through the form and in an entry written straight
    into the database, with the base URL of a listener that records the Authorization header; then "Test this
    model" against a closed port, a server that hangs up, the real Redis and PostgreSQL, a server answering
    garbage and one answering HTTP 500."""
    secrets = [v for v in (os.environ.get("SECRET_KEY"), live.env["DATABASE_URL"], os.environ.get("REDIS_URL")) if v]
    recorder = standin.behaviour_url("auth")
    heard = len(standin.requests)
    for name in SECRET_NAMES:
        response = operator.post(ADD_URL, entry_form(base_url=recorder, api_key_env=name, _test="Test this model"))
        assert response.status_code == 200
        assert "may not be used as an API key" in response.text, name
    planted = ModelEntry.objects.create(
        slug="planted", display_name="Planted", provider="openai", base_url=recorder, remote_model="m",
        api_key_env="SECRET_KEY",
    )
    response = operator.post(CHANGELIST, {"action": "test_models", "_selected_action": [planted.pk]}, follow=True)
    assert operator.messages(response) == [f"Planted: failed: {TEST_FAILED}"]
    assert len(standin.requests) == heard, "a refused key name sends no request at all"

    ModelEntry.objects.filter(pk=planted.pk).update(api_key_env="ARENA_KEY_STANDIN")
    response = operator.post(CHANGELIST, {"action": "test_models", "_selected_action": [planted.pk]}, follow=True)
    assert operator.messages(response)[0].startswith(f"Planted: answered: Bearer {ALLOWED_KEY}"), "an allowed name works"
    sent = [r["authorization"] or "" for r in list(standin.requests)[heard:]]
    assert sent == [f"Bearer {ALLOWED_KEY}"]
    assert not any(secret in header for secret in secrets for header in sent)

    redis = urlsplit(os.environ["REDIS_URL"])
    hang_up = HangUp()
    targets = {
        "closed port": (f"http://127.0.0.1:{free_port()}/v1", "m"),
        "hangs up": (hang_up.url, "m"),
        "redis": (f"http://{redis.hostname}:{redis.port}/v1", "m"),
        "postgres": (f"http://{connection.settings_dict['HOST']}:{connection.settings_dict['PORT']}/v1", "m"),
        "garbage": (standin.base_url, "garbage"),
        "http 500": (standin.base_url, "fail"),
    }
    texts = {}
    try:
        for target, (url, model) in targets.items():
            response = operator.post(ADD_URL, entry_form(base_url=url, remote_model=model, _test="Test this model"))
            assert response.status_code == 200
            [texts[target]] = operator.messages(response)
    finally:
        hang_up.close()
    assert texts["http 500"] == f"The test failed: {TEST_FAILED} (the model's server answered HTTP 500) Nothing was saved."
    generic = f"The test failed: {TEST_FAILED} Nothing was saved."
    assert {target: text for target, text in texts.items() if target != "http 500"} == {
        target: generic for target in targets if target != "http 500"
    }
    assert not ModelEntry.objects.exclude(pk=planted.pk).exists(), "a test saves nothing"

    log = LogEntry.objects.filter(user__username="operator", change_message__startswith="Tested")
    assert log.count() == 2 + len(targets), "every test, and only tests that ran, is in the admin log"
    assert log.filter(object_id=str(planted.pk), change_message__endswith="failed.").count() == 1
    assert log.filter(object_id=str(planted.pk), change_message__endswith="answered.").count() == 1
    assert log.filter(object_id=None, change_message__contains="failed (HTTP 500)").count() == 1
    assert all(ALLOWED_KEY not in message for message in log.values_list("change_message", flat=True))


def test_the_checkpoint_field_tells_nothing_about_the_servers_files(live, operator):
    """Tried: checkpoint directories that exist and do not (/etc, /no/such/dir, /root) outside the checkpoint root,
    and under it a missing directory, one without config.json, a file, and one that cannot be read, in the form
    and (for entries written straight into the database) with the Test action; only a real checkpoint under the
    root passes."""
    root = live.checkpoint_root
    (root / "empty").mkdir()
    (root / "a-file").write_text("x")
    (root / "locked").mkdir()
    (root / "locked" / "config.json").write_text("{}")
    (root / "locked").chmod(0)
    unreadable = ["locked"] if os.geteuid() != 0 else []  # root reads through any mode
    (root / "good").mkdir()
    (root / "good" / "config.json").write_text(json.dumps({"model_type": "llama"}))

    def error(path: str) -> str:
        response = operator.post(ADD_URL, entry_form(provider="transformers", checkpoint_path=path, _save="Save"))
        assert response.status_code == 200, path
        return html.unescape(re.search(r'<ul class="errorlist[^"]*"[^>]*><li>(.*?)</li>', response.text).group(1))

    try:
        outside = {error(path) for path in ("/etc", "/no/such/dir", "/root", f"{root}/../../etc")}
        inside = {error(str(root / name)) for name in ("missing", "empty", "a-file", *unreadable)}
    finally:
        (root / "locked").chmod(0o755)
    assert outside == {f"Checkpoint directories must lie under {root.resolve()}."}
    assert inside == {NO_CHECKPOINT}
    assert not ModelEntry.objects.exists()

    # Entries written straight into the database: the Test action answers alike for each.
    planted = [
        ModelEntry.objects.create(slug=f"planted-{i}", display_name=f"Planted {i}", checkpoint_path=path)
        for i, path in enumerate(("/etc", "/no/such/dir", str(root / "empty")))
    ]
    response = operator.post(
        CHANGELIST, {"action": "test_models", "_selected_action": [e.pk for e in planted]}, follow=True
    )
    assert sorted(operator.messages(response)) == [f"Planted {i}: failed: {TEST_FAILED}" for i in range(3)]
    ModelEntry.objects.all().delete()

    response = operator.post(ADD_URL, entry_form(provider="transformers", checkpoint_path=str(root / "good")))
    assert response.status_code == 302, response.text[-2000:]
    assert ModelEntry.objects.get().checkpoint_path == str(root / "good")
