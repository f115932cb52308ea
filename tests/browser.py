"""A live arena (daphne serving the real ASGI app on the test database) and a real headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devstack import free_port, wait_for_port
from tests.workers import test_database_url

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = os.environ.get("ARENA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
# The proof of work's difficulty in the test processes: 4096 hashes expected, so every page that opens a battle
# on a daphne of its own solves it in milliseconds. tests/trust/test_pow_checks.py checks the production default.
TEST_POW_BITS = 12


class LiveArena:
    def __init__(self, log: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {
            **os.environ, "DATABASE_URL": test_database_url(), "ARENA_INPROCESS_WORKERS": "1",
            "SECURE_COOKIES": "0", "WHITENOISE_USE_FINDERS": "1", "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "ARENA_POW_BITS": str(TEST_POW_BITS), **env,
        }

    def start(self) -> "LiveArena":
        self._log_file = open(self.log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
            cwd=ROOT, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, timeout=60)
        except RuntimeError:
            self.stop()
            raise RuntimeError(self.log.read_text()[-3000:]) from None
        return self

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log_file.close()


class Page:
    """A tab on the arena that records every websocket frame it receives."""

    def __init__(self, browser, url: str, *, consent: bool = True, **context):
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.frames: list[str] = []
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: self.frames.append(str(payload))))
        self.page.goto(url)
        try:
            self.page.wait_for_function("() => !document.querySelector('#send').disabled", timeout=15_000)
        except Exception:
            raise AssertionError(f"the page never connected; script errors: {self.errors}; frames: {self.frames}") from None
        if consent and self.page.is_visible("#consent-agree"):
            self.page.click("#consent-agree")  # the first-visit notice on collecting prompts and votes

    def ask(self, prompt: str) -> None:
        self.page.fill("#prompt", prompt)
        self.page.keyboard.press("Enter")

    def wait_votable(self, timeout: float = 120_000) -> None:
        try:
            self.page.wait_for_selector(".vote[data-vote='A']:not([disabled])", timeout=timeout)
        except Exception:
            raise AssertionError(f"the votes never opened; script errors: {self.errors}; frames: {self.frames[-6:]}") from None

    def close(self) -> None:
        self.context.close()
