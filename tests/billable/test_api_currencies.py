"""Declared currencies (`/billing/currencies`): Telegram Stars priced, ordered and shown exactly."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from billable.models import CatalogKey, Currency, Offer, Product
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]

CURRENCY_KEYS = {"code", "name", "minor_digits", "created_at"}


def declare(api: Api, key: str, code: str = "xtr", digits: int = 0, **extra: Any) -> Any:
    response = api.post(
        "billing/currencies",
        json={"code": code, "name": "Telegram Stars", "minor_digits": digits},
        key=key,
        **extra,
    )
    assert response.status == 201, response.body
    return response.json


def offer(api: Api, key: str, sku: str, price: Any, currency: str = "xtr") -> Any:
    return api.post(
        "billing/offers",
        json={"sku": sku, "name": sku, "price": price, "currency": currency,
              "items": [{"product": "reports", "quantity": 10}]},
        key=key,
    )


def _count(acme: TenantFixture) -> int:
    connection.set_schema(acme.tenant.schema_name)
    count = Currency.objects.count()
    connection.set_schema_to_public()
    return count


# --- Declaring


def test_declare_shape_and_case(api: Api, acme: TenantFixture) -> None:
    body = declare(api, acme.key, "xtr")
    assert set(body) == CURRENCY_KEYS
    assert (body["code"], body["name"], body["minor_digits"]) == ("XTR", "Telegram Stars", 0)
    assert body["created_at"].endswith(("Z", "+00:00"))
    for spelled in ("xtr", "XTR", "XtR"):
        response = api.get(f"billing/currencies/{spelled}", key=acme.key)
        assert response.status == 200 and response.json == body
    listing = api.get("billing/currencies", key=acme.key).json
    assert listing == {"items": [body], "next_cursor": None}
    # The same code in another case is the same code.
    assert_problem(
        api.post("billing/currencies", json={"code": "Xtr", "name": "Again"}, key=acme.key),
        409, "key_taken",
    )


def test_minor_digits_default_to_zero(api: Api, acme: TenantFixture) -> None:
    response = api.post("billing/currencies", json={"code": "gems", "name": "Gems"},
                        key=acme.key)
    assert response.status == 201 and response.json["minor_digits"] == 0


@pytest.mark.parametrize("code", ["usd", "EUR", "jpy", "XAU"])
def test_iso_code_is_refused(api: Api, acme: TenantFixture, code: str) -> None:
    response = api.post("billing/currencies", json={"code": code, "name": "x"}, key=acme.key)
    assert_problem(response, 422, "iso_currency")
    assert _count(acme) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"code": "X1", "name": "x"},  # too short
        {"code": "ABCDEFGHI", "name": "x"},  # too long
        {"code": "1XT", "name": "x"},  # starts with a digit
        {"code": "XT_R", "name": "x"},
        {"code": "XTR", "name": ""},
        {"code": "XTR", "name": "x", "minor_digits": 5},
        {"code": "XTR", "name": "x", "minor_digits": -1},
        {"name": "x"},
    ],
)
def test_invalid_declarations(api: Api, acme: TenantFixture, body: dict[str, Any]) -> None:
    assert_problem(api.post("billing/currencies", json=body, key=acme.key), 422,
                   "validation_error")
    assert _count(acme) == 0


def test_code_shares_the_catalog_namespace(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    coins = api.post("billing/products", json={"key": "coins", "name": "Coins",
                                               "product_type": "quantity", "is_currency": True},
                     key=acme.key)
    assert coins.status == 201
    # A currency product's key is not declared again, nor is any product key or SKU...
    for code in ("coins", "reports"):
        response = api.post("billing/currencies", json={"code": code, "name": "x"}, key=acme.key)
        assert_problem(response, 409, "key_taken")
    # ...and a declared code becomes no product (currency or not), offer or plan.
    declare(api, acme.key, "xtr")
    for is_currency in (True, False):
        response = api.post("billing/products", json={"key": "XTR", "name": "Stars",
                                                      "product_type": "quantity",
                                                      "is_currency": is_currency},
                            key=acme.key)
        assert_problem(response, 409, "key_taken")
    assert_problem(offer(api, acme.key, "xtr", "1", "usd"), 409, "key_taken")
    connection.set_schema(acme.tenant.schema_name)
    assert CatalogKey.objects.get(key="XTR").kind == "currency"
    assert not Product.objects.filter(key="XTR").exists()


def test_unknown_currency_is_still_refused(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    assert_problem(offer(api, acme.key, "stars_50", "50", "xtr"), 422, "invalid_currency")


# --- Pricing, ordering, rendering


def test_offer_order_and_catalog_in_stars(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    declare(api, acme.key, "xtr", 0)
    assert_problem(offer(api, acme.key, "stars_50", "50.5"), 422, "validation_error")
    created = offer(api, acme.key, "stars_50", "50")
    assert created.status == 201, created.body
    assert (created.json["price"], created.json["currency"]) == ("50", "XTR")
    order = api.post("billing/orders", json={"external_id": "tg-1",
                                             "items": [{"sku": "stars_50", "quantity": 1}]},
                     key=acme.key)
    assert order.status == 201, order.body
    assert (order.json["total"], order.json["currency"]) == ("50", "XTR")
    assert order.json["items"][0]["unit_price"] == "50"
    fetched = api.get(f"billing/orders/{order.json['id']}", key=acme.key).json
    assert fetched["total"] == "50"
    two = api.post("billing/orders", json={"external_id": "tg-1",
                                           "items": [{"sku": "stars_50", "quantity": 3}]},
                   key=acme.key)
    assert two.json["total"] == "150"
    listed = api.get("billing/orders", key=acme.key, query={"external_id": "tg-1"}).json
    assert sorted(o["total"] for o in listed["items"]) == ["150", "50"]
    paid = api.post(f"billing/orders/{order.json['id']}/confirm",
                    json={"payment_id": "tg-charge-1", "payment_method": "telegram_stars"},
                    key=acme.key)
    assert paid.status == 200 and paid.json["total"] == "50"
    prices = {o["sku"]: (o["price"], o["currency"])
              for o in api.get("billing/catalog", key=acme.key).json["items"]}
    assert prices["STARS_50"] == ("50", "XTR")
    assert prices["REPORTS_10"] == ("9.00", "USD")
    # Prices in a currency with one digit keep it, and mixing currencies in an order stays 422.
    declare(api, acme.key, "ton1", 1)
    assert offer(api, acme.key, "deci", "2.5", "TON1").json["price"] == "2.5"
    mixed = api.post("billing/orders", json={"external_id": "tg-1",
                                             "items": [{"sku": "stars_50"}, {"sku": "deci"}]},
                     key=acme.key)
    assert_problem(mixed, 422, "mixed_currencies")


def test_exchange_refuses_a_declared_currency(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    declare(api, acme.key, "xtr", 0)
    assert offer(api, acme.key, "stars_50", "50").status == 201
    response = api.post("billing/exchange", json={"external_id": "tg-1", "sku": "stars_50"},
                        key=acme.key)
    assert_problem(response, 422, "not_a_currency")


def test_four_digits_and_public_catalog(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    from tenants.services import tenant_settings_update

    declare(api, acme.key, "pts", 4)
    assert offer(api, acme.key, "tiny", "0.0001", "pts").json["price"] == "0.0001"
    assert offer(api, acme.key, "whole", "3", "pts").json["price"] == "3.0000"
    tenant_settings_update(tenant_id=acme.tenant.pk, changes={"public_catalog": True})
    public = api.get("public/acme/catalog").json
    prices = {o["sku"]: o["price"] for o in public["items"]}
    assert prices["TINY"] == "0.0001" and prices["WHOLE"] == "3.0000"
    assert prices["REPORTS_10"] == "9.00"


def test_plan_priced_in_a_declared_currency(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    declare(api, acme.key, "xtr", 0)
    body = {"key": "stars_plan", "name": "Stars", "price": "250", "currency": "xtr",
            "entitlements": [{"type": "allowance", "product": "reports", "amount": 10}]}
    created = api.post("billing/plans", json=body, key=acme.key)
    assert created.status == 201, created.body
    assert (created.json["price"], created.json["currency"]) == ("250", "XTR")
    fractional = api.post("billing/plans", json={**body, "key": "half", "price": "2.5"},
                          key=acme.key)
    assert_problem(fractional, 422, "validation_error")
    # Now in use by a plan version: its digits are fixed.
    assert_problem(api.patch("billing/currencies/xtr", json={"minor_digits": 2}, key=acme.key),
                   409, "currency_in_use")


# --- Changing and withdrawing


def test_patch_digits_only_while_unused(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    declare(api, acme.key, "xtr", 2)
    renamed = api.patch("billing/currencies/Xtr", json={"name": "Stars", "minor_digits": 0},
                        key=acme.key)
    assert renamed.status == 200, renamed.body
    assert (renamed.json["name"], renamed.json["minor_digits"]) == ("Stars", 0)
    assert offer(api, acme.key, "stars_50", "50").status == 201
    in_use = api.patch("billing/currencies/xtr", json={"minor_digits": 2}, key=acme.key)
    assert_problem(in_use, 409, "currency_in_use")
    # The name may change, and the same digits are no change.
    again = api.patch("billing/currencies/xtr", json={"name": "Telegram Stars",
                                                      "minor_digits": 0}, key=acme.key)
    assert again.status == 200 and again.json["name"] == "Telegram Stars"
    assert api.get("billing/currencies/xtr", key=acme.key).json["minor_digits"] == 0
    assert_problem(api.patch("billing/currencies/xtr", json={"minor_digits": 9}, key=acme.key),
                   422, "validation_error")
    assert_problem(api.patch("billing/currencies/nope", json={"name": "x"}, key=acme.key),
                   404, "currency_not_found")


def test_digits_stay_fixed_by_orders_after_the_offer_moves(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    declare(api, acme.key, "xtr", 0)
    assert offer(api, acme.key, "stars_50", "50").status == 201
    order = api.post("billing/orders", json={"external_id": "tg-1",
                                             "items": [{"sku": "stars_50"}]}, key=acme.key)
    assert order.status == 201
    moved = api.patch("billing/offers/stars_50", json={"currency": "usd", "price": "1.00"},
                      key=acme.key)
    assert moved.status == 200
    assert_problem(api.patch("billing/currencies/xtr", json={"minor_digits": 2}, key=acme.key),
                   409, "currency_in_use")
    assert_problem(api.delete("billing/currencies/xtr", key=acme.key), 409, "currency_in_use")
    assert api.get(f"billing/orders/{order.json['id']}", key=acme.key).json["total"] == "50"


def test_delete_while_unused_frees_the_code(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    declare(api, acme.key, "xtr", 2)
    assert api.delete("billing/currencies/XTR", key=acme.key).status == 204
    assert_problem(api.get("billing/currencies/xtr", key=acme.key), 404, "currency_not_found")
    assert_problem(api.delete("billing/currencies/xtr", key=acme.key), 404,
                   "currency_not_found")
    assert_problem(offer(api, acme.key, "stars_50", "50"), 422, "invalid_currency")
    # The code is free again: as a product key, or declared anew with other digits.
    declare(api, acme.key, "xtr", 0)
    assert offer(api, acme.key, "stars_50", "50").json["price"] == "50"


def test_path_codes_of_another_shape_are_404(api: Api, acme: TenantFixture) -> None:
    for code in ("x", "not-a-code", "USD", "ABCDEFGHIJ"):
        assert_problem(api.get(f"billing/currencies/{code}", key=acme.key), 404,
                       "currency_not_found")


# --- Idempotency, scopes, isolation


def test_post_is_idempotent(api: Api, acme: TenantFixture) -> None:
    headers = {"Idempotency-Key": "declare-xtr"}
    first = api.post("billing/currencies", json={"code": "xtr", "name": "Stars"},
                     key=acme.key, headers=headers)
    replay = api.post("billing/currencies", json={"code": "xtr", "name": "Stars"},
                      key=acme.key, headers=headers)
    assert first.status == replay.status == 201
    assert replay.body == first.body
    assert replay.headers.get("Idempotent-Replayed") == "true"
    other = api.post("billing/currencies", json={"code": "gems", "name": "Gems"},
                     key=acme.key, headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")
    by_field = {"code": "gems", "name": "Gems", "idempotency_key": "declare-gems"}
    assert api.post("billing/currencies", json=by_field, key=acme.key).status == 201
    assert api.post("billing/currencies", json=by_field, key=acme.key).headers.get(
        "Idempotent-Replayed") == "true"
    assert _count(acme) == 2


def test_other_tenants_do_not_see_the_code(
    api: Api, acme: TenantFixture, globex: TenantFixture
) -> None:
    declare(api, acme.key, "xtr", 0)
    assert_problem(api.get("billing/currencies/xtr", key=globex.key), 404, "currency_not_found")
    assert api.get("billing/currencies", key=globex.key).json["items"] == []
    assert api.post("billing/products", json={"key": "reports", "name": "Reports",
                                              "product_type": "quantity"},
                    key=globex.key).status == 201
    assert_problem(offer(api, globex.key, "stars_50", "50"), 422, "invalid_currency")
    # globex may declare the same code with its own digits.
    assert declare(api, globex.key, "xtr", 2)["minor_digits"] == 2
    assert offer(api, globex.key, "stars_50", "50").json["price"] == "50.00"


def test_a_page_reads_the_declared_currencies_once(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    from django.test.utils import CaptureQueriesContext

    declare(api, acme.key, "xtr", 0)

    def page_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get("billing/offers", key=acme.key).status == 200
        return sum("billable_currency" in q["sql"] for q in captured.captured_queries)

    assert offer(api, acme.key, "stars_1", "1").status == 201
    assert page_queries() == 1
    for n in range(2, 7):
        assert offer(api, acme.key, f"stars_{n}", str(n)).status == 201
    assert page_queries() == 1
