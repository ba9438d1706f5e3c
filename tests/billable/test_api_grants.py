"""HTTP tests of grants, adjustments and batch revocation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from billable.models import Grant, LedgerEntry, Offer, Product, QuotaBatch
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]

GRANT_KEYS = {"id", "customer_id", "sku", "kind", "reason", "batches", "metadata",
              "created_at"}
BATCH_KEYS = {"id", "product", "initial", "remaining", "valid_from", "expires_at", "state",
              "source", "created_at"}
ADJUSTMENT_KEYS = {"id", "customer_id", "product", "amount", "batches", "reason"}


def _grant(api: Api, key: str, **body: Any) -> Any:
    return api.post("billing/grants", json={"external_id": "g", **body}, key=key)


def _units(acme: TenantFixture) -> int:
    connection.set_schema(acme.tenant.schema_name)
    return sum(QuotaBatch.objects.values_list("remaining", flat=True))


# --- grants


@pytest.mark.parametrize("kind", ["bonus", "manual", "trial", "referral"])
def test_grant_kinds(api: Api, acme: TenantFixture, catalog: Catalog, kind: str) -> None:
    response = _grant(api, acme.key, sku="Reports_10", kind=kind, reason="support",
                      metadata={"ticket": 5})
    assert response.status == 201, response.body
    body = response.json
    assert set(body) == GRANT_KEYS
    assert body["sku"] == "REPORTS_10" and body["kind"] == kind and body["reason"] == "support"
    uuid.UUID(body["id"])
    uuid.UUID(body["customer_id"])
    [batch] = body["batches"]
    assert set(batch) == BATCH_KEYS
    assert batch["product"] == "REPORTS" and batch["initial"] == batch["remaining"] == 10
    assert batch["state"] == "active" and batch["source"] == kind
    expires = datetime.fromisoformat(batch["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30, seconds=5)
    connection.set_schema(acme.tenant.schema_name)
    assert Grant.objects.get(pk=body["id"]).kind == kind


def test_grant_defaults(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    body = _grant(api, acme.key, sku="reports_5_forever", kind="bonus").json
    assert body["reason"] == "" and body["batches"][0]["expires_at"] is None


def test_grant_expires_at_overrides_for_bonus_and_manual(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    when = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    for kind in ("bonus", "manual"):
        body = _grant(api, acme.key, sku="reports_10", kind=kind,
                      expires_at=when.isoformat()).json
        assert datetime.fromisoformat(body["batches"][0]["expires_at"]) == when


def test_grant_period_and_unlimited(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    period = _grant(api, acme.key, sku="pro_month", kind="manual").json["batches"][0]
    assert period["product"] == "PRO" and period["initial"] == period["remaining"] == 1
    assert period["expires_at"] is not None
    unlimited = _grant(api, acme.key, sku="unl_forever", kind="manual").json["batches"][0]
    assert unlimited["product"] == "UNL" and unlimited["expires_at"] is None


def test_trial_once_per_identity(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    first = _grant(api, acme.key, sku="reports_5_forever", kind="trial",
                   identities={"email": "Ann+x@Example.com", "phone": 5551234})
    assert first.status == 201, first.body
    again = _grant(api, acme.key, sku="reports_10", kind="trial")
    assert_problem(again, 409, "trial_already_used")
    other_customer = api.post(
        "billing/grants",
        json={"external_id": "g2", "sku": "reports_10", "kind": "trial",
              "identities": {"email": "ann@example.com"}},
        key=acme.key,
    )
    assert_problem(other_customer, 409, "trial_already_used")
    by_phone = api.post(
        "billing/grants",
        json={"external_id": "g3", "sku": "reports_10", "kind": "trial",
              "identities": {"phone": "5551234"}},
        key=acme.key,
    )
    assert_problem(by_phone, 409, "trial_already_used")
    fresh = api.post("billing/grants", json={"external_id": "g4", "sku": "reports_10",
                                             "kind": "trial"}, key=acme.key)
    assert fresh.status == 201
    assert _units(acme) == 15
    # A bonus is not a trial.
    assert _grant(api, acme.key, sku="reports_10", kind="bonus").status == 201


def test_grant_business_errors(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    assert_problem(_grant(api, acme.key, sku="nope", kind="bonus"), 422, "unknown_sku")
    api.patch("billing/offers/reports_10", json={"is_active": False}, key=acme.key)
    assert_problem(_grant(api, acme.key, sku="reports_10", kind="bonus"), 422, "inactive_offer")
    api.patch("billing/products/pro", json={"is_active": False}, key=acme.key)
    assert_problem(_grant(api, acme.key, sku="pro_month", kind="manual"), 422, "inactive_product")
    assert _units(acme) == 0
    connection.set_schema(acme.tenant.schema_name)
    assert Grant.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"sku": "reports_10"},
        {"sku": "reports_10", "kind": "gift"},
        {"kind": "bonus"},
        {"sku": "reports_10", "kind": "bonus", "expires_at": "tomorrow"},
        {"sku": "reports_10", "kind": "trial", "identities": {"email": ["a"]}},
        {"sku": "reports_10", "kind": "bonus", "reason": "x" * 1001},
    ],
)
def test_grant_validation(
    api: Api, acme: TenantFixture, catalog: Catalog, body: dict[str, Any]
) -> None:
    assert assert_problem(_grant(api, acme.key, **body), 422, "validation_error")["errors"]
    assert _units(acme) == 0


# --- adjustments


def test_adjustment_credit(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    response = api.post("billing/adjustments", json={"external_id": "g", "product": "reports",
                                                     "amount": 7, "reason": "goodwill"},
                        key=acme.key)
    assert response.status == 201, response.body
    body = response.json
    assert set(body) == ADJUSTMENT_KEYS
    assert body["product"] == "REPORTS" and body["amount"] == 7 and body["reason"] == "goodwill"
    [batch] = body["batches"]
    assert batch["source"] == "adjustment" and batch["initial"] == 7
    assert batch["expires_at"] is None
    assert _units(acme) == 7


def test_adjustment_debit_soonest_expiry_first(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    forever = _grant(api, acme.key, sku="reports_5_forever", kind="bonus").json
    dated = _grant(api, acme.key, sku="reports_10", kind="bonus").json
    response = api.post("billing/adjustments", json={"external_id": "g", "product": "REPORTS",
                                                     "amount": -12, "reason": "chargeback"},
                        key=acme.key)
    assert response.status == 201, response.body
    body = response.json
    assert body["amount"] == -12
    remaining = {b["id"]: b["remaining"] for b in body["batches"]}
    assert remaining == {dated["batches"][0]["id"]: 0, forever["batches"][0]["id"]: 3}
    assert _units(acme) == 3
    too_much = api.post("billing/adjustments", json={"external_id": "g", "product": "reports",
                                                     "amount": -4, "reason": "x"}, key=acme.key)
    assert assert_problem(too_much, 402, "insufficient_quota")["remaining"] == 3
    assert _units(acme) == 3


def test_adjustment_errors(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    base = {"external_id": "g", "product": "reports", "amount": 1, "reason": "r"}
    for bad in ({"amount": 0}, {"reason": ""}, {"reason": None}, {"amount": "x"}):
        body = {k: v for k, v in {**base, **bad}.items() if v is not None}
        response = api.post("billing/adjustments", json=body, key=acme.key)
        assert assert_problem(response, 422, "validation_error")["errors"], bad
    unknown = api.post("billing/adjustments", json={**base, "product": "nope"}, key=acme.key)
    assert_problem(unknown, 422, "unknown_product")
    period = api.post("billing/adjustments", json={**base, "product": "pro"}, key=acme.key)
    assert period.status == 422
    assert _units(acme) == 0


# --- revoke


def test_batch_revoke(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    batch_id = _grant(api, acme.key, sku="reports_10", kind="bonus").json["batches"][0]["id"]
    api.post("billing/quota/consume", json={"external_id": "g", "feature": "reports",
                                            "amount": 4}, key=acme.key)
    response = api.post(f"billing/batches/{batch_id}/revoke", json={"reason": "fraud"},
                        key=acme.key)
    assert response.status == 200, response.body
    body = response.json
    assert set(body) == BATCH_KEYS
    assert body["id"] == batch_id and body["state"] == "revoked" and body["remaining"] == 0
    assert body["product"] == "REPORTS"
    connection.set_schema(acme.tenant.schema_name)
    debit = LedgerEntry.objects.filter(batch_id=batch_id, action_type="revoke").get()
    assert debit.direction == "debit" and debit.amount == 6
    again = api.post(f"billing/batches/{batch_id}/revoke", json={}, key=acme.key)
    assert_problem(again, 409, "batch_not_active")
    connection.set_schema(acme.tenant.schema_name)
    assert LedgerEntry.objects.filter(batch_id=batch_id).count() == 3


def test_batch_revoke_without_body(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    batch_id = _grant(api, acme.key, sku="reports_10", kind="bonus").json["batches"][0]["id"]
    response = api.client.generic("POST", f"/api/v1/billing/batches/{batch_id}/revoke",
                                  HTTP_X_API_KEY=acme.key)
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "revoked"


@pytest.mark.parametrize("bad", [str(uuid.uuid4()), "not-a-uuid", "1"])
def test_batch_revoke_unknown_or_malformed(
    api: Api, acme: TenantFixture, catalog: Catalog, bad: str
) -> None:
    response = api.post(f"billing/batches/{bad}/revoke", json={}, key=acme.key)
    assert_problem(response, 404, "batch_not_found")


@pytest.mark.parametrize(
    "identities",
    [
        {f"email{i}": f"a{i}@x.io" for i in range(21)},
        {"email": "a" * 251 + "@x.io"},
        {"": "a@x.io"},
    ],
)
def test_trial_identities_are_bounded(
    api: Api, acme: TenantFixture, catalog: Catalog, identities: dict[str, str]
) -> None:
    response = _grant(api, acme.key, sku="reports_10", kind="trial", identities=identities)

    assert_problem(response, 422, "validation_error")
    assert _units(acme) == 0


def test_trial_refused_for_a_phone_spelled_differently(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    first = _grant(api, acme.key, sku="reports_10", kind="trial",
                   identities={"phone": "+1 (555) 010-0100"})
    assert first.status == 201, first.body

    again = api.post("billing/grants", json={
        "external_id": "g-other", "sku": "reports_10", "kind": "trial",
        "identities": {"tel": "+1.555.010.0100"}}, key=acme.key)

    assert_problem(again, 409, "trial_already_used")
    assert _units(acme) == 10


def test_a_grant_answers_its_metadata(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    made = api.post("billing/grants", json={"external_id": "gm", "sku": "reports_10",
                                            "kind": "bonus", "metadata": {"campaign": "x1"}},
                    key=acme.key)
    assert made.status == 201 and made.json["metadata"] == {"campaign": "x1"}, made.body
