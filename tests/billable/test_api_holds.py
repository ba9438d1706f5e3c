"""HTTP tests of holds: `POST /billing/holds`, `/holds/{id}/commit`, `/holds/{id}/release`."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from billable.models import Hold, LedgerEntry, Offer, Product, QuotaBatch, Usage
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]

HOLD_KEYS = {"id", "customer_id", "feature", "amount", "credits", "status", "committed_amount",
             "expires_at", "metadata", "created_at"}


def _bare_post(client: Client, path: str, key: str) -> Any:
    """POST with no body and no content type."""
    return client.generic("POST", "/api/v1/" + path, HTTP_X_API_KEY=key)


def _setup(api: Api, key: str, sku: str = "reports_10") -> dict[str, Any]:
    response = api.post("billing/grants", json={"external_id": "h", "sku": sku,
                                                "kind": "manual"}, key=key)
    assert response.status == 201, response.body
    return response.json  # type: ignore[no-any-return]


def _hold(api: Api, key: str, amount: int = 4, **extra: Any) -> dict[str, Any]:
    response = api.post("billing/holds", json={"external_id": "h", "feature": "reports",
                                               "amount": amount, **extra}, key=key)
    assert response.status == 201, response.body
    return response.json  # type: ignore[no-any-return]


def _remaining(api: Api, key: str) -> int:
    return api.get("billing/balance", key=key,  # type: ignore[no-any-return]
                   query={"external_id": "h", "feature": "reports"}).json["remaining"]


def test_hold_create_shape_and_reservation(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    grant = _setup(api, acme.key)
    before = datetime.fromisoformat(api.get("billing/products/reports", key=acme.key)
                                    .json["created_at"])
    hold = _hold(api, acme.key, 4, ttl_seconds=120)
    assert set(hold) == HOLD_KEYS
    assert hold["customer_id"] == grant["customer_id"] and hold["amount"] == 4
    assert hold["status"] == "active" and hold["committed_amount"] is None
    created = datetime.fromisoformat(hold["created_at"])
    expires = datetime.fromisoformat(hold["expires_at"])
    assert created >= before
    assert timedelta(seconds=119) <= expires - created <= timedelta(seconds=121)
    assert _remaining(api, acme.key) == 6
    connection.set_schema(acme.tenant.schema_name)
    entry = LedgerEntry.objects.get(direction="debit")
    assert entry.action_type == "hold" and entry.amount == 4


def test_hold_default_ttl(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _setup(api, acme.key)
    hold = _hold(api, acme.key, 1)
    delta = datetime.fromisoformat(hold["expires_at"]) - datetime.fromisoformat(
        hold["created_at"]
    )
    assert timedelta(seconds=899) <= delta <= timedelta(seconds=901)


def test_hold_402s(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _setup(api, acme.key)
    too_many = api.post("billing/holds", json={"external_id": "h", "feature": "reports",
                                               "amount": 11}, key=acme.key)
    assert assert_problem(too_many, 402, "insufficient_quota")["remaining"] == 10
    nothing = api.post("billing/holds", json={"external_id": "h", "feature": "exports",
                                              "amount": 1}, key=acme.key)
    assert assert_problem(nothing, 402, "quota_exhausted")["remaining"] == 0
    assert _remaining(api, acme.key) == 10
    connection.set_schema(acme.tenant.schema_name)
    assert Hold.objects.count() == 0


@pytest.mark.parametrize(
    "extra",
    [{"amount": 0}, {"amount": None}, {"ttl_seconds": 59}, {"ttl_seconds": 86_401},
     {"feature": None}, {"feature": "no spaces"}],
)
def test_hold_validation(
    api: Api, acme: TenantFixture, catalog: Catalog, extra: dict[str, Any]
) -> None:
    _setup(api, acme.key)
    body = {"external_id": "h", "feature": "reports", "amount": 1, **extra}
    body = {k: v for k, v in body.items() if v is not None}
    response = api.post("billing/holds", json=body, key=acme.key)
    assert assert_problem(response, 422, "validation_error")["errors"]
    assert _remaining(api, acme.key) == 10


def test_hold_with_period_access_reserves_nothing(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _setup(api, acme.key, "pro_month")
    response = api.post("billing/holds", json={"external_id": "h", "feature": "PRIORITY_SUPPORT",
                                               "amount": 3}, key=acme.key)
    assert response.status == 201 and response.json["status"] == "active"
    connection.set_schema(acme.tenant.schema_name)
    assert not LedgerEntry.objects.filter(direction="debit").exists()


def test_hold_commit_part_returns_the_rest(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _setup(api, acme.key)
    hold = _hold(api, acme.key, 4)
    response = api.post(f"billing/holds/{hold['id']}/commit", json={"amount": 3}, key=acme.key)
    assert response.status == 200, response.body
    assert set(response.json) == HOLD_KEYS
    assert response.json["status"] == "committed" and response.json["committed_amount"] == 3
    assert _remaining(api, acme.key) == 7
    again = api.post(f"billing/holds/{hold['id']}/commit", json={"amount": 3}, key=acme.key)
    assert again.status == 200 and again.json == response.json
    assert _remaining(api, acme.key) == 7
    release = api.post(f"billing/holds/{hold['id']}/release", json={}, key=acme.key)
    assert_problem(release, 409, "hold_not_active")
    connection.set_schema(acme.tenant.schema_name)
    assert Usage.objects.get().amount == 3


def test_hold_commit_without_body_keeps_everything(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _setup(api, acme.key)
    hold = _hold(api, acme.key, 4)
    response = _bare_post(api.client, f"billing/holds/{hold['id']}/commit", acme.key)
    assert response.status_code == 200, response.content
    assert response.json()["committed_amount"] == 4
    assert _remaining(api, acme.key) == 6


def test_hold_commit_zero_returns_everything(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _setup(api, acme.key)
    hold = _hold(api, acme.key, 4)
    response = api.post(f"billing/holds/{hold['id']}/commit", json={"amount": 0}, key=acme.key)
    assert response.status == 200 and response.json["committed_amount"] == 0
    assert _remaining(api, acme.key) == 10


def test_hold_commit_more_than_held_is_refused(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _setup(api, acme.key)
    hold = _hold(api, acme.key, 4)
    response = api.post(f"billing/holds/{hold['id']}/commit", json={"amount": 5}, key=acme.key)
    assert assert_problem(response, 422, "validation_error")["errors"]
    negative = api.post(f"billing/holds/{hold['id']}/commit", json={"amount": -1}, key=acme.key)
    assert_problem(negative, 422, "validation_error")
    assert _remaining(api, acme.key) == 6
    connection.set_schema(acme.tenant.schema_name)
    assert Hold.objects.get().status == "active"


def test_hold_release(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _setup(api, acme.key)
    hold = _hold(api, acme.key, 4)
    response = _bare_post(api.client, f"billing/holds/{hold['id']}/release", acme.key)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "released" and body["id"] == hold["id"]
    assert _remaining(api, acme.key) == 10
    again = api.post(f"billing/holds/{hold['id']}/release", json={}, key=acme.key)
    assert again.status == 200 and again.json == body
    assert _remaining(api, acme.key) == 10
    commit = api.post(f"billing/holds/{hold['id']}/commit", json={}, key=acme.key)
    assert_problem(commit, 409, "hold_not_active")


@pytest.mark.parametrize("bad", [str(uuid.uuid4()), "nope", "0"])
def test_hold_unknown_or_malformed_id(
    api: Api, acme: TenantFixture, catalog: Catalog, bad: str
) -> None:
    for op in ("commit", "release"):
        assert_problem(api.post(f"billing/holds/{bad}/{op}", json={}, key=acme.key), 404,
                       "hold_not_found")


def test_hold_batches_keep_units_reserved(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _setup(api, acme.key)
    _hold(api, acme.key, 10)
    consume = api.post("billing/quota/consume", json={"external_id": "h", "feature": "reports"},
                       key=acme.key)
    assert assert_problem(consume, 402, "quota_exhausted")["remaining"] == 0
    connection.set_schema(acme.tenant.schema_name)
    assert QuotaBatch.objects.get().remaining == 0


def test_a_hold_answers_its_metadata(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    api.post("billing/grants", json={"external_id": "hm", "sku": "reports_10", "kind": "bonus"},
             key=acme.key)
    made = api.post("billing/holds", json={"external_id": "hm", "feature": "reports",
                                           "amount": 2, "metadata": {"job": "j-7"}},
                    key=acme.key)
    assert made.status == 201 and made.json["metadata"] == {"job": "j-7"}, made.body
    committed = api.post(f"billing/holds/{made.json['id']}/commit", json={"amount": 1},
                         key=acme.key)
    assert committed.json["metadata"] == {"job": "j-7"}
