"""Request bodies are parsed strictly; CORS stays off unless origins are allowed."""

from __future__ import annotations

from typing import Any

from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture


def test_duplicate_keys_are_malformed(api: Api, acme: TenantFixture) -> None:
    response = api.request("POST", "keys", key=acme.key, body=b'{"name": "a", "name": "b"}',
                           content_type="application/json")
    assert_problem(response, 400, "malformed_json")


def test_nan_and_infinity_are_malformed(api: Api, acme: TenantFixture) -> None:
    for raw in (b'{"name": NaN}', b'{"name": Infinity}', b'{"name": -Infinity}'):
        response = api.request("POST", "keys", key=acme.key, body=raw,
                               content_type="application/json")
        assert_problem(response, 400, "malformed_json")


def test_unknown_fields_are_ignored(api: Api, acme: TenantFixture) -> None:
    response = api.post("keys", json={"name": "ok", "colour": "blue"}, key=acme.key)
    assert response.status == 201


def test_cors_off_by_default_and_allow_list(api: Api, acme: TenantFixture, settings: Any) -> None:
    response = api.get("keys", key=acme.key, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    allowed = api.get("keys", key=acme.key, headers={"Origin": "https://app.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = api.get("keys", key=acme.key, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
