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
        assert body["parts"]["redis"] == "unavailable"
    finally:
        redis_server.start()
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_it_refuses_other_methods(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_it_tells_the_public_which_part_is_down_and_nothing_of_how_to_reach_it(client, postgres_cluster, settings):
    """Tried: stop PostgreSQL and Redis and read /healthz. Before, the answer carried the driver's error text,
    with the database's host, port and user in it; now each part says "unavailable" and the detail is logged."""
    from django.db import connection

    database = connection.settings_dict
    connection.close()
    postgres_cluster.stop()
    try:
        response = client.get("/healthz")
    finally:
        postgres_cluster.start()
        connection.close()
    assert response.status_code == 503
    body = response.json()
    assert body == {"status": "unavailable", "failing": ["database"], "parts": {"database": "unavailable", "redis": "ok"}}
    text = response.content.decode()
    for secret in (database["HOST"], str(database["PORT"]), database["USER"], database["NAME"], "connection", "psycopg"):
        assert secret and secret not in text, secret
