from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_it_reports_database_and_redis_healthy(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["parts"] == {"database": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_it_reports_a_stopped_redis_as_503_naming_it(client, redis_server):
    redis_server.stop()
    try:
        response = client.get("/healthz")
        assert response.status_code == 503
        body = response.json()
        assert body["failing"] == ["redis"]
        assert body["parts"]["database"] == "ok"
        assert body["parts"]["redis"].startswith("error: ")
    finally:
        redis_server.start()
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_it_refuses_other_methods(client):
    assert client.post("/healthz").status_code == 405
