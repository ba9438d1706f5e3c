"""Session-wide fixtures: real PostgreSQL and Redis, two committed tenants, an HTTP helper.

The test database is created once per session; the two tenants (`acme`, `globex`) and their keys
are committed once, and every test runs inside a transaction that is rolled back, so a test sees
them fresh. Tests that need committed data (threads, servers) use `transactional_db` and their own
tenants.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client

from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create, platform_key_create, tenant_onboard


@dataclass
class TenantFixture:
    tenant: Tenant
    key: str
    key_row: ApiKey


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]  # case-insensitive, as HTTP header names are
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class Api:
    """Django's test client with API-key and JSON conveniences."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        json_body: Any = None,
        body: bytes | str | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> Response:
        extra: dict[str, str] = {}
        if key is not None:
            extra["HTTP_X_API_KEY"] = key
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        data: Any = None
        if json_body is not None:
            data = json.dumps(json_body)
            content_type = content_type or "application/json"
        elif body is not None:
            data = body
        kwargs: dict[str, Any] = {}
        if content_type is not None:
            kwargs["content_type"] = content_type
        url = path if path.startswith("/") else "/api/v1/" + path
        handler = getattr(self.client, method.lower())
        if method.upper() == "GET":
            response = handler(url, data=query or {}, **extra)
        else:
            if query:
                from urllib.parse import urlencode

                url += "?" + urlencode(query, doseq=True)
            if data is None:
                # Like curl -X POST: no body and no content type.
                response = self.client.generic(method.upper(), url, data=b"",
                                               content_type="", **extra)
            else:
                response = handler(url, data=data, **kwargs, **extra)
        return Response(
            status=response.status_code, headers=response.headers,
            body=response.content,
        )

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, json_body=json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> Response:
        return self.request("PATCH", path, json_body=json, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)


def _clear_cache_prefix() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def committed_tenants(
    django_db_setup: None, django_db_blocker: Any
) -> dict[str, TenantFixture]:
    with django_db_blocker.unblock():
        result = {}
        for slug in ("acme", "globex"):
            tenant, key_row, raw = tenant_onboard(name=slug.title(), slug=slug)
            result[slug] = TenantFixture(tenant=tenant, key=raw, key_row=key_row)
    return result


@pytest.fixture(scope="session")
def committed_platform_key(django_db_setup: None, django_db_blocker: Any) -> str:
    with django_db_blocker.unblock():
        _key, raw = platform_key_create(name="tests")
    return raw


@pytest.fixture(autouse=True)
def _isolated_cache() -> Iterator[None]:
    """Each test starts with an empty cache (only this run's prefix is touched)."""
    _clear_cache_prefix()
    yield
    _clear_cache_prefix()


@pytest.fixture(autouse=True)
def _public_schema_after_test() -> Iterator[None]:
    yield
    connection.set_schema_to_public()


@pytest.fixture
def acme(committed_tenants: dict[str, TenantFixture], db: None) -> TenantFixture:
    return committed_tenants["acme"]


@pytest.fixture
def globex(committed_tenants: dict[str, TenantFixture], db: None) -> TenantFixture:
    return committed_tenants["globex"]


@pytest.fixture
def platform_key(committed_platform_key: str, db: None) -> str:
    return committed_platform_key


@pytest.fixture
def api(client: Client) -> Api:
    return Api(client)


def make_key(tenant: Tenant, **kwargs: Any) -> tuple[ApiKey, str]:
    return api_key_create(tenant=tenant, name=kwargs.pop("name", "test"), **kwargs)


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body[:500])
    assert response.content_type.startswith("application/problem+json"), response.content_type
    body = response.json
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["type"].endswith("/" + code)
    assert body["title"] and body["detail"]
    return body  # type: ignore[no-any-return]


# --- Committed data. pytest-django's transactional tests truncate every public table afterwards,
# which would erase the session's tenants and keys; tests that need real commits (threads,
# servers, schema builds) use `committed` instead and remove what they create themselves.


@pytest.fixture
def committed(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Database access with real commits: no wrapping transaction, no flush afterwards."""
    with django_db_blocker.unblock():
        # pytest-django creates the test database only when a collected test asks for `db`;
        # never commit into a development database.
        assert str(connection.settings_dict["NAME"]).startswith("test_"), (
            "committed data outside the test database; run this module with the whole suite "
            "or mark it django_db"
        )
        yield
        connection.set_schema_to_public()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("django_db")
        uses_flush = bool(marker and marker.kwargs.get("transaction"))
        fixtures = getattr(item, "fixturenames", ())
        if uses_flush or "transactional_db" in fixtures or "live_server" in fixtures:
            raise pytest.UsageError(
                f"{item.nodeid}: transactional_db / django_db(transaction=True) / live_server "
                "truncate the public tables after the test and destroy the session tenants. "
                "Use the `committed` fixture (tests/conftest.py) and clean up what the test "
                "creates; for a live server use tests/servers.py (live_server_url)."
            )
