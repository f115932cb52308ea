from __future__ import annotations

import os

import pytest

from tests.models_hub.built_models import built_models  # noqa: F401  (the default models, built once)
from tests.stack import PostgresCluster, RedisServer


@pytest.fixture
def redis_server() -> RedisServer:
    """The suite's real Redis, for tests that stop and start it. Started again afterwards whatever happened."""
    if "ARENA_TEST_REDIS_PORT" not in os.environ:
        pytest.fail("this test needs the real Redis that `make test` starts (python -m tests.stack)")
    server = RedisServer.from_env()
    yield server
    try:
        import redis

        redis.Redis(port=server.port, socket_timeout=1).ping()
    except Exception:
        server.start()


@pytest.fixture
def postgres_cluster() -> PostgresCluster:
    if "ARENA_TEST_PGDATA" not in os.environ:
        pytest.fail("this test needs the real PostgreSQL that `make test` starts (python -m tests.stack)")
    return PostgresCluster.from_env()


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counters live in the cache (the real Redis); each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
