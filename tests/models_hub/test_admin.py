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
def checkpoint_dir(tmp_path, settings):
    """A checkpoint directory under the only checkpoint root the form accepts in these tests."""
    settings.ARENA_CHECKPOINT_ROOTS = [tmp_path]
    checkpoint = tmp_path / "llama"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return checkpoint


def test_it_registers_a_transformers_checkpoint(staff_client, checkpoint_dir):
    response = staff_client.post(ADD_URL, form_data(checkpoint_path=str(checkpoint_dir)))
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = ModelEntry.objects.get(slug="local-llama")
    assert entry.checkpoint_path == str(checkpoint_dir)
    assert entry.provider == "transformers"


def test_it_registers_an_openai_compatible_endpoint(staff_client):
    response = staff_client.post(ADD_URL, form_data(
        provider="openai", base_url="http://10.0.0.5:8000/v1", remote_model="meta-llama/Llama-3-8B", api_key_env="ARENA_KEY_VLLM",
    ))
    assert response.status_code == 302
    assert ModelEntry.objects.get(slug="local-llama").api_key_env == "ARENA_KEY_VLLM"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"checkpoint_path": ""}, "needs the path of a local checkpoint directory"),
        ({"checkpoint_path": "/no/such/dir"}, "Checkpoint directories must lie under"),
        ({"checkpoint_path": "/etc"}, "Checkpoint directories must lie under"),
        ({"provider": "openai", "base_url": "", "remote_model": "m"}, "needs the endpoint&#x27;s base URL"),
        ({"provider": "openai", "base_url": "ftp://host/v1", "remote_model": "m"}, "Enter a valid URL"),
        ({"provider": "openai", "base_url": "http://host/v1", "remote_model": ""}, "needs the model name"),
        ({"provider": "openai", "base_url": "http://h/v1", "remote_model": "m", "api_key_env": "sk-abc123 key"}, "never the key itself"),
        ({"provider": "openai", "base_url": "http://h/v1", "remote_model": "m", "api_key_env": "SECRET_KEY"},
         "may not be used as an API key"),
        ({"provider": "openai", "base_url": "http://h/v1", "remote_model": "m", "api_key_env": "ARENA_KEY_"},
         "may not be used as an API key"),
        ({"pool": "gpu pool!"}, "A pool is a Celery queue name"),
        ({"sampling_weight": "-2"}, "greater than or equal to 0"),
        ({"visibility": "preview", "codename": ""}, "A preview model needs a codename"),
    ],
)
def test_it_refuses_an_invalid_entry_with_a_clear_message(staff_client, checkpoint_dir, overrides, message):
    overrides = {"checkpoint_path": str(checkpoint_dir), **overrides}
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
    parent = ModelEntry.objects.create(slug="x-base", display_name="X Base")
    ModelEntry.objects.filter(pk=entry.pk).update(parent=parent, parent_verdict={"verdict": "better"})
    staff_client.post(changelist, {"action": "promote_preview", "_selected_action": [entry.pk]})
    entry.refresh_from_db()
    assert entry.visibility == "public"


def test_it_shows_battles_turns_and_votes_read_only(staff_client):
    assert staff_client.get("/admin/arena/battle/").status_code == 200
    assert staff_client.get("/admin/arena/vote/add/").status_code == 403
    assert staff_client.get("/admin/arena/turn/add/").status_code == 403


def test_it_labels_fields_as_a_person_would(staff_client):
    page = staff_client.get(ADD_URL).content.decode()
    for label in ("Base URL", "API key environment variable", "Checkpoint directory", "Model name at the endpoint"):
        assert f">{label}:<" in page, label
    for raw in ("Base url", "Api key env", "Remote model:"):
        assert raw not in page, raw


def test_test_this_model_runs_one_short_generation_and_saves_nothing(staff_client, standin):
    response = staff_client.post(ADD_URL, form_data(
        provider="openai", base_url=standin.base_url, remote_model="echo", slug="standin-echo", _test="Test this model",
    ))
    assert response.status_code == 200
    page = response.content.decode()
    assert "The model answered" in page and "You said: Say hello in one short sentence." in page
    assert 'value="standin-echo"' in page, "the form comes back as typed"
    assert not ModelEntry.objects.exists(), "a test saves nothing"


def test_test_this_model_shows_the_error_of_a_failing_endpoint(staff_client, standin):
    response = staff_client.post(ADD_URL, form_data(
        provider="openai", base_url=standin.base_url, remote_model="fail", _test="Test this model",
    ))
    page = response.content.decode()
    assert response.status_code == 200 and "The test failed" in page and "HTTP 500" in page
    response = staff_client.post(ADD_URL, form_data(
        provider="openai", base_url="http://127.0.0.1:9/v1", remote_model="m", _test="Test this model",
    ))
    assert "The model did not answer the test" in response.content.decode(), "a closed port: nothing listens"
    response = staff_client.post(ADD_URL, form_data(provider="openai", base_url="", remote_model="m", _test="1"))
    assert "Correct the errors below" in response.content.decode()
    assert not ModelEntry.objects.exists()


def test_the_breaker_is_shown_and_a_passing_test_closes_it(staff_client, standin):
    from django.utils import timezone

    entry = ModelEntry.objects.create(
        slug="flaky", display_name="Flaky", provider="openai", base_url=standin.base_url, remote_model="fail",
        failures_in_row=3, breaker_open_until=timezone.now() + timezone.timedelta(minutes=2),
    )
    changelist = "/admin/models_hub/modelentry/"
    assert "open until" in staff_client.get(changelist).content.decode()
    assert "not drawn into battles" in staff_client.get(f"{changelist}{entry.pk}/change/").content.decode()
    response = staff_client.post(changelist, {"action": "test_models", "_selected_action": [entry.pk]}, follow=True)
    assert "Flaky: failed" in response.content.decode()
    entry.refresh_from_db()
    assert entry.breaker_is_open(), "a failed test leaves the breaker as it was"
    ModelEntry.objects.filter(pk=entry.pk).update(remote_model="echo")
    response = staff_client.post(changelist, {"action": "test_models", "_selected_action": [entry.pk]}, follow=True)
    assert "Flaky: answered" in response.content.decode()
    entry.refresh_from_db()
    assert entry.failures_in_row == 0 and not entry.breaker_is_open()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_form_shows_only_the_chosen_providers_fields(chromium, arena, standin):
    User.objects.create_user("operator", password="pw-operator-123", is_staff=True, is_superuser=True)
    context = chromium.new_context()
    page = context.new_page()
    page.goto(arena.url + "/admin/login/?next=" + ADD_URL)
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw-operator-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#id_provider")
    assert page.is_visible(".field-checkpoint_path") and page.is_visible(".field-prompt_format")
    assert not page.is_visible(".field-base_url") and not page.is_visible(".field-api_key_env")
    page.select_option("#id_provider", "openai")
    assert not page.is_visible(".field-checkpoint_path")
    assert page.is_visible(".field-base_url") and page.is_visible(".field-remote_model")
    page.fill("#id_display_name", "Stand-in Echo")
    page.fill("#id_base_url", standin.base_url)
    page.fill("#id_remote_model", "echo")
    page.click("input[name=_test]")
    page.wait_for_selector(".messagelist")
    assert "You said: Say hello" in page.text_content(".messagelist")
    assert page.input_value("#id_remote_model") == "echo" and not page.is_visible(".field-checkpoint_path")
    from tests.browser import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "admin-test-model.png"), full_page=True)
    assert not ModelEntry.objects.exists()
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    assert ModelEntry.objects.get().base_url == standin.base_url
    context.close()
