"""HTTP tests of plans and their versions (`/billing/plans`)."""

from __future__ import annotations

from typing import Any

from django.db import connection

from billable.models import PlanEntitlement, PlanVersion
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, make_key

Catalog = dict[str, Any]

PLAN_KEYS = {
    "key", "name", "description", "is_active", "metadata", "version", "interval_unit",
    "interval_count", "price", "currency", "trial_days", "entitlements", "retired_at",
    "created_at", "updated_at", "upgrade_allowance",
}


def _pro(**extra: Any) -> dict[str, Any]:
    return {
        "key": "pro_plan",
        "name": "Pro",
        "price": "19.00",
        "currency": "usd",
        "entitlements": [
            {"type": "allowance", "product": "reports", "amount": 100},
            {"type": "access", "product": "pro"},
            {"type": "value", "name": "Max_Projects", "value": 5},
        ],
        **extra,
    }


def test_create_with_defaults_and_shape(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    response = api.post("billing/plans", json=_pro(), key=acme.key)
    assert response.status == 201, response.body
    body = response.json
    assert set(body) == PLAN_KEYS
    assert body["key"] == "PRO_PLAN" and body["version"] == 1
    assert (body["interval_unit"], body["interval_count"]) == ("months", 1)
    assert (body["price"], body["currency"], body["trial_days"]) == ("19.00", "USD", 0)
    allowance, access, value = body["entitlements"]
    # The reset period defaults to the billing interval; no rollover unless asked.
    assert allowance == {
        "type": "allowance", "product": "REPORTS", "amount": 100, "reset_unit": "months",
        "reset_count": 1, "rollover_cap": 0, "name": None, "value": None,
    }
    assert access == {
        "type": "access", "product": "PRO", "amount": None, "reset_unit": None,
        "reset_count": None, "rollover_cap": None, "name": None, "value": None,
    }
    assert (value["type"], value["name"], value["value"]) == ("value", "max_projects", 5)
    assert api.get("billing/plans/pro_plan", key=acme.key).json == body


def test_annual_plan_resetting_monthly(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    body = _pro(
        key="annual", interval_unit="years",
        entitlements=[{"type": "allowance", "product": "reports", "amount": 100,
                       "reset_unit": "months", "rollover_cap": 50}],
    )
    created = api.post("billing/plans", json=body, key=acme.key).json
    (allowance,) = created["entitlements"]
    assert (created["interval_unit"], created["interval_count"]) == ("years", 1)
    assert (allowance["reset_unit"], allowance["reset_count"]) == ("months", 1)
    assert allowance["rollover_cap"] == 50


def test_new_terms_make_a_new_version_old_ones_stay(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    api.post("billing/plans", json=_pro(), key=acme.key)
    renamed = api.patch("billing/plans/pro_plan", json={"name": "Pro+"}, key=acme.key).json
    assert (renamed["name"], renamed["version"]) == ("Pro+", 1)
    # The same terms in another spelling are not new terms.
    same = api.patch(
        "billing/plans/pro_plan",
        json={"price": 19, "currency": "USD", "entitlements": _pro()["entitlements"]},
        key=acme.key,
    ).json
    assert same["version"] == 1
    changed = api.patch(
        "billing/plans/pro_plan",
        json={"entitlements": [{"type": "allowance", "product": "REPORTS", "amount": 200}]},
        key=acme.key,
    )
    assert changed.status == 200, changed.body
    assert changed.json["version"] == 2 and changed.json["price"] == "19.00"
    assert [e["amount"] for e in changed.json["entitlements"]] == [200]
    versions = api.get("billing/plans/pro_plan/versions", key=acme.key).json["items"]
    assert [(v["version"], v["is_current"]) for v in versions] == [(1, False), (2, True)]
    assert len(versions[0]["entitlements"]) == 3
    one = api.get("billing/plans/pro_plan/versions/1", key=acme.key).json
    assert one == versions[0]
    connection.set_schema(acme.tenant.schema_name)
    assert PlanVersion.objects.filter(plan__key="PRO_PLAN").count() == 2


def test_retire_a_version(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    api.post("billing/plans", json=_pro(), key=acme.key)
    retired = api.post("billing/plans/pro_plan/versions/1/retire", json={}, key=acme.key)
    assert retired.status == 200, retired.body
    assert retired.json["retired_at"] is not None and retired.json["is_current"] is True
    again = api.post("billing/plans/pro_plan/versions/1/retire", json={}, key=acme.key).json
    assert again["retired_at"] == retired.json["retired_at"]
    assert api.get("billing/plans/pro_plan", key=acme.key).json["retired_at"] is not None
    assert_problem(
        api.post("billing/plans/pro_plan/versions/9/retire", json={}, key=acme.key),
        404, "plan_version_not_found",
    )


def test_list_pages_plans(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    for index in range(3):
        api.post("billing/plans", json=_pro(key=f"p{index}"), key=acme.key)
    first = api.get("billing/plans?limit=2", key=acme.key).json
    rest = api.get(f"billing/plans?limit=2&cursor={first['next_cursor']}", key=acme.key).json
    # Newest first, as every list of the API.
    assert [p["key"] for p in first["items"] + rest["items"]] == ["P2", "P1", "P0"]
    assert rest["next_cursor"] is None


def test_errors(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    def post(**extra: Any) -> Any:
        return api.post("billing/plans", json=_pro(**extra), key=acme.key)

    assert_problem(post(key="reports"), 409, "key_taken")  # a product's key
    assert_problem(post(key="reports_10"), 409, "key_taken")  # an offer's SKU
    assert_problem(
        post(entitlements=[{"type": "allowance", "product": "nope", "amount": 1}]),
        422, "unknown_product",
    )
    assert_problem(
        post(entitlements=[{"type": "allowance", "product": "pro", "amount": 1}]),
        422, "validation_error",
    )
    assert_problem(post(entitlements=[{"type": "access", "product": "reports"}]), 422,
                   "validation_error")
    assert_problem(
        post(entitlements=[{"type": "access", "product": "pro"},
                           {"type": "access", "product": "PRO"}]),
        422, "validation_error",
    )
    assert_problem(
        post(entitlements=[{"type": "allowance", "product": "reports", "amount": 0}]),
        422, "validation_error",
    )
    assert_problem(post(entitlements=[{"type": "bonus", "product": "reports"}]), 422,
                   "validation_error")
    assert_problem(post(interval_unit="years", interval_count=101), 422, "validation_error")
    assert_problem(post(currency="NOPE"), 422, "invalid_currency")
    assert_problem(post(price="1.234", currency="USD"), 422, "validation_error")
    assert_problem(api.get("billing/plans/missing", key=acme.key), 404, "plan_not_found")
    assert_problem(api.get("billing/plans/bad key!", key=acme.key), 404, "plan_not_found")
    # Nothing was written by the refused requests.
    connection.set_schema(acme.tenant.schema_name)
    assert not PlanEntitlement.objects.exists()
    first = api.post("billing/plans", json=_pro(), key=acme.key)
    assert first.status == 201
    assert_problem(post(), 409, "key_taken")


def test_a_product_in_a_plan_keeps_its_type(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    api.post("billing/plans", json=_pro(), key=acme.key)
    assert_problem(
        api.patch("billing/products/reports", json={"product_type": "period"}, key=acme.key),
        409, "product_in_use",
    )


def test_reads_need_read_and_writes_need_admin(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    _row, reader = make_key(acme.tenant, name="reader", scopes=["billing:read"])
    assert api.get("billing/plans", key=reader).status == 200
    assert_problem(api.post("billing/plans", json=_pro(), key=reader), 403,
                   "insufficient_scope")


def test_create_replays_under_an_idempotency_key(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    headers = {"Idempotency-Key": "plan-create-1"}
    first = api.post("billing/plans", json=_pro(), key=acme.key, headers=headers)
    again = api.post("billing/plans", json=_pro(), key=acme.key, headers=headers)
    assert (first.status, again.status) == (201, 201)
    assert again.json == first.json
    connection.set_schema(acme.tenant.schema_name)
    assert PlanVersion.objects.count() == 1


def test_upgrade_allowance_changes_in_place(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    body = {"key": "ua", "name": "ua", "price": "1", "currency": "USD",
            "entitlements": [{"type": "allowance", "product": "reports", "amount": 3}]}
    created = api.post("billing/plans", json=body, key=acme.key)
    assert created.status == 201 and created.json["upgrade_allowance"] == "prorated"
    patched = api.patch("billing/plans/ua", json={"upgrade_allowance": "full"}, key=acme.key)
    assert patched.status == 200, patched.body
    assert (patched.json["upgrade_allowance"], patched.json["version"]) == ("full", 1)
    assert_problem(api.patch("billing/plans/ua", json={"upgrade_allowance": "half"},
                             key=acme.key), 422, "validation_error")
