"""The real services the test suite and the benchmarks run against: a throwaway PostgreSQL cluster and Redis under var/test/.

`python -m devstack -- COMMAND...` starts both on free loopback ports, runs COMMAND with DATABASE_URL and
REDIS_URL pointing at them, and stops them again whatever COMMAND's outcome. Tests that break a service on
purpose (a Redis restart, a PostgreSQL restart) use `RedisServer` and `PostgresCluster` from here, found
through the ARENA_TEST_* variables this sets.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = Path(os.environ.get("ARENA_TEST_STACK_DIR", ROOT / "var" / "test"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f} s")


def _postgres_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    return Path(candidates[-1])


def _as_postgres_user() -> list[str]:
    # PostgreSQL refuses to run as root; the Debian package's `postgres` account runs it instead.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"]
    return []


@dataclass
class PostgresCluster:
    data_dir: Path
    port: int
    bin_dir: Path

    @classmethod
    def from_env(cls) -> "PostgresCluster":
        return cls(Path(os.environ["ARENA_TEST_PGDATA"]), int(os.environ["ARENA_TEST_PGPORT"]), Path(os.environ["ARENA_TEST_PGBIN"]))

    @property
    def url(self) -> str:
        return f"postgres://arena@127.0.0.1:{self.port}/arena"

    def init(self) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        subprocess.run(
            [*_as_postgres_user(), str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "arena",
             "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
            check=True, stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            [*_as_postgres_user(), str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l",
             str(self.data_dir / "server.log"), "-o", options, "-w", "-t", "60", "start"],
            check=True, stdout=subprocess.DEVNULL,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            [*_as_postgres_user(), str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def create_database(self, name: str) -> None:
        subprocess.run(
            [str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "arena", name], check=True
        )


@dataclass
class RedisServer:
    directory: Path
    port: int

    @classmethod
    def from_env(cls) -> "RedisServer":
        return cls(Path(os.environ["ARENA_TEST_REDIS_DIR"]), int(os.environ["ARENA_TEST_REDIS_PORT"]))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        subprocess.run(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
             "--dir", str(self.directory), "--pidfile", str(self.directory / "redis.pid"),
             "--logfile", str(self.directory / "redis.log"), "--save", "", "--appendonly", "no"],
            check=True,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        pidfile = self.directory / "redis.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, 15)
        except (ValueError, ProcessLookupError):
            pidfile.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        pidfile.unlink(missing_ok=True)


@contextmanager
def services(directory: Path) -> Iterator[tuple[PostgresCluster, RedisServer]]:
    """A fresh PostgreSQL cluster (with database `arena`) and Redis under `directory`, on free loopback ports;
    both stopped again on leaving, whatever happened inside."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # The postgres account must be able to walk down to its data directory.
        for parent in [directory, *directory.parents]:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
    postgres = PostgresCluster(directory / "pg", free_port(), _postgres_bin())
    redis = RedisServer(directory / "redis", free_port())
    started: list = []
    try:
        postgres.init()
        postgres.start()
        started.append(postgres)
        postgres.create_database("arena")
        redis.start()
        started.append(redis)
        yield postgres, redis
    finally:
        for service in reversed(started):
            service.stop()


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: python -m devstack -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1:]
    with services(STACK_DIR) as (postgres, redis):
        print(f"stack: PostgreSQL on 127.0.0.1:{postgres.port}, Redis on 127.0.0.1:{redis.port}", flush=True)
        env = {
            **os.environ,
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis.url,
            "ARENA_TEST_PGDATA": str(postgres.data_dir),
            "ARENA_TEST_PGPORT": str(postgres.port),
            "ARENA_TEST_PGBIN": str(postgres.bin_dir),
            "ARENA_TEST_REDIS_DIR": str(redis.directory),
            "ARENA_TEST_REDIS_PORT": str(redis.port),
        }
        return subprocess.call(command, env=env)

