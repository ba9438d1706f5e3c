"""The orders pages: the filtered list, an order's page, and confirm, cancel and refund, each
confirmed first and applied once through the engine's order services."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from billable.models import BatchState, Customer, LedgerEntry, Order, QuotaBatch
from billable.selectors import CustomerRef
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billable.services.orders import LineIn, order_confirm, order_create
from billing_platform.console import billing_selectors
from billing_platform.console.models import AuditEntry, Submission
from tests.support.console import form_key, make_member, signed_in_client
from tests.support.tenants import TenantFixture


@pytest.fixture
def shop(acme: TenantFixture) -> TenantFixture:
    """acme with a credits offer and two customers, `ann` with a pending order."""
    with tenant_context(acme.tenant):
        product_create(key="credits", name="Credits", product_type="quantity", features=["run"])
        offer_create(
            sku="credits_10",
            name="Ten credits",
            price=Decimal("4.50"),
            currency="EUR",
            items=[ItemSpec("CREDITS", 10)],
        )
        ann = customer_ensure(CustomerRef(external_id="ann"))
        customer_ensure(CustomerRef(external_id="bob"))
        order_create(customer=ann, items=[LineIn(sku="CREDITS_10", quantity=2)])
    return acme


def _order(tenant: Any, external_id: str = "ann") -> Order:
    with tenant_context(tenant):
        return Order.objects.get(customer__identities__external_id=external_id)


def _member(tenant: Any, role: str) -> Client:
    make_member(tenant, f"{role}@example.com", role)
    return signed_in_client(f"{role}@example.com")


def _form_key_of(html: bytes, form_id: str) -> str:
    """The form key of the form inside the section with this id."""
    section = html.decode().split(f'id="{form_id}"', 1)[1]
    return form_key(section)


# --- The list


def test_the_list_filters_by_status_customer_and_dates(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        bob = Customer.objects.get(identities__external_id="bob")
        paid = order_create(customer=bob, items=[LineIn(sku="CREDITS_10", quantity=1)])
        order_confirm(order=paid)
        Order.objects.filter(pk=paid.pk).update(created_at=timezone.now() - timedelta(days=10))
    pending = _order(shop.tenant)
    client = _member(shop.tenant, "viewer")

    def shown(query: str) -> set[str]:
        html = client.get(f"/console/orders/?{query}").content.decode()
        return {o for o in (str(pending.pk), str(paid.pk)) if f"/console/orders/{o}/" in html}

    assert shown("") == {str(pending.pk), str(paid.pk)}
    assert shown("status=paid") == {str(paid.pk)}
    assert shown("customer=bob") == {str(paid.pk)}
    assert shown(f"customer={pending.customer_id}") == {str(pending.pk)}
    assert shown("customer=nobody") == set()
    today = timezone.now().date()
    assert shown(f"created_from={today}") == {str(pending.pk)}
    assert shown(f"created_to={today - timedelta(days=5)}") == {str(paid.pk)}
    # Bad filters are shown as such, never a 500.
    bad = client.get("/console/orders/?created_from=yesterday&status=lost")
    assert bad.status_code == 200 and b"Enter a valid date." in bad.content
    page = client.get("/console/orders/").content.decode()
    assert "9.00 EUR" in page and "2 × CREDITS_10" in page
    assert "13.50 EUR" in page  # this page's total per currency


def test_the_list_is_paged_and_keeps_its_filters(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        bob = Customer.objects.get(identities__external_id="bob")
        for _ in range(billing_selectors.ORDERS_PAGE + 2):
            order_create(customer=bob, items=[LineIn(sku="CREDITS_10", quantity=1)])
    client = _member(shop.tenant, "viewer")

    first = client.get("/console/orders/?status=pending&customer=bob").content.decode()
    link = re.search(r'href="\?([^"]*cursor=[^"]+)"', first)

    assert link and "status=pending" in link.group(1) and "customer=bob" in link.group(1)
    second = client.get("/console/orders/?" + link.group(1).replace("&amp;", "&"))
    assert len(re.findall(r'href="/console/orders/[0-9a-f-]{36}/"', second.content.decode())) == 2
    assert client.get("/console/orders/?cursor=zzz").status_code == 200


def test_an_order_page_shows_items_totals_and_its_customer(shop: TenantFixture) -> None:
    order = _order(shop.tenant)
    html = _member(shop.tenant, "viewer").get(f"/console/orders/{order.pk}/").content.decode()

    assert "<td><code>CREDITS_10</code></td><td>Ten credits</td><td>2</td>" in html
    assert "<td>4.50 EUR</td><td>9.00 EUR</td>" in html
    assert '<tr class="total"><td colspan="4">Total</td><td>9.00 EUR</td>' in html
    assert f'href="/console/customers/{order.customer_id}/"' in html and "default: ann" in html
    assert "form_key" not in html  # a viewer sees no action


# --- Confirm, cancel, refund


def test_confirming_asks_first_then_grants_once(
    shop: TenantFixture, sent: dict[str, list[dict[str, Any]]]
) -> None:
    order = _order(shop.tenant)
    client = _member(shop.tenant, "admin")
    page = client.get(f"/console/orders/{order.pk}/")
    form = {
        "form_key": _form_key_of(page.content, "confirm-order"),
        "payment_id": "pi_123",
        "payment_method": "card",
    }

    asked = client.post(f"/console/orders/{order.pk}/confirm/", form)

    assert asked.status_code == 200 and b'id="confirm"' in asked.content
    assert b"with the payment id pi_123" in asked.content
    assert _order(shop.tenant).status == "pending"
    first = client.post(f"/console/orders/{order.pk}/confirm/", {**form, "confirmed": "on"})
    second = client.post(f"/console/orders/{order.pk}/confirm/", {**form, "confirmed": "on"})

    assert first.status_code == second.status_code == 302
    shown = client.get(second["Location"]).content.decode()
    assert "This form was already sent; nothing more was done. Confirmed the order" in shown
    confirmed = _order(shop.tenant)
    assert (confirmed.status, confirmed.payment_id, confirmed.payment_method) == (
        "paid",
        "pi_123",
        "card",
    )
    with tenant_context(shop.tenant):
        (batch,) = QuotaBatch.objects.all()
        entry = LedgerEntry.objects.get(batch=batch)
    assert batch.initial == 20 and entry.actor == f"console:{first.wsgi_request.user.pk}"
    assert len(sent["order_confirmed"]) == 1
    (audit,) = AuditEntry.objects.filter(action="order.confirm")
    assert audit.target == f"order:{order.pk}" and audit.detail["payment_id"] == "pi_123"


def test_cancelling_a_pending_order(shop: TenantFixture) -> None:
    order = _order(shop.tenant)
    client = _member(shop.tenant, "owner")
    key = _form_key_of(client.get(f"/console/orders/{order.pk}/").content, "cancel-order")

    asked = client.post(f"/console/orders/{order.pk}/cancel/", {"form_key": key, "reason": "dup"})
    assert b"This cannot be undone." in asked.content
    done = client.post(
        f"/console/orders/{order.pk}/cancel/",
        {"form_key": key, "reason": "dup", "confirmed": "on"},
    )

    assert done.status_code == 302
    cancelled = _order(shop.tenant)
    assert (cancelled.status, cancelled.reason) == ("cancelled", "dup")
    page = client.get(f"/console/orders/{order.pk}/").content.decode()
    assert "Cancelled the order" in page and 'id="confirm-order"' not in page
    assert 'id="refund-order"' not in page


def test_refunding_revokes_what_the_order_granted(shop: TenantFixture) -> None:
    order = _order(shop.tenant)
    with tenant_context(shop.tenant):
        order_confirm(order=order)
    client = _member(shop.tenant, "admin")
    page = client.get(f"/console/orders/{order.pk}/").content
    key = _form_key_of(page, "refund-order")

    done = client.post(
        f"/console/orders/{order.pk}/refund/",
        {"form_key": key, "reason": "chargeback", "confirmed": "on"},
    )

    assert done.status_code == 302
    assert _order(shop.tenant).status == "refunded"
    with tenant_context(shop.tenant):
        assert QuotaBatch.objects.get().state == BatchState.REVOKED
    assert AuditEntry.objects.get(action="order.refund").detail == {"reason": "chargeback"}


def test_a_refused_transition_is_shown_in_words_and_changes_nothing(shop: TenantFixture) -> None:
    order = _order(shop.tenant)
    client = _member(shop.tenant, "admin")
    key = _form_key_of(client.get(f"/console/orders/{order.pk}/").content, "cancel-order")
    # Paid elsewhere (the API, a webhook) between rendering and sending.
    with tenant_context(shop.tenant):
        order_confirm(order=order)

    response = client.post(
        f"/console/orders/{order.pk}/cancel/", {"form_key": key, "confirmed": "on"}
    )

    assert response.status_code == 409
    assert "A paid order cannot be cancelled." in response.content.decode()
    assert _order(shop.tenant).status == "paid"
    assert not Submission.objects.exists() and not AuditEntry.objects.exists()


def test_a_payment_id_of_another_order_is_refused(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        bob = Customer.objects.get(identities__external_id="bob")
        other = order_create(customer=bob, items=[LineIn(sku="CREDITS_10", quantity=1)])
        order_confirm(order=other, payment_id="pi_taken")
    order = _order(shop.tenant)
    client = _member(shop.tenant, "admin")
    key = _form_key_of(client.get(f"/console/orders/{order.pk}/").content, "confirm-order")

    response = client.post(
        f"/console/orders/{order.pk}/confirm/",
        {"form_key": key, "payment_id": "pi_taken", "confirmed": "on"},
    )

    assert response.status_code == 409
    assert "This payment_id already paid another order" in response.content.decode()
    assert _order(shop.tenant).status == "pending"


# --- Roles and isolation


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_who_may_not_manage_orders_sees_no_action_and_is_refused(
    shop: TenantFixture, role: str
) -> None:
    order = _order(shop.tenant)
    key = _form_key_of(
        _member(shop.tenant, "owner").get(f"/console/orders/{order.pk}/").content, "cancel-order"
    )
    client = _member(shop.tenant, role)

    page = client.get(f"/console/orders/{order.pk}/")
    assert page.status_code == 200 and b"form_key" not in page.content
    for action in ("confirm", "cancel", "refund"):
        response = client.post(
            f"/console/orders/{order.pk}/{action}/", {"form_key": key, "confirmed": "on"}
        )
        assert response.status_code == 403, action

    assert _order(shop.tenant).status == "pending"
    assert not AuditEntry.objects.exists()


def test_another_tenants_order_is_not_found_by_url_or_filter(
    shop: TenantFixture, globex: TenantFixture
) -> None:
    with tenant_context(globex.tenant):
        product_create(key="secret", name="Secret", product_type="quantity")
        offer_create(
            sku="secret_1",
            name="Secret",
            price=Decimal("1"),
            currency="USD",
            items=[ItemSpec("SECRET", 1)],
        )
        theirs = order_create(
            customer=customer_ensure(CustomerRef(external_id="globex-carol")),
            items=[LineIn(sku="SECRET_1", quantity=1)],
        )
    client = _member(shop.tenant, "owner")
    key = _form_key_of(
        client.get(f"/console/orders/{_order(shop.tenant).pk}/").content, "confirm-order"
    )

    page = client.get(f"/console/orders/{theirs.pk}/")
    listed = client.get(f"/console/orders/?customer={theirs.customer_id}")
    by_identity = client.get("/console/orders/?customer=globex-carol")
    confirm = client.post(
        f"/console/orders/{theirs.pk}/confirm/", {"form_key": key, "confirmed": "on"}
    )

    assert page.status_code == confirm.status_code == 404
    assert b"SECRET_1" not in page.content
    for response in (listed, by_identity):
        assert b"No order matches." in response.content and str(theirs.pk).encode() not in (
            response.content
        )
    with tenant_context(globex.tenant):
        assert Order.objects.get(pk=theirs.pk).status == "pending"
    assert not AuditEntry.objects.exists()


def test_malformed_posts_are_refused_in_words_never_a_500(shop: TenantFixture) -> None:
    order = _order(shop.tenant)
    ann = order.customer_id
    with tenant_context(shop.tenant):
        batch_paths = [
            f"/console/customers/{ann}/batches/{b.pk}/revoke/" for b in QuotaBatch.objects.all()
        ]
    client = _member(shop.tenant, "owner")
    paths = [
        "/console/catalog/new-product/",
        "/console/catalog/new-offer/",
        "/console/catalog/products/CREDITS/edit/",
        "/console/catalog/offers/CREDITS_10/edit/",
        "/console/catalog/products/CREDITS/active/",
        "/console/catalog/offers/CREDITS_10/active/",
        f"/console/orders/{order.pk}/confirm/",
        f"/console/orders/{order.pk}/cancel/",
        f"/console/orders/{order.pk}/refund/",
        f"/console/customers/{ann}/adjust/",
        *batch_paths,
    ]
    junk: list[dict[str, str]] = [
        {},
        {"form_key": "x" * 500, "confirmed": "on", "active": "maybe"},
        {"form_key": "k" * 20, "features-TOTAL_FORMS": "-3", "items-TOTAL_FORMS": "99999999"},
        {"form_key": "k" * 20, "more_rows": "1", "metadata-TOTAL_FORMS": "zz", "amount": "1e9"},
    ]
    for path in paths:
        for data in junk:
            response = client.post(path, data)
            assert response.status_code in (200, 302, 422), (path, data, response.status_code)
    assert client.get("/console/orders/?created_to=2024-13-45&cursor=abc").status_code == 200
    assert _order(shop.tenant).status == "pending"
    assert not AuditEntry.objects.exists()
