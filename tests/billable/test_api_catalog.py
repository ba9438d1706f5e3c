"""HTTP tests of products, offers and the catalog (`/billing/products`, `/offers`, `/catalog`)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from billable.models import CatalogKey, Offer, Product
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]

PRODUCT_KEYS = {
    "key", "name", "description", "product_type", "is_active", "is_currency", "features",
    "credit_costs", "metadata", "created_at",
}
OFFER_KEYS = {
    "sku", "name", "description", "price", "currency", "is_active", "metadata", "items",
    "created_at",
}


def _offer_body(sku: str, **extra: Any) -> dict[str, Any]:
    return {
        "sku": sku,
        "name": sku.title(),
        "price": "5",
        "currency": "USD",
        "items": [{"product": "reports", "quantity": 3, "period_unit": "days", "period_value": 7}],
        **extra,
    }


# --- Products


def test_product_create_defaults_and_shape(api: Api, acme: TenantFixture) -> None:
    response = api.post(
        "billing/products",
        json={"key": "credits.v2", "name": "Credits", "product_type": "quantity"},
        key=acme.key,
    )
    assert response.status == 201, response.body
    body = response.json
    assert set(body) == PRODUCT_KEYS
    assert body["key"] == "CREDITS.V2"
    assert body["description"] == "" and body["is_active"] is True
    assert body["is_currency"] is False and body["features"] == []
    # `features` mirrors `metadata.features`; nothing else is added to the metadata.
    assert {k: v for k, v in body["metadata"].items() if k != "features"} == {}
    assert body["metadata"].get("features", []) == []
    assert body["created_at"].endswith(("Z", "+00:00"))
    connection.set_schema(acme.tenant.schema_name)
    assert Product.objects.filter(key="CREDITS.V2").exists()


def test_product_features_from_field_or_metadata(api: Api, acme: TenantFixture) -> None:
    by_field = api.post(
        "billing/products",
        json={"key": "a1", "name": "A", "product_type": "quantity", "features": ["Export_PDF"]},
        key=acme.key,
    ).json
    by_metadata = api.post(
        "billing/products",
        json={"key": "a2", "name": "A", "product_type": "period",
              "metadata": {"features": ["Export_CSV"], "team": 1}},
        key=acme.key,
    ).json
    assert by_field["features"] == ["export_pdf"]
    assert by_field["metadata"]["features"] == ["export_pdf"]
    assert by_metadata["features"] == ["export_csv"]
    assert by_metadata["metadata"]["team"] == 1


def test_product_create_errors(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    taken = api.post(
        "billing/products", json={"key": "Reports", "name": "x", "product_type": "quantity"},
        key=acme.key,
    )
    assert_problem(taken, 409, "key_taken")
    # An offer SKU and a product key share one namespace.
    sku_taken = api.post(
        "billing/products", json={"key": "reports_10", "name": "x", "product_type": "quantity"},
        key=acme.key,
    )
    assert_problem(sku_taken, 409, "key_taken")
    invalid = api.post(
        "billing/products", json={"key": "bad key", "name": "", "product_type": "weekly"},
        key=acme.key,
    )
    body = assert_problem(invalid, 422, "validation_error")
    fields = {tuple(e["loc"])[-1] for e in body["errors"]}
    assert {"key", "name", "product_type"} <= fields
    missing = api.post("billing/products", json={}, key=acme.key)
    assert {e["loc"][-1] for e in assert_problem(missing, 422, "validation_error")["errors"]} >= {
        "key", "name", "product_type",
    }
    connection.set_schema(acme.tenant.schema_name)
    assert Product.objects.count() == 3


def test_product_get_list_case_insensitive(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    for spelled in ("reports", "REPORTS", "RePoRtS"):
        response = api.get(f"billing/products/{spelled}", key=acme.key)
        assert response.status == 200 and response.json["key"] == "REPORTS"
        assert response.json["features"] == ["report_generation"]
    listing = api.get("billing/products", key=acme.key).json
    assert set(listing) == {"items", "next_cursor"}
    assert [p["key"] for p in listing["items"]] == ["UNL", "PRO", "REPORTS"]  # newest first
    assert listing["next_cursor"] is None


def test_product_list_cursor(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    first = api.get("billing/products", key=acme.key, query={"limit": 2}).json
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = api.get(
        "billing/products", key=acme.key, query={"limit": 2, "cursor": first["next_cursor"]}
    ).json
    assert [p["key"] for p in first["items"] + second["items"]] == ["UNL", "PRO", "REPORTS"]
    assert second["next_cursor"] is None
    bad = api.get("billing/products", key=acme.key, query={"cursor": "not-a-cursor"})
    assert_problem(bad, 422, "validation_error")
    for limit in (0, 201):
        out_of_range = api.get("billing/products", key=acme.key, query={"limit": limit})
        assert assert_problem(out_of_range, 422, "validation_error")["errors"]


@pytest.mark.parametrize("path", ["billing/products/NOPE", "billing/products/bad%20key",
                                  "billing/products/" + "x" * 65])
def test_product_get_unknown_or_malformed_is_404(
    api: Api, acme: TenantFixture, catalog: Catalog, path: str
) -> None:
    assert_problem(api.get(path, key=acme.key), 404, "product_not_found")
    assert_problem(api.patch(path, json={"name": "x"}, key=acme.key), 404, "product_not_found")


def test_product_patch(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    response = api.patch(
        "billing/products/reports", json={"name": "Reports v2", "description": "d"},
        key=acme.key,
    )
    assert response.status == 200, response.body
    assert response.json["name"] == "Reports v2" and response.json["description"] == "d"
    assert response.json["key"] == "REPORTS" and response.json["product_type"] == "quantity"
    invalid = api.patch("billing/products/reports", json={"product_type": "x"}, key=acme.key)
    assert_problem(invalid, 422, "validation_error")


def test_product_patch_type_once_batches_exist(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    assert api.patch(
        "billing/products/reports", json={"product_type": "unlimited"}, key=acme.key
    ).json["product_type"] == "unlimited"
    api.patch("billing/products/reports", json={"product_type": "quantity"}, key=acme.key)
    api.post("billing/grants", json={"external_id": "u", "sku": "reports_10", "kind": "manual"},
             key=acme.key)
    in_use = api.patch("billing/products/reports", json={"product_type": "period"}, key=acme.key)
    assert_problem(in_use, 409, "product_in_use")
    currency = api.patch("billing/products/reports", json={"is_currency": True}, key=acme.key)
    assert_problem(currency, 409, "product_in_use")
    assert api.get("billing/products/reports", key=acme.key).json["product_type"] == "quantity"


# --- Offers


def test_offer_create_shape(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    response = api.post("billing/offers", json=_offer_body("starter", price="12.5"), key=acme.key)
    assert response.status == 201, response.body
    body = response.json
    assert set(body) == OFFER_KEYS
    assert body["sku"] == "STARTER" and body["price"] == "12.50" and body["currency"] == "USD"
    assert body["description"] == "" and body["is_active"] is True and body["metadata"] == {}
    assert body["items"] == [
        {"product": "REPORTS", "quantity": 3, "period_unit": "days", "period_value": 7}
    ]


@pytest.mark.parametrize(
    ("currency", "price", "shown"),
    [("usd", "9", "9.00"), ("JPY", "500", "500"), ("kwd", "1.5", "1.500"), ("EUR", 3, "3.00")],
)
def test_offer_price_has_currency_minor_digits(
    api: Api, acme: TenantFixture, catalog: Catalog, currency: str, price: Any, shown: str
) -> None:
    body = api.post(
        "billing/offers", json=_offer_body("p1", price=price, currency=currency), key=acme.key
    ).json
    assert body["price"] == shown and body["currency"] == currency.upper()


def test_offer_priced_in_a_currency_product(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    created = api.post(
        "billing/products",
        json={"key": "coins", "name": "Coins", "product_type": "quantity", "is_currency": True},
        key=acme.key,
    )
    assert created.status == 201 and created.json["is_currency"] is True
    offer = api.post(
        "billing/offers", json=_offer_body("by_coins", price="30", currency="coins"), key=acme.key
    )
    assert offer.status == 201, offer.body
    assert offer.json["price"] == "30" and offer.json["currency"] == "COINS"


def test_fixture_offer_price_is_a_string(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    body = api.get("billing/offers/reports_10", key=acme.key).json
    assert body["price"] == "9.00" and body["currency"] == "USD"
    assert body["items"][0] == {
        "product": "REPORTS", "quantity": 10, "period_unit": "days", "period_value": 30,
    }


def test_offer_create_errors(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    assert_problem(
        api.post("billing/offers", json=_offer_body("Reports_10"), key=acme.key), 409, "key_taken"
    )
    assert_problem(
        api.post("billing/offers", json=_offer_body("pro"), key=acme.key), 409, "key_taken"
    )
    unknown = _offer_body("o1", items=[{"product": "nothing"}])
    assert_problem(api.post("billing/offers", json=unknown, key=acme.key), 422, "unknown_product")
    api.patch("billing/products/unl", json={"is_active": False}, key=acme.key)
    inactive = _offer_body("o2", items=[{"product": "unl"}])
    assert_problem(
        api.post("billing/offers", json=inactive, key=acme.key), 422, "inactive_product"
    )
    for bad in (
        {"price": "-1"}, {"price": "1.2.3"}, {"items": []}, {"items": [{"product": "reports",
                                                                         "quantity": 0}]},
        {"items": [{"product": "reports", "period_unit": "weeks"}]},
    ):
        response = api.post("billing/offers", json=_offer_body("o3", **bad), key=acme.key)
        assert assert_problem(response, 422, "validation_error")["errors"], bad
    connection.set_schema(acme.tenant.schema_name)
    assert not Offer.objects.filter(sku__in=["O1", "O2", "O3"]).exists()
    assert not CatalogKey.objects.filter(key__in=["O1", "O2", "O3"]).exists()


def test_offer_get_patch_list(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    assert api.get("billing/offers/Pro_Month", key=acme.key).json["sku"] == "PRO_MONTH"
    assert_problem(api.get("billing/offers/nope", key=acme.key), 404, "offer_not_found")
    assert_problem(api.get("billing/offers/no%20pe", key=acme.key), 404, "offer_not_found")
    patched = api.patch(
        "billing/offers/pro_month",
        json={"price": "25.5", "items": [{"product": "PRO", "period_unit": "years",
                                          "period_value": 1}]},
        key=acme.key,
    )
    assert patched.status == 200, patched.body
    assert patched.json["price"] == "25.50"
    assert patched.json["items"] == [
        {"product": "PRO", "quantity": 1, "period_unit": "years", "period_value": 1}
    ]
    deactivated = api.patch("billing/offers/PRO_MONTH", json={"is_active": False}, key=acme.key)
    assert deactivated.json["is_active"] is False
    listing = api.get("billing/offers", key=acme.key).json
    skus = [o["sku"] for o in listing["items"]]
    assert skus == ["UNL_FOREVER", "PRO_MONTH", "REPORTS_5_FOREVER", "REPORTS_10"]
    assert_problem(
        api.patch("billing/offers/nope", json={"name": "x"}, key=acme.key), 404, "offer_not_found"
    )


# --- Catalog


def test_catalog_lists_active_offers_with_active_products(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    api.patch("billing/offers/reports_5_forever", json={"is_active": False}, key=acme.key)
    api.patch("billing/products/unl", json={"is_active": False}, key=acme.key)
    body = api.get("billing/catalog", key=acme.key).json
    assert [o["sku"] for o in body["items"]] == ["PRO_MONTH", "REPORTS_10"]
    assert body["next_cursor"] is None
    assert set(body["items"][0]) == OFFER_KEYS


def test_catalog_cursor(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        query: dict[str, Any] = {"limit": 1}
        if cursor:
            query["cursor"] = cursor
        page = api.get("billing/catalog", key=acme.key, query=query).json
        seen += [o["sku"] for o in page["items"]]
        cursor = page["next_cursor"]
    assert seen == ["UNL_FOREVER", "PRO_MONTH", "REPORTS_5_FOREVER", "REPORTS_10"]
    assert cursor is None


def test_catalog_by_skus_in_request_order(
    api: Api, acme: TenantFixture, catalog: Catalog
) -> None:
    api.patch("billing/offers/unl_forever", json={"is_active": False}, key=acme.key)
    response = api.get(
        "billing/catalog",
        key=acme.key,
        query={"sku": ["pro_month", "missing", "UNL_FOREVER", "Reports_10", "bad sku!",
                       "PRO_MONTH"], "limit": 1},
    )
    assert response.status == 200, response.body
    assert [o["sku"] for o in response.json["items"]] == ["PRO_MONTH", "REPORTS_10"]
    assert response.json["next_cursor"] is None


def test_catalog_by_unknown_skus_is_empty(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    body = api.get("billing/catalog", key=acme.key, query={"sku": ["x", "y"]}).json
    assert body == {"items": [], "next_cursor": None}


def test_products_filtered_by_activity(api: Api, acme: TenantFixture, catalog: Catalog) -> None:
    assert api.patch("billing/products/unl", json={"is_active": False},
                     key=acme.key).status == 200
    keys = {p["key"] for p in api.get("billing/products", key=acme.key).json["items"]}
    active = {p["key"] for p in api.get("billing/products", key=acme.key,
                                        query={"is_active": "true"}).json["items"]}
    inactive = {p["key"] for p in api.get("billing/products", key=acme.key,
                                          query={"is_active": "false"}).json["items"]}
    assert keys == {"REPORTS", "PRO", "UNL"}
    assert (active, inactive) == ({"REPORTS", "PRO"}, {"UNL"})
    assert_problem(api.get("billing/products", key=acme.key, query={"is_active": "maybe"}),
                   422, "validation_error")
