"""Scopes of every billing endpoint, and tenant isolation of ids, keys and lists."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from billable.models import Offer, Product
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, make_key

Catalog = dict[str, Product | Offer]

ALL_SCOPES = ("billing:read", "billing:write", "billing:grant", "admin")
SOME_ID = "0b7d4c1e-3f7a-4c59-9a7d-1c2e3f4a5b6c"
CUSTOMER = {"external_id": "s"}

# (method, path, json body or query, scope it needs)
ENDPOINTS: list[tuple[str, str, dict[str, Any], str]] = [
    ("GET", "billing/balance", {**CUSTOMER, "feature": "reports"}, "billing:read"),
    ("GET", "billing/customers", {}, "billing:read"),
    ("GET", f"billing/customers/{SOME_ID}", {}, "billing:read"),
    ("GET", "billing/wallet", CUSTOMER, "billing:read"),
    ("GET", "billing/wallet/batches", CUSTOMER, "billing:read"),
    ("GET", "billing/wallet/transactions", CUSTOMER, "billing:read"),
    ("GET", "billing/products", {}, "billing:read"),
    ("GET", "billing/products/reports", {}, "billing:read"),
    ("GET", "billing/offers", {}, "billing:read"),
    ("GET", "billing/offers/reports_10", {}, "billing:read"),
    ("GET", "billing/catalog", {}, "billing:read"),
    ("POST", "billing/quota/consume", {**CUSTOMER, "feature": "reports"}, "billing:write"),
    ("POST", "billing/holds", {**CUSTOMER, "feature": "reports", "amount": 1}, "billing:write"),
    ("POST", f"billing/holds/{SOME_ID}/commit", {}, "billing:write"),
    ("POST", f"billing/holds/{SOME_ID}/release", {}, "billing:write"),
    ("POST", "billing/identify", CUSTOMER, "billing:write"),
    ("POST", "billing/grants", {**CUSTOMER, "sku": "reports_10", "kind": "bonus"},
     "billing:grant"),
    ("POST", "billing/adjustments", {**CUSTOMER, "product": "reports", "amount": 1,
                                     "reason": "r"}, "billing:grant"),
    ("POST", f"billing/batches/{SOME_ID}/revoke", {}, "billing:grant"),
    ("POST", "billing/products", {"key": "new_p", "name": "N", "product_type": "quantity"},
     "admin"),
    ("PATCH", "billing/products/reports", {"name": "R"}, "admin"),
    ("POST", "billing/offers", {"sku": "new_o", "name": "N", "price": "1", "currency": "USD",
                                "items": [{"product": "reports"}]}, "admin"),
    ("PATCH", "billing/offers/reports_10", {"name": "R"}, "admin"),
    ("DELETE", f"billing/customers/{SOME_ID}", {}, "admin"),
    ("POST", "billing/customers/merge", {"target_customer_id": SOME_ID,
                                         "source_customer_id": SOME_ID}, "billing:grant"),
    ("POST", "billing/orders", {**CUSTOMER, "items": [{"sku": "reports_10", "quantity": 1}]},
     "billing:write"),
    ("GET", "billing/orders", CUSTOMER, "billing:read"),
    ("GET", f"billing/orders/{SOME_ID}", {}, "billing:read"),
    ("POST", f"billing/orders/{SOME_ID}/confirm", {}, "billing:grant"),
    ("POST", f"billing/orders/{SOME_ID}/cancel", {}, "billing:write"),
    ("POST", f"billing/orders/{SOME_ID}/refund", {}, "billing:grant"),
    ("POST", "billing/exchange", {**CUSTOMER, "sku": "reports_10"}, "billing:grant"),
    ("POST", "billing/referrals", {"referrer": {"external_id": "r1"},
                                   "referee": {"external_id": "r2"}}, "billing:write"),
    ("GET", "billing/referrals/stats", CUSTOMER, "billing:read"),
    ("GET", "settings", {}, "admin"),
    ("PATCH", "settings", {"low_balance_threshold": 1}, "admin"),
]


def _call(api: Api, method: str, path: str, data: dict[str, Any], key: str) -> Any:
    if method == "GET":
        return api.get(path, key=key, query=data)
    if method == "DELETE":
        return api.delete(path, key=key)
    return api.request(method, path, key=key, json_body=data)


@pytest.mark.parametrize(("method", "path", "data", "scope"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _d, _s in ENDPOINTS])
def test_endpoint_refuses_key_without_its_scope(
    api: Api, acme: TenantFixture, catalog: Catalog,
    method: str, path: str, data: dict[str, Any], scope: str,
) -> None:
    _row, lacking = make_key(acme.tenant, scopes=[s for s in ALL_SCOPES if s != scope])
    refused = _call(api, method, path, data, lacking)
    body = assert_problem(refused, 403, "insufficient_scope")
    assert body.get("required_scope", scope) == scope
    _row, only = make_key(acme.tenant, scopes=[scope])
    allowed = _call(api, method, path, data, only)
    assert allowed.status not in (401, 403), (allowed.status, allowed.body)


def test_refused_write_changes_nothing(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    _row, reader = make_key(acme.tenant, scopes=["billing:read"])
    api.post("billing/grants", json={**CUSTOMER, "sku": "reports_10", "kind": "bonus"},
             key=reader)
    api.post("billing/products", json={"key": "zz", "name": "Z", "product_type": "quantity"},
             key=reader)
    assert api.get("billing/customers", key=acme.key).json["items"] == []
    assert_problem(api.get("billing/products/zz", key=acme.key), 404, "product_not_found")


# --- isolation


@pytest.fixture
def globex_objects(api: Api, globex: TenantFixture) -> dict[str, str]:
    """A product, an offer, a customer with a batch and an active hold, in globex."""
    key = globex.key
    assert api.post("billing/products", json={"key": "gadgets", "name": "G",
                                              "product_type": "quantity"}, key=key).status == 201
    assert api.post("billing/offers", json={"sku": "gadgets_5", "name": "G5", "price": "5",
                                            "currency": "USD", "items": [{"product": "gadgets",
                                                                          "quantity": 5}]},
                    key=key).status == 201
    grant = api.post("billing/grants", json={"external_id": "shared", "sku": "gadgets_5",
                                             "kind": "bonus"}, key=key).json
    hold = api.post("billing/holds", json={"external_id": "shared", "feature": "gadgets",
                                           "amount": 1}, key=key).json
    order = api.post("billing/orders", json={"external_id": "shared",
                                             "items": [{"sku": "gadgets_5", "quantity": 1}]},
                     key=key)
    assert order.status == 201, order.body
    return {
        "order": order.json["id"],
        "customer": grant["customer_id"],
        "batch": grant["batches"][0]["id"],
        "hold": hold["id"],
    }


def test_other_tenants_ids_and_keys_answer_404(
    api: Api, acme: TenantFixture, globex: TenantFixture, catalog: Catalog,
    globex_objects: dict[str, str],
) -> None:
    key = acme.key
    ids = globex_objects
    checks = [
        (api.get("billing/products/gadgets", key=key), "product_not_found"),
        (api.patch("billing/products/gadgets", json={"name": "x"}, key=key), "product_not_found"),
        (api.get("billing/offers/gadgets_5", key=key), "offer_not_found"),
        (api.patch("billing/offers/gadgets_5", json={"name": "x"}, key=key), "offer_not_found"),
        (api.get(f"billing/customers/{ids['customer']}", key=key), "customer_not_found"),
        (api.delete(f"billing/customers/{ids['customer']}", key=key), "customer_not_found"),
        (api.post(f"billing/holds/{ids['hold']}/commit", json={}, key=key), "hold_not_found"),
        (api.post(f"billing/holds/{ids['hold']}/release", json={}, key=key), "hold_not_found"),
        (api.post(f"billing/batches/{ids['batch']}/revoke", json={}, key=key),
         "batch_not_found"),
    ]
    checks.append((api.get(f"billing/orders/{ids['order']}", key=key), "order_not_found"))
    for op in ("confirm", "cancel", "refund"):
        checks.append((api.post(f"billing/orders/{ids['order']}/{op}", json={}, key=key),
                       "order_not_found"))
    for path in ("billing/wallet", "billing/wallet/batches", "billing/wallet/transactions",
                 "billing/balance"):
        checks.append((api.get(path, key=key, query={"customer_id": ids["customer"]}),
                       "customer_not_found"))
    for path, body in (
        ("billing/quota/consume", {"feature": "gadgets"}),
        ("billing/holds", {"feature": "gadgets", "amount": 1}),
        ("billing/grants", {"sku": "reports_10", "kind": "bonus"}),
        ("billing/adjustments", {"product": "reports", "amount": 1, "reason": "r"}),
    ):
        checks.append((api.post(path, json={"customer_id": ids["customer"], **body}, key=key),
                       "customer_not_found"))
    for response, code in checks:
        assert_problem(response, 404, code)
    # globex still sees its own objects unchanged.
    hold = api.post(f"billing/holds/{ids['hold']}/release", json={}, key=globex.key)
    assert hold.status == 200 and hold.json["status"] == "released"
    customer = api.get(f"billing/customers/{ids['customer']}", key=globex.key).json
    assert customer["identities"] == [{"provider": "default", "external_id": "shared"}]
    product = api.get("billing/products/gadgets", key=globex.key).json
    assert product["name"] == "G"


def test_other_tenants_skus_are_unknown(
    api: Api, acme: TenantFixture, catalog: Catalog, globex_objects: dict[str, str]
) -> None:
    grant = api.post("billing/grants", json={"external_id": "shared", "sku": "gadgets_5",
                                             "kind": "bonus"}, key=acme.key)
    assert_problem(grant, 422, "unknown_sku")
    consume = api.post("billing/quota/consume", json={"external_id": "shared",
                                                      "feature": "gadgets"}, key=acme.key)
    assert_problem(consume, 402, "quota_exhausted")
    offer = api.post("billing/offers", json={"sku": "x1", "name": "x", "price": "1",
                                             "currency": "USD",
                                             "items": [{"product": "gadgets"}]}, key=acme.key)
    assert_problem(offer, 422, "unknown_product")
    # Keys are per tenant: acme may use globex's names.
    assert api.post("billing/products", json={"key": "gadgets", "name": "Mine",
                                              "product_type": "quantity"},
                    key=acme.key).status == 201


def test_lists_show_only_own_tenant(
    api: Api, acme: TenantFixture, globex: TenantFixture, catalog: Catalog,
    globex_objects: dict[str, str],
) -> None:
    key = acme.key
    mine = api.post("billing/grants", json={"external_id": "shared", "sku": "reports_10",
                                            "kind": "bonus"}, key=key).json
    assert mine["customer_id"] != globex_objects["customer"]
    products = {p["key"] for p in api.get("billing/products", key=key).json["items"]}
    assert products == {"REPORTS", "PRO", "UNL"}
    offers = {o["sku"] for o in api.get("billing/offers", key=key).json["items"]}
    assert "GADGETS_5" not in offers and len(offers) == 4
    catalog_skus = {o["sku"] for o in api.get("billing/catalog", key=key).json["items"]}
    assert "GADGETS_5" not in catalog_skus
    assert api.get("billing/catalog", key=key, query={"sku": ["gadgets_5"]}).json["items"] == []
    customers = api.get("billing/customers", key=key).json["items"]
    assert [c["id"] for c in customers] == [mine["customer_id"]]
    filtered = api.get("billing/customers", key=key, query={"external_id": "shared"}).json
    assert [c["id"] for c in filtered["items"]] == [mine["customer_id"]]
    batches = api.get("billing/wallet/batches", key=key, query={"external_id": "shared"}).json
    assert [b["product"] for b in batches["items"]] == ["REPORTS"]
    entries = api.get("billing/wallet/transactions", key=key,
                      query={"external_id": "shared"}).json["items"]
    assert {e["product"] for e in entries} == {"REPORTS"}
    wallet = api.get("billing/wallet", key=key, query={"external_id": "shared"}).json
    assert wallet["balances"] == {"REPORTS": 10}
    balance = api.get("billing/balance", key=key, query={"external_id": "shared"}).json
    assert {i["feature"] for i in balance["items"]} == {"REPORTS", "report_generation"}
    orders = api.get("billing/orders", key=key, query={"external_id": "shared"}).json
    assert orders["items"] == []
    theirs = api.get("billing/customers", key=globex.key).json["items"]
    assert [c["id"] for c in theirs] == [globex_objects["customer"]]


def test_unknown_id_and_foreign_id_answer_alike(
    api: Api, acme: TenantFixture, catalog: Catalog, globex_objects: dict[str, str]
) -> None:
    foreign = api.get(f"billing/customers/{globex_objects['customer']}", key=acme.key)
    unknown = api.get(f"billing/customers/{uuid.uuid4()}", key=acme.key)
    assert foreign.status == unknown.status == 404
    assert foreign.json == unknown.json
