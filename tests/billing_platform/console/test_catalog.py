"""The catalog pages: products, offers and plans read by every member, created, edited and
(de)activated by admins and owners through the engine's catalog services, once per form."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from billable.models import Offer, Plan, Product
from billable.selectors import CustomerRef, offer_for_grant
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billable.services.grants import offer_grant
from billing_platform.console.models import AuditEntry, Submission
from tests.support.billing import team_plan
from tests.support.console import form_key, make_member, signed_in_client
from tests.support.tenants import TenantFixture


@pytest.fixture
def shop(acme: TenantFixture) -> TenantFixture:
    """acme with a credits product, a pro product, a bonus offer and a plan."""
    with tenant_context(acme.tenant):
        product_create(
            key="credits",
            name="Credits",
            product_type="quantity",
            features=["run", "export"],
            credit_costs={"export": 5},
            metadata={"tier": "basic"},
        )
        product_create(key="pro", name="Pro", product_type="period", features=["priority"])
        offer_create(
            sku="bonus_10",
            name="Ten credits",
            price=Decimal("9.50"),
            currency="USD",
            items=[ItemSpec("CREDITS", 10, "days", 30)],
            metadata={"is_trial": False},
        )
        team_plan()
    return acme


def _admin(tenant: Any, role: str = "admin") -> Client:
    make_member(tenant, f"{role}@example.com", role)
    return signed_in_client(f"{role}@example.com")


def _management(prefix: str, total: int, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def _product_post(sent_key: str, **overrides: str) -> dict[str, str]:
    """A new product's form as a browser sends it: rows of features, costs and metadata."""
    data = {
        "form_key": sent_key,
        "key": "ai_credits",
        "name": "AI credits",
        "product_type": "quantity",
        "description": "",
        **_management("features", 3),
        "features-0-name": "small_model",
        "features-1-name": "Large_Model",
        "features-2-name": "",
        **_management("costs", 2),
        "costs-0-feature": "large_model",
        "costs-0-credits": "10",
        "costs-1-feature": "",
        "costs-1-credits": "",
        **_management("metadata", 5),
        "metadata-0-key": "team",
        "metadata-0-kind": "text",
        "metadata-0-value": "ml",
        "metadata-1-key": "weight",
        "metadata-1-kind": "number",
        "metadata-1-value": "2.5",
        "metadata-2-key": "public",
        "metadata-2-kind": "boolean",
        "metadata-2-value": "yes",
        "metadata-3-key": "limits",
        "metadata-3-kind": "json",
        "metadata-3-value": '{"daily": [1, 2]}',
        "metadata-4-key": "",
        "metadata-4-kind": "text",
        "metadata-4-value": "",
    }
    data.update(overrides)
    return data


# --- Reading


def test_every_member_reads_the_catalog_without_its_forms(shop: TenantFixture) -> None:
    viewer = _admin(shop.tenant, "viewer")

    products = viewer.get("/console/catalog/").content.decode()
    offers = viewer.get("/console/catalog/offers/").content.decode()
    plans = viewer.get("/console/catalog/plans/").content.decode()
    product = viewer.get("/console/catalog/products/credits/").content.decode()
    offer = viewer.get("/console/catalog/offers/BONUS_10/").content.decode()
    plan = viewer.get("/console/catalog/plans/team/").content.decode()

    assert "<code>CREDITS</code>" in products and "<code>PRO</code>" in products
    assert "9.50 USD" in offers and "10 × CREDITS · 30 days" in offers
    assert "29.00 USD every 1 months · 7-day trial" in plans
    assert "<td>export</td><td>5</td>" in product and "<dt>tier</dt><dd>basic</dd>" in product
    assert "BONUS_10" in product and "TEAM" in product  # where it is sold
    assert 'id="price">9.50 USD<' in offer and "<dt>is_trial</dt><dd>False</dd>" in offer
    assert "100 every 1 months" in plan
    for html in (products, offers, product, offer, plan):
        assert "form_key" not in html and "New product" not in html and "/edit/" not in html


def test_the_product_list_is_paged(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        for i in range(30):
            product_create(key=f"p{i:02d}", name=f"P{i}", product_type="unlimited")
    client = _admin(shop.tenant, "viewer")

    first = client.get("/console/catalog/").content.decode()
    cursor = re.search(r'href="\?cursor=([^"]+)"', first)

    assert cursor and "<code>P29</code>" in first and "<code>CREDITS</code>" not in first
    second = client.get(f"/console/catalog/?cursor={cursor.group(1)}").content.decode()
    assert "<code>CREDITS</code>" in second and "<code>P29</code>" not in second
    assert client.get("/console/catalog/?cursor=nonsense").status_code == 200


def test_an_unknown_key_is_the_consoles_404(shop: TenantFixture) -> None:
    client = _admin(shop.tenant, "viewer")
    for path in ("products/nope", "offers/nope", "plans/nope", "products/bad%20key"):
        response = client.get(f"/console/catalog/{path}/")
        assert response.status_code == 404, path
        assert b"Not found" in response.content


# --- Products


def test_an_admin_creates_a_product_from_rows(shop: TenantFixture) -> None:
    client = _admin(shop.tenant)
    page = client.get("/console/catalog/new-product/")
    assert page.status_code == 200 and b'name="features-0-name"' in page.content

    response = client.post("/console/catalog/new-product/", _product_post(form_key(page.content)))

    assert response.status_code == 302
    assert response["Location"] == "/console/catalog/products/AI_CREDITS/"
    with tenant_context(shop.tenant):
        product = Product.objects.get(key="AI_CREDITS")
    assert product.features == ["small_model", "large_model"]
    assert product.credit_costs == {"large_model": 10}
    assert product.metadata == {
        "team": "ml",
        "weight": 2.5,
        "public": True,
        "limits": {"daily": [1, 2]},
        "features": ["small_model", "large_model"],
    }
    (audit,) = AuditEntry.objects.filter(action="product.create")
    assert (audit.target, audit.actor) == ("product:AI_CREDITS", "admin@example.com")
    shown = client.get(response["Location"]).content.decode()
    assert "Created the product AI_CREDITS." in shown


def test_a_double_submitted_product_is_created_once(shop: TenantFixture) -> None:
    client = _admin(shop.tenant, "owner")
    key = form_key(client.get("/console/catalog/new-product/").content)

    first = client.post("/console/catalog/new-product/", _product_post(key))
    second = client.post("/console/catalog/new-product/", _product_post(key))

    assert first.status_code == second.status_code == 302
    assert second["Location"] == "/console/catalog/products/AI_CREDITS/"
    shown = client.get(second["Location"]).content.decode()
    assert "This form was already sent; nothing more was done." in shown
    with tenant_context(shop.tenant):
        assert Product.objects.filter(key="AI_CREDITS").count() == 1
    assert AuditEntry.objects.filter(action="product.create").count() == 1


def test_a_taken_key_is_refused_in_words_and_nothing_is_kept(shop: TenantFixture) -> None:
    client = _admin(shop.tenant)
    key = form_key(client.get("/console/catalog/new-product/").content)

    response = client.post("/console/catalog/new-product/", _product_post(key, key="bonus_10"))

    assert response.status_code == 409
    assert "BONUS_10 is already a product key, an offer SKU" in response.content.decode()
    assert 'value="AI credits"' in response.content.decode()  # the form keeps what was typed
    assert not Submission.objects.exists() and not AuditEntry.objects.exists()


def test_rows_are_checked_beside_themselves(shop: TenantFixture) -> None:
    client = _admin(shop.tenant)
    key = form_key(client.get("/console/catalog/new-product/").content)
    cases = {
        "features-2-name": ("bad name!", "1–64 letters, digits"),
        "metadata-1-value": ("lots", "Write a number, such as 3 or 2.5."),
        "metadata-3-value": ("{nope", "This is not valid JSON"),
        "costs-1-feature": ("small_model", "Give both the feature and its cost in credits."),
        "metadata-4-value": ("orphan", "Name this value."),
    }
    for field, (value, message) in cases.items():
        response = client.post(
            "/console/catalog/new-product/", _product_post(key, **{field: value})
        )
        assert response.status_code == 422, field
        assert message in response.content.decode(), field
    twice = client.post(
        "/console/catalog/new-product/", _product_post(key, **{"metadata-1-key": "team"})
    )
    assert "Metadata names team twice." in twice.content.decode()
    with tenant_context(shop.tenant):
        assert not Product.objects.filter(key="AI_CREDITS").exists()


def test_the_engine_refuses_credit_costs_on_a_period_product(shop: TenantFixture) -> None:
    client = _admin(shop.tenant)
    key = form_key(client.get("/console/catalog/new-product/").content)

    response = client.post(
        "/console/catalog/new-product/", _product_post(key, product_type="period")
    )

    assert response.status_code == 422
    assert "Only a quantity product can price features in credits." in response.content.decode()
    with tenant_context(shop.tenant):
        assert not Product.objects.filter(key="AI_CREDITS").exists()


def test_more_rows_adds_blank_rows_and_saves_nothing(shop: TenantFixture) -> None:
    client = _admin(shop.tenant)
    key = form_key(client.get("/console/catalog/new-product/").content)

    response = client.post(
        "/console/catalog/new-product/", {**_product_post(key), "more_rows": "1"}
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="features-5-name"' in html and 'value="Large_Model"' in html
    with tenant_context(shop.tenant):
        assert not Product.objects.filter(key="AI_CREDITS").exists()
    assert not AuditEntry.objects.exists()


def test_an_admin_edits_a_product_from_its_rows(shop: TenantFixture) -> None:
    client = _admin(shop.tenant)
    page = client.get("/console/catalog/products/CREDITS/edit/")
    html = page.content.decode()
    assert 'value="export"' in html and 'value="tier"' in html and 'name="key"' not in html
    data = _product_post(
        form_key(page.content),
        name="Credits v2",
        **{"features-0-name": "run", "features-1-name": "", "costs-0-feature": ""},
        **{"costs-0-credits": "", "metadata-0-key": "tier", "metadata-0-value": "gold"},
    )

    response = client.post("/console/catalog/products/CREDITS/edit/", data)

    assert response.status_code == 302
    with tenant_context(shop.tenant):
        product = Product.objects.get(key="CREDITS")
    assert product.name == "Credits v2" and product.features == ["run"]
    assert product.credit_costs == {} and product.metadata["tier"] == "gold"
    assert AuditEntry.objects.get(action="product.update").target == "product:CREDITS"


def test_a_type_fixed_by_batches_is_refused_in_words(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        ann = customer_ensure(CustomerRef(external_id="ann"))
        offer_grant(customer=ann, offer=offer_for_grant("BONUS_10"), kind="bonus")
    client = _admin(shop.tenant)
    key = form_key(client.get("/console/catalog/products/CREDITS/edit/").content)

    response = client.post(
        "/console/catalog/products/CREDITS/edit/",
        _product_post(
            key, product_type="unlimited", **{"costs-0-feature": "", "costs-0-credits": ""}
        ),
    )

    assert response.status_code == 409
    assert "its type and currency flag are fixed" in response.content.decode()
    with tenant_context(shop.tenant):
        assert Product.objects.get(key="CREDITS").product_type == "quantity"
    assert not AuditEntry.objects.exists()


def test_deactivating_a_product_is_confirmed_then_applied_once(
    shop: TenantFixture, sent: dict[str, list[dict[str, Any]]]
) -> None:
    client = _admin(shop.tenant)
    page = client.get("/console/catalog/products/CREDITS/")
    assert b"Deactivate" in page.content
    form = {"form_key": form_key(page.content), "active": "0"}

    asked = client.post("/console/catalog/products/CREDITS/active/", form)

    assert asked.status_code == 200 and b'id="confirm"' in asked.content
    assert b"Offers holding it can no longer be ordered" in asked.content
    with tenant_context(shop.tenant):
        assert Product.objects.get(key="CREDITS").is_active
    confirmed = {**form, "confirmed": "on"}
    first = client.post("/console/catalog/products/CREDITS/active/", confirmed)
    second = client.post("/console/catalog/products/CREDITS/active/", confirmed)

    assert first.status_code == second.status_code == 302
    with tenant_context(shop.tenant):
        assert not Product.objects.get(key="CREDITS").is_active
    assert len(sent["product_deactivated"]) == 1
    assert AuditEntry.objects.filter(action="product.deactivate").count() == 1
    # Activating again needs no confirmation.
    again = form_key(client.get("/console/catalog/products/CREDITS/").content)
    client.post("/console/catalog/products/CREDITS/active/", {"form_key": again, "active": "1"})
    with tenant_context(shop.tenant):
        assert Product.objects.get(key="CREDITS").is_active


# --- Offers


def _offer_post(key: str, **overrides: str) -> dict[str, str]:
    data = {
        "form_key": key,
        "sku": "credits_100",
        "name": "100 credits",
        "price": "19.90",
        "currency": "usd",
        "description": "",
        **_management("items", 2),
        "items-0-product": "CREDITS",
        "items-0-quantity": "100",
        "items-0-period_unit": "months",
        "items-0-period_value": "1",
        "items-1-product": "",
        "items-1-quantity": "1",
        "items-1-period_unit": "forever",
        "items-1-period_value": "",
        **_management("metadata", 1),
        "metadata-0-key": "highlight",
        "metadata-0-kind": "boolean",
        "metadata-0-value": "no",
    }
    data.update(overrides)
    return data


def test_an_admin_creates_an_offer_from_item_rows(shop: TenantFixture) -> None:
    client = _admin(shop.tenant)
    key = form_key(client.get("/console/catalog/new-offer/").content)

    response = client.post("/console/catalog/new-offer/", _offer_post(key))

    assert response.status_code == 302
    assert response["Location"] == "/console/catalog/offers/CREDITS_100/"
    with tenant_context(shop.tenant):
        offer = Offer.objects.get(sku="CREDITS_100")
        items = [
            (i.product.key, i.quantity, i.period_unit, i.period_value) for i in offer.items.all()
        ]
    assert (offer.price, offer.currency, offer.metadata) == (
        Decimal("19.90"),
        "USD",
        {"highlight": False},
    )
    assert items == [("CREDITS", 100, "months", 1)]
    assert AuditEntry.objects.get(action="offer.create").target == "offer:CREDITS_100"


def test_offer_refusals_are_shown_in_words(shop: TenantFixture) -> None:
    client = _admin(shop.tenant)
    key = form_key(client.get("/console/catalog/new-offer/").content)
    with tenant_context(shop.tenant):
        product_create(key="old", name="Old", product_type="quantity", is_active=False)
    cases = [
        ({"currency": "XYZ"}, 422, "XYZ is neither an ISO 4217 code"),
        ({"price": "1.999"}, 422, "USD prices have at most 2 decimal places."),
        ({"items-0-product": ""}, 422, "An offer has at least one item"),
        ({"items-0-period_value": ""}, 422, "How many months?"),
        ({"items-1-product": "OLD"}, 422, "OLD is not active."),
        ({"sku": "credits"}, 409, "CREDITS is already a product key"),
    ]
    for overrides, status, message in cases:
        response = client.post("/console/catalog/new-offer/", _offer_post(key, **overrides))
        assert response.status_code == status, overrides
        assert message in response.content.decode(), overrides
    with tenant_context(shop.tenant):
        assert not Offer.objects.filter(sku="CREDITS_100").exists()
    assert not AuditEntry.objects.exists()


def test_an_offer_holding_an_inactive_product_can_still_be_renamed(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        Product.objects.filter(key="CREDITS").update(is_active=False)
    client = _admin(shop.tenant)
    page = client.get("/console/catalog/offers/BONUS_10/edit/")
    html = page.content.decode()
    assert 'value="CREDITS" selected' in html and "(inactive)" in html
    data = _offer_post(
        form_key(page.content),
        name="Ten credits, renamed",
        price="9.50",
        **{"items-0-quantity": "10", "items-0-period_unit": "days"},
        **{"items-0-period_value": "30", "metadata-0-key": "", "metadata-0-value": ""},
    )

    response = client.post("/console/catalog/offers/BONUS_10/edit/", data)

    assert response.status_code == 302
    with tenant_context(shop.tenant):
        offer = Offer.objects.get(sku="BONUS_10")
    assert offer.name == "Ten credits, renamed" and offer.metadata == {}
    assert AuditEntry.objects.get(action="offer.update").detail["items_replaced"] is False


def test_deactivating_an_offer_and_a_plan_is_confirmed(shop: TenantFixture) -> None:
    client = _admin(shop.tenant, "owner")
    for path, model, lookup in (
        ("offers/BONUS_10", Offer, {"sku": "BONUS_10"}),
        ("plans/TEAM", Plan, {"key": "TEAM"}),
    ):
        key = form_key(client.get(f"/console/catalog/{path}/").content)
        asked = client.post(f"/console/catalog/{path}/active/", {"form_key": key, "active": "0"})
        assert b'id="confirm"' in asked.content
        done = client.post(
            f"/console/catalog/{path}/active/",
            {"form_key": key, "active": "0", "confirmed": "on"},
        )
        assert done.status_code == 302
        with tenant_context(shop.tenant):
            assert not model.objects.get(**lookup).is_active  # type: ignore[attr-defined]
    assert {e.action for e in AuditEntry.objects.all()} == {"offer.deactivate", "plan.deactivate"}


# --- Roles and isolation


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_who_may_not_manage_the_catalog_gets_403_and_changes_nothing(
    shop: TenantFixture, role: str
) -> None:
    owner = _admin(shop.tenant, "owner")
    key = form_key(owner.get("/console/catalog/new-product/").content)
    client = _admin(shop.tenant, role)

    posts = {
        "/console/catalog/new-product/": _product_post(key),
        "/console/catalog/products/CREDITS/edit/": _product_post(key, name="Hacked"),
        "/console/catalog/products/CREDITS/active/": {
            "form_key": key,
            "active": "0",
            "confirmed": "on",
        },
        "/console/catalog/new-offer/": _offer_post(key),
        "/console/catalog/offers/BONUS_10/active/": {
            "form_key": key,
            "active": "0",
            "confirmed": "on",
        },
        "/console/catalog/plans/TEAM/active/": {"form_key": key, "active": "0", "confirmed": "on"},
    }
    for path, data in posts.items():
        assert client.post(path, data).status_code == 403, path
    assert client.get("/console/catalog/new-product/").status_code == 403
    assert client.get("/console/catalog/products/CREDITS/edit/").status_code == 403
    with tenant_context(shop.tenant):
        assert Product.objects.get(key="CREDITS").name == "Credits"
        assert Product.objects.get(key="CREDITS").is_active
        assert not Product.objects.filter(key="AI_CREDITS").exists()
        assert Offer.objects.get(sku="BONUS_10").is_active and Plan.objects.get().is_active
    assert not AuditEntry.objects.exists()


def test_another_tenants_catalog_is_not_found_by_url_or_form(
    shop: TenantFixture, globex: TenantFixture
) -> None:
    with tenant_context(globex.tenant):
        product_create(key="globex_secret", name="Secret", product_type="quantity")
        offer_create(
            sku="globex_offer",
            name="Secret offer",
            price=Decimal("1"),
            currency="USD",
            items=[ItemSpec("GLOBEX_SECRET", 1)],
        )
    client = _admin(shop.tenant)
    key = form_key(client.get("/console/catalog/new-offer/").content)

    for path in (
        "products/GLOBEX_SECRET/",
        "products/GLOBEX_SECRET/edit/",
        "offers/GLOBEX_OFFER/",
        "offers/GLOBEX_OFFER/edit/",
    ):
        page = client.get(f"/console/catalog/{path}")
        assert page.status_code == 404 and b"Secret" not in page.content, path
    edit = client.post(
        "/console/catalog/products/GLOBEX_SECRET/edit/", _product_post(key, name="Mine")
    )
    off = client.post(
        "/console/catalog/offers/GLOBEX_OFFER/active/",
        {"form_key": key, "active": "0", "confirmed": "on"},
    )
    # Naming their product in an item row: unknown here.
    item = client.post(
        "/console/catalog/new-offer/", _offer_post(key, **{"items-0-product": "GLOBEX_SECRET"})
    )

    assert edit.status_code == off.status_code == 404
    assert item.status_code == 422
    assert "Select a valid choice. GLOBEX_SECRET is not one of the available choices." in (
        item.content.decode()
    )
    with tenant_context(globex.tenant):
        assert Product.objects.get(key="GLOBEX_SECRET").name == "Secret"
        assert Offer.objects.get(sku="GLOBEX_OFFER").is_active
    assert not AuditEntry.objects.exists()
