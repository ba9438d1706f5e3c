"""Products and offers: key normalisation, the shared namespace, currencies, fixed fields."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billable import signals
from billable.errors import (
    InactiveProduct,
    InvalidCurrency,
    KeyTaken,
    ProductInUse,
    UnknownProduct,
)
from billable.models import CatalogKey, Customer, Offer, OfferItem, Product
from billable.selectors import catalog as active_catalog
from billable.selectors import catalog_by_skus, offer_for_grant
from billable.services.catalog import (
    ItemSpec,
    offer_create,
    offer_update,
    product_create,
    product_update,
)
from billable.services.quota import quota_consume
from billing_platform.core.errors import BillingError, ValidationFailed
from tests.support.billing import grant
from tests.support.signals import captured

Catalog = dict[str, Product | Offer]


def _offer(sku: str, currency: str = "USD", price: str = "1.00", **kw: Any) -> Offer:
    return offer_create(
        sku=sku, name=sku, price=Decimal(price), currency=currency,
        items=kw.pop("items", [ItemSpec("REPORTS", 1)]), **kw,
    )


def _code(exc: pytest.ExceptionInfo[BillingError]) -> str:
    return exc.value.code


# --- Keys


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("reports", "REPORTS"),
        ("  Api.Calls-v2_x  ", "API.CALLS-V2_X"),
        ("a", "A"),
        ("k" * 64, "K" * 64),
    ],
)
def test_product_key_is_stored_upper_case(in_acme: Any, raw: str, stored: str) -> None:
    product = product_create(key=raw, name="x", product_type="quantity")

    assert product.key == stored
    assert Product.objects.get(pk=product.pk).key == stored
    assert CatalogKey.objects.filter(key=stored, kind="product").exists()


@pytest.mark.parametrize("raw", ["", "   ", "has space", "k" * 65, "slash/key", "ключ", "a+b"])
def test_product_key_outside_charset_is_refused(in_acme: Any, raw: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        product_create(key=raw, name="x", product_type="quantity")

    assert _code(exc) == "validation_error"
    assert not Product.objects.exists()


@pytest.mark.parametrize("raw", ["", "two words", "k" * 65, "sku#1"])
def test_offer_sku_outside_charset_is_refused(catalog: Catalog, raw: str) -> None:
    with pytest.raises(ValidationFailed):
        _offer(raw)


def test_offer_sku_is_stored_upper_case(catalog: Catalog) -> None:
    assert _offer(" bundle.v1 ").sku == "BUNDLE.V1"
    assert catalog["REPORTS_10"].sku == "REPORTS_10"  # type: ignore[union-attr]


# --- One namespace for product keys and SKUs


def test_product_key_taken_by_product_case_insensitively(catalog: Catalog) -> None:
    before = Product.objects.count()

    with pytest.raises(KeyTaken) as exc:
        product_create(key="Reports", name="again", product_type="quantity")

    assert _code(exc) == "key_taken" and exc.value.status == 409
    assert Product.objects.count() == before


def test_product_key_may_not_equal_an_sku(catalog: Catalog) -> None:
    with pytest.raises(KeyTaken):
        product_create(key="reports_10", name="clash", product_type="quantity")

    assert not Product.objects.filter(key="REPORTS_10").exists()


def test_sku_may_not_equal_a_product_key(catalog: Catalog) -> None:
    before = Offer.objects.count()

    with pytest.raises(KeyTaken) as exc:
        _offer("Pro")

    assert _code(exc) == "key_taken"
    assert Offer.objects.count() == before


def test_sku_taken_by_another_offer_case_insensitively(catalog: Catalog) -> None:
    with pytest.raises(KeyTaken):
        _offer("Reports_10")

    assert Offer.objects.filter(sku="REPORTS_10").count() == 1


def test_refused_offer_leaves_no_claimed_key(catalog: Catalog) -> None:
    with pytest.raises(UnknownProduct):
        _offer("fresh", items=[ItemSpec("missing", 1)])

    assert not CatalogKey.objects.filter(key="FRESH").exists()
    assert _offer("fresh").sku == "FRESH"


# --- Currency products and offer currencies


@pytest.mark.parametrize("key", ["usd", "EUR", " jpy "])
def test_currency_product_may_not_use_an_iso_code(in_acme: Any, key: str) -> None:
    with pytest.raises(ValidationFailed):
        product_create(key=key, name="coins", product_type="quantity", is_currency=True)

    assert not Product.objects.exists()


def test_product_with_iso_key_cannot_become_a_currency(in_acme: Any) -> None:
    product = product_create(key="eur", name="not money", product_type="quantity")

    with pytest.raises(ValidationFailed):
        product_update(product=product, is_currency=True)

    assert Product.objects.get(pk=product.pk).is_currency is False


def test_offer_currency_iso_code_is_upper_cased(catalog: Catalog) -> None:
    assert catalog["REPORTS_10"].currency == "USD"  # type: ignore[union-attr]
    assert _offer("in_eur", currency=" eur ").currency == "EUR"


def test_offer_price_in_iso_currency_respects_minor_digits(catalog: Catalog) -> None:
    with pytest.raises(ValidationFailed):
        _offer("usd_fraction", currency="USD", price="1.005")
    with pytest.raises(ValidationFailed):
        _offer("yen_fraction", currency="JPY", price="100.5")

    assert _offer("yen_whole", currency="JPY", price="100").price == Decimal("100")


def test_offer_priced_in_a_currency_product(catalog: Catalog) -> None:
    product_create(key="coins", name="Coins", product_type="quantity", is_currency=True)

    offer = _offer("reports_for_coins", currency="coins", price="30")

    assert offer.currency == "COINS"
    assert offer.price == Decimal("30")


def test_offer_in_a_currency_product_needs_a_whole_price(catalog: Catalog) -> None:
    product_create(key="coins", name="Coins", product_type="quantity", is_currency=True)

    with pytest.raises(ValidationFailed):
        _offer("half_coin", currency="COINS", price="30.5")

    assert not Offer.objects.filter(sku="HALF_COIN").exists()


@pytest.mark.parametrize("currency", ["XYZQ", "reports", "nope!"])
def test_offer_currency_neither_iso_nor_currency_product(catalog: Catalog, currency: str) -> None:
    with pytest.raises(InvalidCurrency) as exc:
        _offer("bad_currency", currency=currency)

    assert _code(exc) == "invalid_currency"
    assert not Offer.objects.filter(sku="BAD_CURRENCY").exists()


def test_offer_update_checks_the_currency(catalog: Catalog) -> None:
    offer = catalog["REPORTS_10"]
    assert isinstance(offer, Offer)

    with pytest.raises(InvalidCurrency):
        offer_update(offer=offer, currency="XYZQ")
    with pytest.raises(ValidationFailed):
        offer_update(offer=offer, price=Decimal("9.001"))

    stored = Offer.objects.get(pk=offer.pk)
    assert (stored.currency, stored.price) == ("USD", Decimal("9.00"))


# --- Offer items


def test_offer_with_unknown_product_is_refused(catalog: Catalog) -> None:
    with pytest.raises(UnknownProduct) as exc:
        _offer("ghost_bundle", items=[ItemSpec("reports", 1), ItemSpec("ghost", 1)])

    assert _code(exc) == "unknown_product" and exc.value.status == 422
    assert not Offer.objects.filter(sku="GHOST_BUNDLE").exists()


def test_offer_with_inactive_product_is_refused(catalog: Catalog) -> None:
    product_create(key="old", name="Old", product_type="quantity", is_active=False)

    with pytest.raises(InactiveProduct) as exc:
        _offer("old_bundle", items=[ItemSpec("old", 1)])

    assert _code(exc) == "inactive_product"
    assert not Offer.objects.filter(sku="OLD_BUNDLE").exists()


def test_offer_without_items_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ValidationFailed):
        _offer("empty", items=[])


def test_offer_items_resolve_product_keys_case_insensitively(catalog: Catalog) -> None:
    offer = _offer("mixed", items=[ItemSpec("Reports", 3, "days", 7), ItemSpec("pro", 1)])

    rows = list(OfferItem.objects.filter(offer=offer).values_list("product__key", "quantity"))
    assert rows == [("REPORTS", 3), ("PRO", 1)]


def test_offer_update_replaces_items_and_refuses_unknown(catalog: Catalog) -> None:
    offer = catalog["REPORTS_10"]
    assert isinstance(offer, Offer)

    with pytest.raises(UnknownProduct):
        offer_update(offer=offer, items=[ItemSpec("ghost", 1)])
    assert OfferItem.objects.filter(offer=offer).count() == 1

    offer_update(offer=offer, items=[ItemSpec("reports", 20), ItemSpec("pro", 1, "days", 7)])
    assert OfferItem.objects.filter(offer=offer).count() == 2


# --- Fixed fields once batches exist


def test_type_and_currency_flag_change_freely_without_batches(catalog: Catalog) -> None:
    product = catalog["REPORTS"]
    assert isinstance(product, Product)

    product_update(product=product, product_type="period", is_currency=True)

    stored = Product.objects.get(pk=product.pk)
    assert (stored.product_type, stored.is_currency) == ("period", True)


@pytest.mark.parametrize(
    "change", [{"product_type": "period"}, {"product_type": "unlimited"}, {"is_currency": True}]
)
def test_type_and_currency_flag_fixed_once_batches_exist(
    catalog: Catalog, alice: Customer, change: dict[str, Any]
) -> None:
    grant(alice, "reports_10")
    product = catalog["REPORTS"]
    assert isinstance(product, Product)

    with pytest.raises(ProductInUse) as exc:
        product_update(product=product, name="Renamed", **change)

    assert _code(exc) == "product_in_use" and exc.value.status == 409
    stored = Product.objects.get(pk=product.pk)
    assert (stored.product_type, stored.is_currency, stored.name) == (
        "quantity", False, "Reports"
    )


def test_same_type_and_other_fields_change_with_batches(
    catalog: Catalog, alice: Customer
) -> None:
    grant(alice, "reports_10")
    product = catalog["REPORTS"]
    assert isinstance(product, Product)

    product_update(
        product=product, product_type="quantity", is_currency=False, name="Renamed",
        description="d",
    )

    assert Product.objects.get(pk=product.pk).name == "Renamed"


# --- Deactivation


def test_deactivation_sends_product_deactivated_once(catalog: Catalog) -> None:
    product = catalog["REPORTS"]
    assert isinstance(product, Product)

    with captured(signals.product_deactivated) as calls:
        product_update(product=product, is_active=False)
        product_update(product=product, is_active=False)
        product_update(product=product, name="Still inactive")

    assert len(calls) == 1
    assert calls[0]["product"].pk == product.pk
    assert calls[0]["product"].is_active is False


def test_reactivation_sends_nothing(catalog: Catalog) -> None:
    product = product_create(key="dormant", name="D", product_type="quantity", is_active=False)

    with captured(signals.product_deactivated) as calls:
        product_update(product=product, is_active=True)

    assert calls == []


def test_deactivated_product_keeps_batches_working(catalog: Catalog, alice: Customer) -> None:
    grant(alice, "reports_10")
    product = catalog["REPORTS"]
    assert isinstance(product, Product)

    product_update(product=product, is_active=False)
    consumption = quota_consume(customer=alice, feature="report_generation", amount=4)

    assert consumption.remaining == 6


def test_deactivated_product_takes_its_offers_out_of_the_catalog(catalog: Catalog) -> None:
    product = catalog["REPORTS"]
    assert isinstance(product, Product)

    product_update(product=product, is_active=False)

    skus = set(active_catalog().values_list("sku", flat=True))
    assert skus == {"PRO_MONTH", "UNL_FOREVER"}
    with pytest.raises(InactiveProduct):
        offer_for_grant("reports_10")
    assert [o.sku for o in catalog_by_skus(["reports_10", "unl_forever"])] == ["UNL_FOREVER"]


def test_catalog_by_skus_keeps_request_order_skipping_unknown_and_inactive(
    catalog: Catalog,
) -> None:
    offer_update(offer=catalog["PRO_MONTH"], is_active=False)  # type: ignore[arg-type]

    found = catalog_by_skus(["unl_forever", "ghost", "pro_month", "bad sku", "Reports_10"])

    assert [o.sku for o in found] == ["UNL_FOREVER", "REPORTS_10"]


# --- Features


def test_features_mirrored_lower_case_from_metadata(in_acme: Any) -> None:
    product = product_create(
        key="suite", name="Suite", product_type="quantity",
        metadata={"features": ["Report_Gen", "report_gen", " Export "], "tier": "gold"},
    )

    stored = Product.objects.get(pk=product.pk)
    assert stored.features == ["report_gen", "export"]
    assert stored.metadata == {"features": ["report_gen", "export"], "tier": "gold"}


def test_features_argument_is_lower_cased_into_metadata(in_acme: Any) -> None:
    product = product_create(key="suite", name="S", product_type="quantity", features=["PDF"])

    assert product.features == ["pdf"]
    assert product.metadata["features"] == ["pdf"]


@pytest.mark.parametrize("features", ["pdf", ["bad name"], [42], ["x" * 65]])
def test_invalid_features_are_refused(in_acme: Any, features: Any) -> None:
    with pytest.raises(ValidationFailed):
        product_create(
            key="suite", name="S", product_type="quantity", metadata={"features": features}
        )

    assert not Product.objects.exists()


def test_update_mirrors_new_metadata_features(catalog: Catalog) -> None:
    product = catalog["REPORTS"]
    assert isinstance(product, Product)

    product_update(product=product, metadata={"features": ["CSV", "Pdf"], "x": 1})
    stored = Product.objects.get(pk=product.pk)
    assert stored.features == ["csv", "pdf"]
    assert stored.metadata == {"features": ["csv", "pdf"], "x": 1}

    product_update(product=product, metadata={"y": 2})
    stored = Product.objects.get(pk=product.pk)
    assert stored.features == ["csv", "pdf"]
    assert stored.metadata == {"features": ["csv", "pdf"], "y": 2}

    product_update(product=product, features=["Only"])
    stored = Product.objects.get(pk=product.pk)
    assert stored.features == ["only"] and stored.metadata["features"] == ["only"]
