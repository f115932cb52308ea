"""The rules for what a model entry may point the servers at, and both endpoint providers applying them right
before a call (an entry written straight into the database gets no further than one typed into the form)."""

from __future__ import annotations

import os

import pytest

from inference import GenerationError, generate
from inference.openai_compat import NOT_ALLOWED
from inference.speech import synthesize
from models_hub.endpoints import (
    HOST_REFUSED, NO_CHECKPOINT, SCHEME_REFUSED, api_key_env_problem, base_url_problem, checkpoint_path_problem,
)
from models_hub.models import ModelEntry
from tests.speech.standin_speech import SpeechStandin


@pytest.mark.parametrize("name, allowed", [
    ("", True),
    ("ARENA_KEY_VLLM", True),
    ("ARENA_KEY_", False),  # the prefix alone names no key
    ("SECRET_KEY", False),
    ("DATABASE_URL", False),
    ("REDIS_URL", False),
    ("arena_key_vllm", False),  # environment names are case-sensitive on the servers
    ("PARTNER_TOKEN", True),  # listed by the deployment
    ("XARENA_KEY_VLLM", False),
])
def test_only_allowed_names_may_lend_an_api_key(settings, name, allowed):
    """Tried: the deployment's secrets, the bare prefix, look-alikes, a name the deployment lists."""
    settings.ARENA_API_KEY_ENVS = ["PARTNER_TOKEN", "SECRET_KEY"]
    assert (api_key_env_problem(name) is None) is allowed


def test_a_deployment_secret_stays_refused_even_when_listed_or_prefixed(settings):
    """Tried: SECRET_KEY in the deployment's list, and an empty prefix (which allows nothing by prefix)."""
    settings.ARENA_API_KEY_ENVS = ["SECRET_KEY", "DATABASE_URL"]
    assert api_key_env_problem("SECRET_KEY") and api_key_env_problem("DATABASE_URL")
    settings.ARENA_API_KEY_ENV_PREFIX = ""
    assert api_key_env_problem("ARENA_KEY_VLLM") and api_key_env_problem("ANYTHING")


def test_base_urls_are_http_and_within_the_allowed_hosts(settings):
    """Tried: other schemes, no host, an unparsable port, hosts in and out of ARENA_ENDPOINT_HOSTS."""
    for url in ("file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "http:///v1", "http://[::1/v1"):
        assert base_url_problem(url) == SCHEME_REFUSED, url
    assert base_url_problem("http://169.254.169.254/latest") is None, "with no host list, any host"
    settings.ARENA_ENDPOINT_HOSTS = ["gpu-1.internal", "api.example.com"]
    assert base_url_problem("https://API.example.com./v1") is None
    assert base_url_problem("http://gpu-1.internal:8000/v1") is None
    for url in ("http://169.254.169.254/latest", "http://127.0.0.1:6379/v1", "http://api.example.com.evil.net/v1",
                "http://gpu-1.internal@evil.net/v1"):
        assert base_url_problem(url) == HOST_REFUSED, url


def test_checkpoints_lie_under_the_roots_and_fail_alike(settings, tmp_path):
    """Tried: a symlink under the root pointing out of it, a '..' walk out, a missing, an empty directory."""
    root = tmp_path / "models"
    (root / "good").mkdir(parents=True)
    (root / "good" / "config.json").write_text("{}")
    (root / "empty").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "config.json").write_text("{}")
    (root / "escape").symlink_to(tmp_path / "outside")
    settings.ARENA_CHECKPOINT_ROOTS = [root]
    assert checkpoint_path_problem(str(root / "good")) is None
    assert checkpoint_path_problem(str(root / "empty")) == checkpoint_path_problem(str(root / "missing")) == NO_CHECKPOINT
    for path in (root / "escape", root / ".." / "outside", tmp_path / "outside"):
        assert checkpoint_path_problem(str(path)).startswith("Checkpoint directories must lie under"), path


@pytest.mark.parametrize("modality", ["text", "speech"])
def test_both_providers_refuse_a_planted_entry_before_calling(modality, standin, monkeypatch):
    """Tried: an entry (never validated by the form) naming SECRET_KEY as its key variable, and one with a host
    outside the allow-list, against a listener that records every request: the provider refuses, nothing is sent."""
    speech = SpeechStandin().start() if modality == "speech" else None
    try:
        listener = speech or standin
        url = speech.base_url("wav") if speech else standin.behaviour_url("auth")
        heard = len(listener.requests)
        planted = ModelEntry(
            slug="planted", display_name="Planted", provider="openai", modality=modality, base_url=url,
            remote_model="m", voice="alloy", api_key_env="SECRET_KEY",
        )
        call = (lambda: synthesize(planted, "Hello there.")) if speech else (
            lambda: generate(planted, [{"role": "user", "content": "hi"}]))
        with pytest.raises(GenerationError, match=NOT_ALLOWED):
            call()
        monkeypatch.setenv("ARENA_KEY_PLANTED", "sk-planted")
        planted.api_key_env = "ARENA_KEY_PLANTED"
        monkeypatch.setattr("django.conf.settings.ARENA_ENDPOINT_HOSTS", ["models.internal"])
        with pytest.raises(GenerationError, match=NOT_ALLOWED):
            call()
        assert len(listener.requests) == heard, "nothing reached the listener"
        monkeypatch.setattr("django.conf.settings.ARENA_ENDPOINT_HOSTS", [])
        call()
        assert [r["authorization"] for r in list(listener.requests)[heard:]] == ["Bearer sk-planted"]
        assert os.environ["SECRET_KEY"] not in str(list(listener.requests))
    finally:
        if speech:
            speech.stop()
