"""Decisions in a real headless Chromium against a live arena: the head-to-head page's verdict, provisional mark
and best-of-K line, the leaderboard's retired list, and the admin's promotion gate refusing an unproven preview."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from models_hub.models import ModelEntry
from tests.browser import LiveArena

from .test_leaderboard import import_csv, model
from .test_leaderboard_browser import snapshot_elsewhere

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture(scope="module")
def arena(django_db_setup, tmp_path_factory):  # the live server reads the test database, created first
    live = LiveArena(tmp_path_factory.mktemp("decisions") / "daphne.log").start()
    yield live
    live.stop()


@pytest.fixture
def lineage(tmp_path):
    base = model("ours-base", display_name="Ours Base")
    v2 = model("ours-v2", display_name="Ours V2", is_inhouse=True, parent=base, version=2)
    v3 = model("ours-v3", display_name="Ours V3", is_inhouse=True, parent=base, version=3, visibility="preview",
               codename="wren")
    model("rival", display_name="Rival")
    old = model("old-timer", display_name="Old Timer")
    rows = [("Ours V2", "Rival", "model_a")] * 300 + [("Ours V2", "Rival", "model_b")] * 30
    rows += [("Ours V2", "Ours Base", "model_a")] * 200 + [("Ours V2", "Ours Base", "model_b")] * 40
    rows += [("Ours V3", "Ours Base", "model_a")] * 30 + [("Ours V3", "Ours Base", "model_b")] * 30
    rows += [("Old Timer", "Rival", "model_a")] * 40 + [("Old Timer", "Rival", "model_b")] * 60
    import_csv(tmp_path, rows)
    ModelEntry.objects.filter(pk=old.pk).update(retired_at=timezone.now().replace(year=2026, month=2, day=3),
                                                is_active=False)
    snapshot_elsewhere()
    return base, v2, v3, old


def test_the_pages_show_verdicts_the_provisional_mark_and_the_retired_list(chromium, arena, lineage):
    page = chromium.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{arena.url}/leaderboard/head-to-head/")
    page.wait_for_selector(".h2h tbody tr")
    rivals = [name.split(" · ")[0].strip() for name in page.locator(".h2h td.model").all_inner_texts()]
    verdicts = dict(zip(rivals, page.locator(".h2h td.verdict").all_inner_texts()))
    assert verdicts["Rival"].lower() == "better", verdicts
    badge = page.locator(".badge.provisional")
    assert badge.is_visible() and badge.inner_text() == "provisional"
    assert badge.evaluate("e => getComputedStyle(e).borderTopStyle") == "dashed", "the badge has its style"
    assert "wren" not in page.content() and "Ours V3" not in page.content(), "a preview stays off the public page"
    page.goto(f"{arena.url}/leaderboard/")
    retired = page.locator("[data-retired]")
    retired.wait_for()
    text = retired.inner_text()
    assert "Retired models" in text and "Old Timer" in text and "2026-02-03" in text
    assert errors == []
    page.close()


def test_the_admin_refuses_to_promote_an_unproven_preview(chromium, arena, lineage):
    *_, v3, _ = lineage
    User.objects.create_superuser("lead", password="pw-lead-12345")
    page = chromium.new_page()
    page.goto(f"{arena.url}/admin/login/?next=/admin/models_hub/modelentry/")
    page.fill("#id_username", "lead")
    page.fill("#id_password", "pw-lead-12345")
    page.click("input[type=submit]")
    page.wait_for_selector("#changelist")
    page.check(f"input[name=_selected_action][value='{v3.pk}']")
    page.select_option("select[name=action]", "promote_preview")
    page.click("button[name=index]")
    page.wait_for_selector("text=Promote anyway")
    assert "Ours V3 (wren) was not promoted" in page.locator(".messagelist").inner_text()
    page.fill("textarea[name=reason]", "   ")  # blank after stripping: the server asks for a reason
    page.click("input[value='Promote anyway']")
    page.wait_for_selector(".errorlist")
    assert ModelEntry.objects.get(pk=v3.pk).visibility == "preview"
    page.close()
