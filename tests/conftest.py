from __future__ import annotations

import os

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, LiveArena
from tests.models_hub.built_models import built_models  # noqa: F401  (the default models, built once)
from devstack import PostgresCluster, RedisServer
from tests.standin import StandinEndpoint


@pytest.fixture
def redis_server() -> RedisServer:
    """The suite's real Redis, for tests that stop and start it. Started again afterwards whatever happened."""
    if "ARENA_TEST_REDIS_PORT" not in os.environ:
        pytest.fail("this test needs the real Redis that `make test` starts (python -m devstack)")
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
        pytest.fail("this test needs the real PostgreSQL that `make test` starts (python -m devstack)")
    return PostgresCluster.from_env()


@pytest.fixture(autouse=True)
def _proof_of_work_where_a_page_solves_it(request, settings):
    """The proof of work stays on (as in production) for tests/trust and for every page a browser opens on a
    daphne of its own (the page solves it); in-process tests that start battles straight through the services,
    a bare websocket or a worker speak for no browser, so it is off for them."""
    if "tests/trust/" not in str(request.node.path).replace("\\", "/"):
        settings.ARENA_POW = False
    yield


@pytest.fixture(autouse=True)
def _socket_calls_on_the_test_thread(settings):
    """Sockets driven inside the test process (WebsocketCommunicator) run their database calls on Channels' one
    thread, as the embedded server does. The test's own connection comes from the same pool as theirs, and the
    thread mode closes that pool after a database error, under the test (tried: the tests after the in-process
    PostgreSQL restart failed with "the connection is closed"). The thread mode of the production processes
    (ARENA_DB_THREADS) is tried over daphne: every test of a LiveArena, and the PostgreSQL restart in
    tests/arena/test_faults.py."""
    settings.ARENA_DB_THREADS = 0
    yield


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counters live in the cache (the real Redis); each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Each test gets its own channel layer object: the Redis layer's receive lock belongs to the event loop that
    took it first, and a consumer of the last test's loop still winding down must not hold it for this one."""
    from channels.layers import channel_layers

    channel_layers.backends = {}
    yield


@pytest.fixture(scope="session")
def standin() -> StandinEndpoint:
    endpoint = StandinEndpoint().start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def inprocess(settings):
    """Generation on threads inside the test process (the embedded default's dispatcher)."""
    settings.ARENA_INPROCESS_WORKERS = True
    yield settings
    from inference.dispatch import inprocess_idle

    inprocess_idle()


@pytest.fixture(scope="module")
def chromium():
    import os

    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def arena(tmp_path):
    live = LiveArena(tmp_path / "daphne.log").start()
    yield live
    live.stop()
