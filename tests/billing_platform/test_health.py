"""Health checks at the server root."""

from __future__ import annotations

from tests.conftest import Api


def test_healthz(api: Api) -> None:
    response = api.get("/healthz")
    assert response.status == 200 and response.json == {"status": "ok"}


def test_readyz_checks_database_and_redis(api: Api, db: None) -> None:
    response = api.get("/readyz")
    assert response.status == 200, response.body
    assert response.json == {"status": "ready"}


def test_readyz_reports_pending_migrations(api: Api, db: None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'tenants'")
    response = api.get("/readyz")
    assert response.status == 503
    assert "database" in response.json["failures"]
