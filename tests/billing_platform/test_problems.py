"""Every error is application/problem+json with a stable code, never a 500."""

from __future__ import annotations

import contextlib

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from billing_platform.core.identity import TenantRef
from billing_platform.http.middleware import TenantResetMiddleware
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture


def test_unknown_route_and_wrong_method(api: Api, acme: TenantFixture) -> None:
    assert_problem(api.get("/api/v1/nothing/here"), 404, "not_found")
    response = api.request("PUT", "keys", key=acme.key, json_body={})
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]


def test_malformed_json_is_400(api: Api, acme: TenantFixture) -> None:
    response = api.request(
        "POST", "keys", key=acme.key, body=b'{"name": ', content_type="application/json"
    )
    assert_problem(response, 400, "malformed_json")


def test_non_json_body_is_415(api: Api, acme: TenantFixture) -> None:
    response = api.request(
        "POST", "keys", key=acme.key, body=b"name=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert_problem(response, 415, "unsupported_media_type")


def test_oversized_body_is_413_before_reading(api: Api, acme: TenantFixture) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = api.request("POST", "keys", key=acme.key, body=big, content_type="application/json")
    assert_problem(response, 413, "payload_too_large")
    assert response.headers["Connection"] == "close"


def test_validation_errors_list_fields(api: Api, acme: TenantFixture) -> None:
    response = api.post("keys", json={"name": 5, "scopes": "x"}, key=acme.key)
    body = assert_problem(response, 422, "validation_error")
    locs = {tuple(item["loc"]) for item in body["errors"]}
    assert ("body", "payload", "name") in locs
    assert ("body", "payload", "scopes") in locs


def test_post_without_body_means_empty_object(api: Api, acme: TenantFixture) -> None:
    # `{}` lacks the required `name`: a validation error about that field, not a parse error.
    from django.test import Client

    for content_type in ("", "application/json"):
        raw = Client().generic(
            "POST", "/api/v1/keys", HTTP_X_API_KEY=acme.key, CONTENT_TYPE=content_type
        )
        assert raw.status_code == 422, raw.content
        body = raw.json()
        assert body["code"] == "validation_error"
        assert ["body", "payload", "name"] in [item["loc"] for item in body["errors"]]


def test_json_array_body_is_a_validation_error(api: Api, acme: TenantFixture) -> None:
    response = api.request(
        "POST", "keys", key=acme.key, body=b"[1]", content_type="application/json"
    )
    assert_problem(response, 422, "validation_error")


def test_bad_content_length_is_400(acme: TenantFixture) -> None:
    from django.test import Client

    response = Client().generic(
        "POST", "/api/v1/keys", data=b"{}", content_type="application/json",
        HTTP_X_API_KEY=acme.key, CONTENT_LENGTH="abc",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_tenant_reset_even_when_the_view_raises(db: None) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        connection.set_tenant(TenantRef(id=0, slug="x", schema_name="t_acme", status="active",
                                        rate_limit="0"))
        raise RuntimeError("boom")

    middleware = TenantResetMiddleware(view)
    with contextlib.suppress(RuntimeError):
        middleware(RequestFactory().get("/"))
    assert connection.schema_name == "public"
    with connection.cursor() as cursor:
        cursor.execute("SHOW search_path")
        assert cursor.fetchone()[0].startswith("public")
