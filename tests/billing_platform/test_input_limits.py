"""Regression tests for fuzzing findings: inputs the database cannot store answer 4xx, not 500."""

from __future__ import annotations

from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture


def test_nul_in_json_strings_is_422(api: Api, acme: TenantFixture) -> None:
    for raw in (
        b'{"provider": "default", "external_id": 1, "profile": {"a": "x\\u0000y"}}',
        b'{"provider": "default", "external_id": 1, "profile": {"k\\u0000": 1}}',
        b'{"provider": "default", "external_id": 1, "profile": {"a": ["\\ud806"]}}',
    ):
        response = api.request("POST", "billing/identify", key=acme.key, body=raw,
                               content_type="application/json")
        assert_problem(response, 422, "validation_error")
    listed = api.get("billing/customers", key=acme.key).json["items"]
    assert listed == []


def test_nul_in_query_or_path_is_400(api: Api, acme: TenantFixture) -> None:
    response = api.client.get("/api/v1/billing/customers?provider=a%00b", HTTP_X_API_KEY=acme.key)
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_times_are_stored_as_utc_whatever_the_offset(api: Api, acme: TenantFixture) -> None:
    response = api.post(
        "keys", json={"name": "far", "expires_at": "5441-10-28T19:13:07.268339-20:22"},
        key=acme.key,
    )
    assert response.status == 201, response.body
    assert response.json["expires_at"].startswith("5441-10-29T15:35:07")


def test_times_beyond_the_calendar_are_422(api: Api, acme: TenantFixture) -> None:
    response = api.post(
        "keys", json={"name": "edge", "expires_at": "9999-12-31T23:00:00-05:00"}, key=acme.key
    )
    assert_problem(response, 422, "validation_error")
