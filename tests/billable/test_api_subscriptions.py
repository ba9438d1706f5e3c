"""HTTP tests of subscriptions (`/billing/subscriptions`)."""

from __future__ import annotations

from typing import Any

from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, make_key

Catalog = dict[str, Any]

SUBSCRIPTION_KEYS = {
    "id", "customer_id", "plan", "version", "status", "current_period_start",
    "current_period_end", "trial_end", "cancel_at_period_end", "ended_at", "metadata",
    "created_at",
}


def _plan(api: Api, acme: TenantFixture, key: str = "pro_plan", **extra: Any) -> None:
    body = {
        "key": key, "name": "Pro", "price": "19.00", "currency": "USD", "trial_days": 7,
        "entitlements": [{"type": "allowance", "product": "reports", "amount": 50},
                         {"type": "access", "product": "pro"}],
        **extra,
    }
    assert api.post("billing/plans", json=body, key=acme.key).status == 201


def test_subscribe_then_read_cancel_and_resume(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _plan(api, acme)
    created = api.post(
        "billing/subscriptions", json={"external_id": "sub-1", "plan": "pro_plan"}, key=acme.key
    )
    assert created.status == 201, created.body
    body = created.json
    assert set(body) == SUBSCRIPTION_KEYS
    assert (body["plan"], body["version"], body["status"]) == ("PRO_PLAN", 1, "trialing")
    assert body["trial_end"] == body["current_period_end"]
    # The plan's rights are there at once: the allowance and the access.
    balance = api.get(
        "billing/balance?external_id=sub-1&feature=report_generation", key=acme.key
    ).json
    assert (balance["can_use"], balance["remaining"]) == (True, 50)
    access = api.get(
        "billing/balance?external_id=sub-1&feature=priority_support", key=acme.key
    ).json
    assert access["can_use"] is True
    sub_id = body["id"]
    assert api.get(f"billing/subscriptions/{sub_id}", key=acme.key).json == body
    listed = api.get("billing/subscriptions?external_id=sub-1", key=acme.key).json
    assert [s["id"] for s in listed["items"]] == [sub_id]
    assert api.get("billing/subscriptions?external_id=nobody", key=acme.key).json["items"] == []
    cancelled = api.post(f"billing/subscriptions/{sub_id}/cancel", key=acme.key)
    assert cancelled.status == 200 and cancelled.json["cancel_at_period_end"] is True
    resumed = api.post(f"billing/subscriptions/{sub_id}/resume", key=acme.key)
    assert resumed.status == 200 and resumed.json["cancel_at_period_end"] is False
    assert_problem(api.post(f"billing/subscriptions/{sub_id}/resume", key=acme.key), 409,
                   "subscription_not_active")


def test_subscribe_errors(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _plan(api, acme)

    def post(**body: Any) -> Any:
        return api.post("billing/subscriptions", json={"external_id": "e1", **body},
                        key=acme.key)

    assert_problem(post(plan="missing"), 404, "plan_not_found")
    assert_problem(post(plan="pro_plan", version=5), 404, "plan_version_not_found")
    assert post(plan="pro_plan", trial=False).json["status"] == "active"
    assert_problem(post(plan="pro_plan"), 409, "subscription_exists")
    api.post("billing/plans/pro_plan/versions/1/retire", key=acme.key)
    assert_problem(
        api.post("billing/subscriptions", json={"external_id": "e2", "plan": "pro_plan"},
                 key=acme.key),
        409, "plan_version_retired",
    )
    api.patch("billing/plans/pro_plan", json={"is_active": False}, key=acme.key)
    assert_problem(
        api.post("billing/subscriptions", json={"external_id": "e3", "plan": "pro_plan"},
                 key=acme.key),
        422, "inactive_plan",
    )
    assert_problem(api.get("billing/subscriptions/not-a-uuid", key=acme.key), 404,
                   "subscription_not_found")


def test_subscribe_replays_under_an_idempotency_key(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _plan(api, acme)
    body = {"external_id": "idem", "plan": "pro_plan", "idempotency_key": "sub-once"}
    first = api.post("billing/subscriptions", json=body, key=acme.key)
    again = api.post("billing/subscriptions", json=body, key=acme.key)
    assert (first.status, again.status) == (201, 201) and again.json == first.json
    balance = api.get(
        "billing/balance?external_id=idem&feature=report_generation", key=acme.key
    ).json
    assert balance["remaining"] == 50


def test_scopes(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _plan(api, acme)
    _row, writer = make_key(acme.tenant, name="writer", scopes=["billing:write"])
    assert_problem(
        api.post("billing/subscriptions", json={"external_id": "w", "plan": "pro_plan"},
                 key=writer),
        403, "insufficient_scope",
    )
