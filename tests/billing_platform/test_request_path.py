"""The request path around the views: the middleware of machine routes, the renderer, and the
database connection's health check (against the real PostgreSQL)."""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal
from typing import Any
from unittest import mock
from uuid import UUID

import psycopg
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import Client
from ninja.renderers import JSONRenderer
from ninja.security import APIKeyCookie

from billing_platform.api import api as ninja_api
from billing_platform.core.renderer import OrjsonRenderer
from billing_platform.http import middleware
from tests.support.api import Api, assert_problem
from tests.support.processes import database_url
from tests.support.tenants import TenantFixture

# --- Middleware: machine routes pass the browser-only middleware by


@pytest.mark.parametrize("path", ["/api/v1/keys", "/healthz", "/api/v1/no-such-route"])
def test_machine_routes_pass_the_browser_only_middleware_by(
    client: Client, acme: TenantFixture, path: str
) -> None:
    response = client.get(path, HTTP_X_API_KEY=acme.key)
    request = response.wsgi_request  # type: ignore[attr-defined]
    assert not hasattr(request, "user")
    assert not hasattr(request, "_messages")


@pytest.mark.parametrize("path", ["/admin/login/", "/api/v1/docs"])
def test_the_admin_and_the_api_docs_keep_the_browser_middleware(
    client: Client, db: None, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    request = response.wsgi_request  # type: ignore[attr-defined]
    assert hasattr(request, "user") and hasattr(request, "_messages")
    assert response["X-Frame-Options"] == "DENY"


def test_machine_routes_keep_what_every_answer_gets(
    api: Api, acme: TenantFixture, settings: Any
) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    headers = {"Origin": "https://app.example", "X-Request-ID": "path-1"}

    response = api.get("keys", key=acme.key, headers=headers)

    assert response.status == 200
    assert response.headers["X-Request-ID"] == "path-1"
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert response.headers["RateLimit-Limit"] == "600"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert int(response.headers["Content-Length"]) == len(response.body)
    assert_problem(api.get("no-such-route", key=acme.key), 404, "not_found")
    too_big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    assert_problem(
        api.request("POST", "keys", key=acme.key, body=too_big, content_type="application/json"),
        413, "payload_too_large",
    )


def test_no_api_operation_authenticates_by_cookie() -> None:
    """Why the API is a machine route: no session or cookie ever authenticates under it."""
    operations = [
        operation
        for _prefix, router in ninja_api._routers
        for path_view in router.path_operations.values()
        for operation in path_view.operations
    ]
    assert operations
    for operation in operations:
        for auth in operation.auth_callbacks:
            assert not isinstance(auth, APIKeyCookie), operation.view_func


def test_machine_routes_are_the_api_the_health_checks_and_metrics() -> None:
    assert middleware.is_machine_route("/api/v1/billing/balance")
    assert middleware.is_machine_route("/api/v1/openapi.json")
    assert middleware.is_machine_route("/healthz")
    assert middleware.is_machine_route("/metrics")
    assert not middleware.is_machine_route("/api/v1/docs")
    assert not middleware.is_machine_route("/admin/")
    assert not middleware.is_machine_route("/static/admin/css/base.css")


@pytest.mark.parametrize(
    "middleware_class", [middleware.AuthenticationMiddleware, middleware.MessageMiddleware]
)
def test_browser_only_middleware_has_no_hook_that_would_run_anyway(
    middleware_class: type,
) -> None:
    for hook in ("process_view", "process_exception", "process_template_response"):
        assert not hasattr(middleware_class, hook), hook


# --- The renderer


def _both(data: Any) -> tuple[bytes, str]:
    fast = OrjsonRenderer().render(None, data, response_status=200)  # type: ignore[arg-type]
    default = JSONRenderer().render(None, data, response_status=200)  # type: ignore[arg-type]
    return fast, default


def test_the_renderer_writes_the_values_ninjas_default_wrote() -> None:
    data = {
        "at": datetime(2026, 5, 1, 12, 30, 5, 123456, tzinfo=UTC),
        "whole_second": datetime(2026, 5, 1, 12, 30, 5, tzinfo=UTC),
        "day": date(2026, 5, 1),
        "clock": day_time(12, 30, 5, 250000),
        "period": timedelta(days=1, seconds=5),
        "price": Decimal("20.00"),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "name": "Zoë ✓",
        "items": [{"remaining": 3, "unlimited": False, "expires_at": None, "ratio": 0.5}],
        "metadata": {"nested": {"deep": [1, "two", {"three": 3}]}},
    }
    fast, default = _both(data)
    assert json.loads(fast) == json.loads(default)
    decoded = json.loads(fast)
    assert decoded["at"] == "2026-05-01T12:30:05.123Z"
    assert decoded["whole_second"] == "2026-05-01T12:30:05Z"
    assert decoded["price"] == "20.00"
    assert "Zoë ✓".encode() in fast  # UTF-8, not \u escapes


def test_values_orjson_refuses_are_written_by_the_default_renderer() -> None:
    data = {"metadata": {"big": 10**30, "negative": -(2**70)}}
    fast, default = _both(data)
    assert fast == default.encode() or fast == default
    assert json.loads(fast) == data


def test_api_answers_are_compact_json(api: Api, acme: TenantFixture) -> None:
    response = api.get("keys", key=acme.key)
    assert response.status == 200
    assert response.content_type == "application/json; charset=utf-8"
    assert b'": ' not in response.body and b", " not in response.body
    assert response.json["items"]


# --- The database connection's health check (real PostgreSQL, real commits)


def _terminate(pid: int) -> None:
    """End a server session as an operator would, and wait until its backend is gone."""
    with psycopg.connect(database_url(), autocommit=True) as admin:
        # integer: Citus adds a pg_terminate_backend(bigint) beside PostgreSQL's (int)
        admin.execute("SELECT pg_terminate_backend(%s::integer)", [pid])
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the backend did not exit"
            time.sleep(0.01)


@pytest.fixture
def fresh_connection(committed: None) -> Iterator[int]:
    """This thread's connection, open and idle; yields its server process id."""
    connection.ensure_connection()
    yield connection.connection.info.backend_pid
    connection.close()


def test_the_health_check_sends_no_query(fresh_connection: int) -> None:
    psycopg_connection = type(connection.connection)
    with (
        mock.patch.object(psycopg_connection, "cursor", side_effect=AssertionError("query")),
        mock.patch.object(psycopg_connection, "execute", side_effect=AssertionError("query")),
    ):
        assert connection.is_usable()


def test_a_connection_the_server_ended_is_not_usable(fresh_connection: int) -> None:
    _terminate(fresh_connection)
    assert not connection.is_usable()


def test_a_notification_waiting_on_the_connection_leaves_it_usable(
    fresh_connection: int,
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("LISTEN billable_health_check")
    with psycopg.connect(database_url(), autocommit=True) as other:
        other.execute("NOTIFY billable_health_check, 'hello'")
    time.sleep(0.1)
    assert connection.is_usable()
    with connection.cursor() as cursor:
        cursor.execute("UNLISTEN billable_health_check")
        cursor.execute("SELECT 1")


def _get(handler: WSGIHandler, path: str, query: str, key: str) -> tuple[str, bytes]:
    """One request as a WSGI server makes it (request_started, the response closed after)."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "HTTP_X_API_KEY": key,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    statuses: list[str] = []
    result = handler(environ, lambda status, headers, exc_info=None: statuses.append(status))
    try:
        body = b"".join(result)
    finally:
        result.close()  # type: ignore[attr-defined]
    return statuses[0], body


def test_a_read_after_the_server_ended_the_connection_between_requests_succeeds(
    committed_tenants: dict[str, TenantFixture], fresh_connection: int
) -> None:
    acme = committed_tenants["acme"]
    handler = WSGIHandler()
    balance = ("/api/v1/billing/balance", "external_id=nobody&feature=reports", acme.key)
    status, _body = _get(handler, *balance)
    assert status.startswith("200"), _body
    first_pid = connection.connection.info.backend_pid

    _terminate(first_pid)
    status, body = _get(handler, *balance)

    assert status.startswith("200"), body
    assert json.loads(body)["can_use"] is False
    assert connection.connection.info.backend_pid != first_pid
