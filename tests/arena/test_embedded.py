"""`make run`'s embedded default, end to end: the real daphne process with no DATABASE_URL and no REDIS_URL, so
SQLite under its own ARENA_VAR_DIR, the in-memory channel layer, generation on threads in the server and the
leaderboard timer; the three offline default models; a whole battle to the reveal in Chromium; and a snapshot
that only the timer can have made, shown on /leaderboard/."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.browser import ROOT, SCREENSHOTS, LiveArena, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# What `make test` sets for the suite, and what would switch the embedded default off: none of it is in `make run`.
NOT_IN_MAKE_RUN = ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "SECURE_COOKIES", "WHITENOISE_USE_FINDERS",
                   "ARENA_INPROCESS_WORKERS", "ARENA_SNAPSHOT_TIMER", "ALLOWED_HOSTS")


class EmbeddedArena(LiveArena):
    """daphne as `make run` starts it: `env -u DATABASE_URL -u REDIS_URL python -m daphne ...`."""

    def __init__(self, log: Path, env: dict[str, str]):
        super().__init__(log)
        self.env = env


def embedded_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_IN_MAKE_RUN}
    env.update(ARENA_VAR_DIR=str(var_dir), ARENA_MODELS_DIR=str(settings.ARENA_MODELS_DIR),
               ARENA_SNAPSHOT_SECONDS="5")
    return env


def described_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.timeout(1200)  # the first test to ask for the default models builds them
def test_the_embedded_default_plays_a_battle_to_the_reveal_and_its_timer_fits_the_leaderboard(
    chromium, built_models, tmp_path
):
    var_dir = tmp_path / "var"
    env = embedded_env(var_dir)
    # The settings the server will run with, read by the same settings module in the same environment.
    described = manage(env, "shell", "-v", "0", "-c", (
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'],"
        " s.CHANNEL_LAYERS['default']['BACKEND'], s.ARENA_INPROCESS_WORKERS, s.ARENA_SNAPSHOT_TIMER, s.DEBUG)"
    )).split()
    assert described == ["django.db.backends.sqlite3", str(var_dir / "arena.sqlite3"),
                         "channels.layers.InMemoryChannelLayer", "True", "True", "True"]
    # As `make run` does, less the build (the session's built_models fixture made the checkpoints).
    manage(env, "migrate", "--noinput")
    assert "3 of 3 default models registered" in manage(env, "seed_models", "--skip-build")
    names = manage(env, "shell", "-v", "0", "-c", "from models_hub.models import ModelEntry as M; "
                                       "M.objects.update(max_new_tokens=24, temperature=0.0); "
                                       "print(*(f'{m.public_name}|{m.is_preview}' for m in M.objects.all()), sep='\\n')")
    previews = {line.split("|")[0] for line in described_lines(names) if line.endswith("|True")}
    names = [line.split("|")[0] for line in described_lines(names)]
    assert len(names) == 3 and len(previews) == 1, "the in-house MoE is a preview model: codename after the vote"
    assert (var_dir / "arena.sqlite3").is_file()

    server = EmbeddedArena(tmp_path / "daphne.log", env).start()
    try:
        tab = Page(chromium, server.url)
        tab.ask("Write one sentence about the sea.")
        tab.wait_votable(timeout=300_000)
        answers = [tab.page.text_content(f"[data-conversation={side}] .bubble.model") for side in "AB"]
        assert all(answer and answer.strip() for answer in answers), answers
        tab.page.evaluate("() => document.activeElement.blur()")
        tab.page.keyboard.press("1")  # A is better
        tab.page.wait_for_function("() => document.querySelector('[data-name=B]').textContent.length > 0")
        shown = {tab.page.text_content("[data-name=A]"), tab.page.text_content("[data-name=B]")}
        assert len(shown) == 2 and shown <= set(names), (shown, names)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.page.screenshot(path=str(SCREENSHOTS / "embedded-revealed.png"), full_page=True)
        tab.close()

        # Nothing but the server's timer fits here: no beat, no worker, no command. Its first tick after the vote
        # (every 5 s) stores a snapshot; the page shows it.
        board = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
        deadline = time.monotonic() + 120
        while True:
            board.goto(f"{server.url}/leaderboard/")
            if board.locator(".lb-table tbody tr").count():
                break
            assert time.monotonic() < deadline, "no snapshot on the leaderboard two minutes after the vote: " + (
                server.log.read_text()[-3000:])
            time.sleep(1)
        # The public board lists the published models of the battle; a preview model stays off it until published.
        assert "1 vote" in board.text_content(".lb-meta")
        assert set(board.locator(".lb-table tbody td.model .name").all_text_contents()) == shown - previews
        board.screenshot(path=str(SCREENSHOTS / "embedded-leaderboard.png"), full_page=True)
        board.context.close()
    finally:
        server.stop()
    stored = manage(env, "shell", "-v", "0", "-c", (
        "from arena.models import Vote, Turn; from leaderboard.models import LeaderboardSnapshot as S; "
        "print(Vote.objects.count(), sorted(set(Turn.objects.values_list('status', flat=True))), "
        "S.objects.latest('id').votes_used)"
    ))
    # The timer's ticks before the vote may have stored the empty board too; the latest holds the vote.
    assert described_lines(stored) == ["1 ['done'] 1"]
