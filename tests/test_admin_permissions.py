"""Every admin action of every app declares the permission it needs, and the admin enforces it over HTTP.

The walk goes over the admin site's registry, so an action added later without `allowed_permissions` (or with a
custom permission this file does not know) fails here. Through a real daphne server, logged in through the login
form: a staff user who may only view every model posts every action and nothing changes, the "Test this model"
button included; a user who holds exactly the permission an action declares (and may view the list) runs it.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.core import serializers
from django.test import RequestFactory
from django.utils import timezone

from models_hub.models import ModelEntry
from tests.browser import LiveArena
from tests.models_hub.test_admin_security import AdminSession, entry_form
from training.models import TrainingRun
from trust.models import VoterRisk

pytestmark = [pytest.mark.django_db(transaction=True)]

# The custom permissions the actions declare (ModelAdmin.has_<name>_permission), as "app_label.codename".
CUSTOM = {
    "publish_preview": "models_hub.publish_preview",
    "test": "models_hub.test_modelentry",
    "retire": "models_hub.retire_modelentry",
    "train_from_votes": "training.train_from_votes",
    "review": "trust.review_voterrisk",
}
PASSWORD = "pw-admin-perms-123"


def registered_actions(superuser: User) -> list[tuple[type, admin.ModelAdmin, str, object]]:
    """(model, its ModelAdmin, action name, action function) for every action a superuser is offered."""
    request = RequestFactory().get("/admin/")
    request.user = superuser
    found = []
    for model, model_admin in admin.site._registry.items():
        for name, (func, _, _) in model_admin.get_actions(request).items():
            found.append((model, model_admin, name, func))
    return found


def codenames(model: type, permission: str) -> str:
    if permission in ("add", "change", "delete", "view"):
        return f"{model._meta.app_label}.{permission}_{model._meta.model_name}"
    assert permission in CUSTOM, f"{permission!r}: add it to CUSTOM with the codename that grants it"
    return CUSTOM[permission]


def staff_with(username: str, perms: set[str]) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def changelist(model: type) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/"


def rows() -> str:
    """Every row of every model the admin shows, plus the admin log: what an action could change."""
    models = [*admin.site._registry, LogEntry]
    return "\n".join(serializers.serialize("json", model._default_manager.order_by("pk")) for model in models)


@pytest.fixture
def registry(standin):
    """Rows for the actions to act on: models of each kind and state, a flagged voter, a queued training run."""
    superuser = User.objects.create_superuser("root", password=PASSWORD)
    preview = ModelEntry.objects.create(
        slug="kestrel", display_name="Kestrel Real Name", visibility="preview", codename="kestrel",
        provider="openai", base_url=standin.base_url, remote_model="echo",
    )
    parked = ModelEntry.objects.create(slug="parked", display_name="Parked", is_active=False)
    TrainingRun.objects.create(parent=parked)
    VoterRisk.objects.create(kind="session", key="k" * 40, score=9.0, computed_at=timezone.now())
    Group.objects.create(name="reviewers")
    return {"superuser": superuser, "preview": preview}


@pytest.fixture
def live(tmp_path):
    server = LiveArena(tmp_path / "daphne.log").start()
    yield server
    server.stop()


def test_every_admin_action_declares_its_permission(registry):
    """Tried: every action of every registered ModelAdmin, as a superuser sees them."""
    actions = registered_actions(registry["superuser"])
    names = {name for _, _, name, _ in actions}
    assert {"activate", "promote_preview", "retire", "bring_back", "test_models", "train_from_votes", "clear", "delete_selected"} <= names
    missing = [f"{model.__name__}.{name}" for model, _, name, func in actions if not getattr(func, "allowed_permissions", ())]
    assert missing == [], "admin actions without allowed_permissions"
    for model, _, _, func in actions:
        for permission in func.allowed_permissions:
            codenames(model, permission)


def test_a_view_only_user_can_run_no_action_and_each_permission_runs_its_own(live, registry, standin):
    """Tried, over HTTP: a staff user holding every view permission and nothing else posts every action on every
    row and the "Test this model" button; then, per action, a user holding view plus exactly the permissions the
    action declares."""
    actions = registered_actions(registry["superuser"])
    views = {f"{m._meta.app_label}.view_{m._meta.model_name}" for m in admin.site._registry}
    staff_with("viewer", views)
    viewer = AdminSession(live.url).login("viewer", PASSWORD)
    before, heard = rows(), len(standin.requests)  # after the login, which sets last_login
    for model, _, name, _ in actions:
        page = viewer.get(changelist(model))
        assert page.status_code == 200, model
        assert f'value="{name}"' not in page.text, f"{model.__name__}.{name} is offered to a view-only user"
        pks = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]
        response = viewer.post(changelist(model), {"action": name, "_selected_action": pks, "post": "yes"}, follow=True)
        assert response.status_code in (200, 403), (model, name)
    preview = registry["preview"]
    for url in (f"{changelist(ModelEntry)}{preview.pk}/change/", f"{changelist(ModelEntry)}add/"):
        form = entry_form(base_url=standin.base_url, remote_model="echo", _test="Test this model")
        assert viewer.post(url, form).status_code == 403, url
    viewer.close()
    assert rows() == before, "a view-only user changed something"
    assert len(standin.requests) == heard, "a view-only user made the server call a model"

    # A user who may change model entries but not test them cannot use the button either.
    staff_with("editor", {"models_hub.view_modelentry", "models_hub.change_modelentry", "models_hub.add_modelentry"})
    editor = AdminSession(live.url).login("editor", PASSWORD)
    form = entry_form(base_url=standin.base_url, remote_model="echo", _test="Test this model")
    assert editor.post(f"{changelist(ModelEntry)}add/", form).status_code == 403
    assert 'value="test_models"' not in editor.get(changelist(ModelEntry)).text
    assert "admin-test.js" not in editor.get(f"{changelist(ModelEntry)}{preview.pk}/change/").text, "no button shown"
    editor_user = User.objects.get(username="editor")
    editor_user.user_permissions.add(Permission.objects.get(codename="test_modelentry"))
    assert "admin-test.js" in editor.get(f"{changelist(ModelEntry)}{preview.pk}/change/").text
    editor.close()
    assert len(standin.requests) == heard

    # One holder, logged in once, given exactly each action's permissions in turn (read again on every request).
    holder = staff_with("holder", set())
    session = AdminSession(live.url).login("holder", PASSWORD)
    for model, _, name, func in actions:
        perms = {f"{model._meta.app_label}.view_{model._meta.model_name}"}
        perms |= {codenames(model, permission) for permission in func.allowed_permissions}
        holder.user_permissions.set([
            Permission.objects.get(content_type__app_label=perm.split(".")[0], codename=perm.split(".")[1])
            for perm in perms
        ])
        pk = model._default_manager.order_by("pk").values_list("pk", flat=True).first()
        if pk is None:  # the admin shows no actions over an empty list: ask the ModelAdmin itself
            request = RequestFactory().get("/admin/")
            request.user = User.objects.get(pk=holder.pk)
            assert name in admin.site._registry[model].get_actions(request), f"{model.__name__}.{name} not offered"
            continue
        assert f'value="{name}"' in session.get(changelist(model)).text, f"{model.__name__}.{name} not offered"
        response = session.post(changelist(model), {"action": name, "_selected_action": [str(pk)]}, follow=True)
        assert response.status_code == 200 and "No action selected" not in response.text, f"{model.__name__}.{name}"
    session.close()
    preview.refresh_from_db()
    assert preview.visibility == "preview", "no verdict that it beats a parent: the promotion gate refused it"
    assert preview.retired_at is None and preview.is_active, "retired, then brought back by the holder of retire"
    assert LogEntry.objects.filter(change_message__startswith="Retired", user__username="holder").exists()
    assert VoterRisk.objects.get().reviewed_by == "holder", "the holder of review_voterrisk reviewed"
    assert LogEntry.objects.filter(change_message__startswith="Tested", user__username="holder").exists()
