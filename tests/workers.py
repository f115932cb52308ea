"""Real Celery worker processes for tests: started against the suite's Redis and test database, stopped after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class CeleryWorker:
    """One worker process for `pool`: by default a prefork pool of one child; `threads=N` runs N jobs at once on
    threads of one process, as `make worker` does."""

    def __init__(self, pool: str, *, log: Path, time_limit: int = 120, threads: int | None = None):
        self.pool = pool
        self.log = log
        self.threads = threads
        self.env = {**os.environ, "DATABASE_URL": test_database_url(), "CELERY_TASK_TIME_LIMIT": str(time_limit),
                    "ARENA_POOL_HEARTBEAT_SECONDS": "1", "ARENA_INPROCESS_WORKERS": "0"}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "CeleryWorker":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", self.pool,
             "--concurrency", str(self.threads or 1), "-P", "threads" if self.threads else "prefork",
             "--without-gossip", "--without-mingle", "-n", f"{self.pool}-{os.getpid()}@test", "--loglevel", "INFO"],
            cwd=ROOT, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited at start:\n{self.log.read_text()[-3000:]}")
            if b" ready." in self.log.read_bytes():
                from inference.pools import live_pools

                while time.monotonic() < deadline:
                    if live_pools({self.pool}):
                        return self
                    time.sleep(0.2)
            time.sleep(0.2)
        raise RuntimeError(f"the worker did not start in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def pool_children(self) -> list[int]:
        return children_of(self.process.pid) if self.process else []

    def kill(self) -> None:
        """SIGKILL the whole worker, main process and children: what a crashed host looks like."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if getattr(self, "_log_file", None):
            self._log_file.close()


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):
    """Poll `predicate` until it returns something true, and return that; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")
