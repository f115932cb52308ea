"""Promote, retire, bring back: a preview goes public under its real name only when the latest snapshot's
always-valid verdict says it beats its parent, or by an override with a recorded reason."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User

from leaderboard.snapshots import leaderboard_snapshot_create
from models_hub.models import ModelEntry
from tests.leaderboard.test_leaderboard import import_csv, model

CHANGELIST = "/admin/models_hub/modelentry/"


@pytest.fixture
def family(db, tmp_path):
    """A parent, a preview that beats it by far (proven) and one that is level with it (not yet)."""
    parent = model("base", display_name="Base")
    strong = model("strong", display_name="Strong Real", visibility="preview", codename="falcon", parent=parent,
                   version=2, is_inhouse=True)
    level = model("level", display_name="Level Real", visibility="preview", codename="heron", parent=parent,
                  version=2, is_inhouse=True)
    rows = [("Strong Real", "Base", "model_a")] * 400 + [("Strong Real", "Base", "model_b")] * 40
    rows += [("Level Real", "Base", "model_a")] * 40 + [("Level Real", "Base", "model_b")] * 40
    import_csv(tmp_path, rows)
    leaderboard_snapshot_create()
    strong.refresh_from_db()
    level.refresh_from_db()
    return parent, strong, level


def staff(client, *codenames: str):
    user = User.objects.create_user("op", password="pw-op-12345", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=("view_modelentry", *codenames)))
    client.force_login(user)
    return user


def test_the_snapshot_writes_each_versions_verdict_against_its_parent(family):
    _, strong, level = family
    assert strong.parent_verdict["verdict"] == "better" and strong.parent_verdict["lower"] > 0
    assert level.parent_verdict["verdict"] == "not yet" and level.parent_verdict["parent"] == "Base"


def test_it_promotes_a_proven_preview_and_refuses_an_unproven_one(client, family):
    _, strong, level = family
    staff(client, "publish_preview")
    response = client.post(CHANGELIST, {"action": "promote_preview", "_selected_action": [strong.pk, level.pk]},
                           follow=True)
    text = response.content.decode()
    assert response.status_code == 200
    assert "Level Real (heron) was not promoted: the latest leaderboard does not yet show it beats its parent Base" in text
    assert "Promote anyway" not in text, "no override form without override_promotion"
    assert ModelEntry.objects.get(pk=strong.pk).visibility == "public"
    assert ModelEntry.objects.get(pk=level.pk).visibility == "preview"
    assert LogEntry.objects.filter(object_id=str(strong.pk), change_message__startswith="Promoted").exists()


def test_an_override_needs_a_reason_and_records_it(client, family):
    _, _, level = family
    staff(client, "publish_preview", "override_promotion")
    form = client.post(CHANGELIST, {"action": "promote_preview", "_selected_action": [level.pk]})
    assert form.status_code == 200 and "Promote anyway" in form.content.decode()
    blank = {"action": "promote_preview", "_selected_action": [level.pk], "override": "1", "reason": "  "}
    again = client.post(CHANGELIST, blank)
    assert again.status_code == 200 and "This field is required" in again.content.decode()
    assert ModelEntry.objects.get(pk=level.pk).visibility == "preview"
    client.post(CHANGELIST, blank | {"reason": "Launch day: parity with the parent is enough."})
    level.refresh_from_db()
    assert level.visibility == "public"
    assert "op on" in level.promotion_override and "parity with the parent" in level.promotion_override
    log = LogEntry.objects.get(object_id=str(level.pk))
    assert "without a verdict" in log.change_message and "parity with the parent" in log.change_message


def test_retire_takes_a_model_out_and_bring_back_returns_it(client, family):
    parent, _, _ = family
    staff(client, "retire_modelentry", "change_modelentry")
    client.post(CHANGELIST, {"action": "retire", "_selected_action": [parent.pk]})
    parent.refresh_from_db()
    assert parent.retired_at is not None and not parent.is_active
    client.post(CHANGELIST, {"action": "activate", "_selected_action": [parent.pk]})
    assert not ModelEntry.objects.get(pk=parent.pk).is_active, "activate leaves a retired model retired"
    client.post(CHANGELIST, {"action": "bring_back", "_selected_action": [parent.pk]})
    parent.refresh_from_db()
    assert parent.retired_at is None and parent.is_active
