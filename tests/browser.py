"""A live arena (daphne serving the real ASGI app on the test database) and a real headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.stack import free_port, wait_for_port
from tests.workers import test_database_url

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = os.environ.get("ARENA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


class LiveArena:
    def __init__(self, log: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {
            **os.environ, "DATABASE_URL": test_database_url(), "ARENA_INPROCESS_WORKERS": "1",
            "SECURE_COOKIES": "0", "WHITENOISE_USE_FINDERS": "1", "ALLOWED_HOSTS": "127.0.0.1,localhost", **env,
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
