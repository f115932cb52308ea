"""A staff user registers models through the real admin form; bad entries get the message a user needs."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from models_hub.models import ModelEntry

ADD_URL = "/admin/models_hub/modelentry/add/"


def form_data(**overrides) -> dict:
    data = {
        "display_name": "Local Llama", "slug": "local-llama", "organization": "Team", "license": "Apache-2.0",
        "provider": "transformers", "checkpoint_path": "", "base_url": "", "remote_model": "", "api_key_env": "",
        "pool": "default", "prompt_format": "chat", "max_new_tokens": "128", "temperature": "0.7", "top_p": "0.9",
        "system_prompt": "", "is_active": "on", "sampling_weight": "1.0", "visibility": "public", "codename": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def staff_client(client, db):
    user = User.objects.create_user("operator", password="pw-operator-123", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def checkpoint_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return tmp_path


def test_it_registers_a_transformers_checkpoint(staff_client, checkpoint_dir):
    response = staff_client.post(ADD_URL, form_data(checkpoint_path=str(checkpoint_dir)))
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = ModelEntry.objects.get(slug="local-llama")
    assert entry.checkpoint_path == str(checkpoint_dir)
    assert entry.provider == "transformers"


def test_it_registers_an_openai_compatible_endpoint(staff_client):
    response = staff_client.post(ADD_URL, form_data(
        provider="openai", base_url="http://10.0.0.5:8000/v1", remote_model="meta-llama/Llama-3-8B", api_key_env="VLLM_KEY",
    ))
    assert response.status_code == 302
    assert ModelEntry.objects.get(slug="local-llama").api_key_env == "VLLM_KEY"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"checkpoint_path": ""}, "needs the path of a local checkpoint directory"),
        ({"checkpoint_path": "/no/such/dir"}, "No directory at /no/such/dir"),
        ({"checkpoint_path": "/tmp"}, "holds no config.json"),
        ({"provider": "openai", "base_url": "", "remote_model": "m"}, "needs the endpoint&#x27;s base URL"),
        ({"provider": "openai", "base_url": "ftp://host/v1", "remote_model": "m"}, "Enter a valid URL"),
        ({"provider": "openai", "base_url": "http://host/v1", "remote_model": ""}, "needs the model name"),
        ({"provider": "openai", "base_url": "http://h/v1", "remote_model": "m", "api_key_env": "sk-abc123 key"}, "never the key itself"),
        ({"pool": "gpu pool!"}, "A pool is a Celery queue name"),
        ({"sampling_weight": "-2"}, "greater than or equal to 0"),
        ({"visibility": "preview", "codename": ""}, "A preview model needs a codename"),
    ],
)
def test_it_refuses_an_invalid_entry_with_a_clear_message(staff_client, checkpoint_dir, overrides, message):
    overrides.setdefault("checkpoint_path", str(checkpoint_dir))
    response = staff_client.post(ADD_URL, form_data(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ModelEntry.objects.exists()


def test_it_keeps_anonymous_users_out_of_the_admin(client, db):
    response = client.get(ADD_URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    response = client.post(ADD_URL, form_data(provider="openai", base_url="http://h/v1", remote_model="m"))
    assert response.status_code in (302, 403)
    assert not ModelEntry.objects.exists()


def test_it_keeps_users_without_staff_rights_out(client, db):
    client.force_login(User.objects.create_user("voter", password="pw-voter-123"))
    assert client.get(ADD_URL).status_code == 302
    assert client.get("/admin/arena/vote/").status_code == 302


def test_its_actions_activate_deactivate_and_publish(staff_client):
    entry = ModelEntry.objects.create(slug="x", display_name="X", visibility="preview", codename="kestrel")
    changelist = "/admin/models_hub/modelentry/"
    staff_client.post(changelist, {"action": "deactivate", "_selected_action": [entry.pk]})
    entry.refresh_from_db()
    assert entry.is_active is False
    staff_client.post(changelist, {"action": "activate", "_selected_action": [entry.pk]})
    entry.refresh_from_db()
    assert entry.is_active is True
    staff_client.post(changelist, {"action": "publish_preview", "_selected_action": [entry.pk]})
    entry.refresh_from_db()
    assert entry.visibility == "public"


def test_it_shows_battles_turns_and_votes_read_only(staff_client):
    assert staff_client.get("/admin/arena/battle/").status_code == 200
    assert staff_client.get("/admin/arena/vote/add/").status_code == 403
    assert staff_client.get("/admin/arena/turn/add/").status_code == 403
