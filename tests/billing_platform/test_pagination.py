"""Cursors are opaque to clients: a forged one is a 422 on every list endpoint, never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

LISTS = [
    "billing/products",
    "billing/offers",
    "billing/orders",
    "billing/customers",
    "keys",
    "webhooks/endpoints",
    "webhooks/events",
    "webhooks/deliveries",
    "billing/wallet/batches",
    "billing/wallet/transactions",
]
WALLET_CUSTOMER = "cursor-probe"

FORGED: list[Any] = [
    [True, []],
    [{"a": 1}, 1],
    [None, None],
    ["not-a-time", "not-an-id"],
    [1.5, "zz"],
    [12345678901234567890, 3],
    ["2026-01-01T00:00:00+00:00", True],
]


def _cursor(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("values", FORGED, ids=[json.dumps(v) for v in FORGED])
def test_forged_cursor_is_422(api: Api, acme: TenantFixture, path: str, values: Any) -> None:
    query = {"cursor": _cursor(values)}
    if path.startswith("billing/wallet/"):
        identified = api.post("billing/identify", json={"external_id": WALLET_CUSTOMER},
                              key=acme.key)
        assert identified.status == 200
        query["external_id"] = WALLET_CUSTOMER
    response = api.get(path, key=acme.key, query=query)
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["query", "cursor"]


def test_issued_cursor_still_pages(api: Api, acme: TenantFixture) -> None:
    for i in range(3):
        created = api.post("keys", json={"name": f"page-{i}"}, key=acme.key)
        assert created.status == 201
    first = api.get("keys", key=acme.key, query={"limit": 2}).json
    second = api.get("keys", key=acme.key, query={"limit": 2, "cursor": first["next_cursor"]})
    assert second.status == 200
    ids = [k["id"] for k in first["items"] + second.json["items"]]
    assert len(ids) == len(set(ids)) >= 4


def test_deeply_nested_cursor_is_422(api: Api, acme: TenantFixture) -> None:
    raw = b"[" * 2500 + b"]" * 2500
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = api.get("keys", key=acme.key, query={"cursor": cursor})
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["query", "cursor"]
