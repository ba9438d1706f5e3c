"""HTTP tests of subscriptions (`/billing/subscriptions`)."""

from __future__ import annotations

from typing import Any

from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, make_key

Catalog = dict[str, Any]

SUBSCRIPTION_KEYS = {
    "id", "customer_id", "plan", "version", "status", "current_period_start",
    "current_period_end", "trial_end", "cancel_at_period_end", "ended_at", "metadata",
    "created_at", "paid_through", "renewal_order_id", "scheduled_change",
    "paused_at",
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


def test_renewal_order_confirm_and_refund(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _plan(api, acme)
    sub = api.post("billing/subscriptions", json={"external_id": "payer", "plan": "pro_plan"},
                   key=acme.key).json
    assert (sub["status"], sub["paid_through"], sub["renewal_order_id"]) == (
        "trialing", sub["trial_end"], None
    )
    made = api.post(f"billing/subscriptions/{sub['id']}/renewal-order", json={}, key=acme.key)
    assert made.status == 201, made.body
    order = made.json
    assert (order["status"], order["total"], order["currency"]) == ("pending", "19.00", "USD")
    assert (order["subscription_id"], order["period_number"]) == (sub["id"], 1)
    assert [item["sku"] for item in order["items"]] == ["PRO_PLAN"]
    again = api.post(f"billing/subscriptions/{sub['id']}/renewal-order", json={}, key=acme.key)
    assert (again.status, again.json["id"]) == (200, order["id"])
    assert api.get(f"billing/subscriptions/{sub['id']}", key=acme.key).json[
        "renewal_order_id"] == order["id"]

    paid = api.post(f"billing/orders/{order['id']}/confirm", json={"payment_id": "pay-r1"},
                    key=acme.key)
    assert paid.status == 200 and paid.json["status"] == "paid", paid.body
    after = api.get(f"billing/subscriptions/{sub['id']}", key=acme.key).json
    assert after["renewal_order_id"] is None and after["paid_through"] > sub["paid_through"]
    assert_problem(
        api.post(f"billing/subscriptions/{sub['id']}/renewal-order", json={}, key=acme.key),
        409, "renewal_not_needed",
    )
    refunded = api.post(f"billing/orders/{order['id']}/refund", json={}, key=acme.key)
    assert refunded.status == 200, refunded.body
    back = api.get(f"billing/subscriptions/{sub['id']}", key=acme.key).json
    assert (back["status"], back["paid_through"]) == ("trialing", sub["paid_through"])


def test_renewal_order_errors(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _plan(api, acme, key="free_plan", price="0", trial_days=0)
    free = api.post("billing/subscriptions", json={"external_id": "f", "plan": "free_plan"},
                    key=acme.key).json
    assert_problem(
        api.post(f"billing/subscriptions/{free['id']}/renewal-order", json={}, key=acme.key),
        409, "renewal_not_needed",
    )
    _plan(api, acme)
    sub = api.post("billing/subscriptions", json={"external_id": "c", "plan": "pro_plan"},
                   key=acme.key).json
    api.post(f"billing/subscriptions/{sub['id']}/cancel", json={}, key=acme.key)
    assert_problem(
        api.post(f"billing/subscriptions/{sub['id']}/renewal-order", json={}, key=acme.key),
        409, "subscription_not_active",
    )
    assert_problem(
        api.post("billing/subscriptions/nope/renewal-order", json={}, key=acme.key),
        404, "subscription_not_found",
    )


def test_a_second_plan_trial_is_refused(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _plan(api, acme)
    _plan(api, acme, key="other_plan")
    first = api.post("billing/subscriptions", json={
        "external_id": "tg-1", "provider": "telegram", "plan": "pro_plan",
        "identities": {"email": "Someone@Example.com"}}, key=acme.key)
    assert first.status == 201 and first.json["status"] == "trialing", first.body
    again = api.post("billing/subscriptions", json={
        "external_id": "other", "plan": "other_plan",
        "identities": {"email": "someone@example.com"}}, key=acme.key)
    assert_problem(again, 409, "trial_already_used")
    paid = api.post("billing/subscriptions", json={
        "external_id": "other", "plan": "other_plan", "trial": False}, key=acme.key)
    assert paid.status == 201 and paid.json["status"] == "active", paid.body
    too_many = api.post("billing/subscriptions", json={
        "external_id": "x", "plan": "other_plan",
        "identities": {f"k{i}": "v" for i in range(21)}}, key=acme.key)
    assert_problem(too_many, 422, "validation_error")


def test_change_plan_now_and_at_period_end(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _plan(api, acme, key="basic", price="10.00", trial_days=0)
    _plan(api, acme, key="premium", price="30.00", trial_days=0, upgrade_allowance="full")
    sub = api.post("billing/subscriptions", json={"external_id": "chg", "plan": "basic"},
                   key=acme.key).json
    up = api.post(f"billing/subscriptions/{sub['id']}/change", json={"plan": "premium"},
                  key=acme.key)
    assert up.status == 200, up.body
    assert (up.json["at"], up.json["currency"]) == ("now", "USD")
    assert up.json["amount_due"] is not None and 0 < float(up.json["amount_due"]) <= 20
    assert (up.json["subscription"]["plan"], up.json["subscription"]["scheduled_change"]) == (
        "PREMIUM", None
    )
    down = api.post(f"billing/subscriptions/{sub['id']}/change", json={"plan": "basic"},
                    key=acme.key)
    assert down.status == 200, down.body
    assert (down.json["at"], down.json["amount_due"]) == ("period_end", None)
    scheduled = down.json["subscription"]["scheduled_change"]
    assert (scheduled["plan"], scheduled["version"]) == ("BASIC", 1)
    assert scheduled["at"] == down.json["subscription"]["current_period_end"]
    assert_problem(
        api.post(f"billing/subscriptions/{sub['id']}/change", json={"plan": "nope"},
                 key=acme.key),
        404, "plan_not_found",
    )
    assert_problem(
        api.post(f"billing/subscriptions/{sub['id']}/change",
                 json={"plan": "basic", "at": "later"}, key=acme.key),
        422, "validation_error",
    )
    plan = api.get("billing/plans/premium", key=acme.key).json
    assert plan["upgrade_allowance"] == "full"


def test_pause_and_unpause(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _plan(api, acme, trial_days=0)
    sub = api.post("billing/subscriptions", json={"external_id": "pz", "plan": "pro_plan"},
                   key=acme.key).json
    paused = api.post(f"billing/subscriptions/{sub['id']}/pause", json={}, key=acme.key)
    assert paused.status == 200, paused.body
    assert paused.json["status"] == "paused" and paused.json["paused_at"] is not None
    balance = api.get("billing/balance", key=acme.key,
                      query={"external_id": "pz", "feature": "reports"}).json
    assert (balance["can_use"], balance["remaining"]) == (False, 0)
    assert_problem(api.post(f"billing/subscriptions/{sub['id']}/pause", json={}, key=acme.key),
                   409, "subscription_not_active")
    batches = api.get("billing/wallet/batches", key=acme.key,
                      query={"external_id": "pz"}).json["items"]
    assert batches == []  # the usable batches: a paused one is not
    back = api.post(f"billing/subscriptions/{sub['id']}/unpause", json={}, key=acme.key)
    assert back.status == 200, back.body
    assert (back.json["status"], back.json["paused_at"]) == ("active", None)
    assert back.json["current_period_end"] >= sub["current_period_end"]
    balance = api.get("billing/balance", key=acme.key,
                      query={"external_id": "pz", "feature": "reports"}).json
    assert (balance["can_use"], balance["remaining"]) == (True, 50)
    assert_problem(api.post(f"billing/subscriptions/{sub['id']}/unpause", json={},
                            key=acme.key), 409, "subscription_not_active")
