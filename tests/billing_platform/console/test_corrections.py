"""A customer's corrections: an adjustment and revoking a batch, each with a reason and a
confirmation, applied once through the engine's `adjustment_create` and `batch_revoke`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from billable.models import Adjustment, BatchState, Customer, LedgerEntry, QuotaBatch
from billable.selectors import CustomerRef, offer_for_grant
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billable.services.grants import offer_grant
from billing_platform.console.models import AuditEntry, Submission
from tests.support.console import form_key, make_member, signed_in_client
from tests.support.tenants import TenantFixture


@pytest.fixture
def shop(acme: TenantFixture) -> TenantFixture:
    """acme with credits (quantity), pro (period) and `ann` holding one batch of 10 credits."""
    with tenant_context(acme.tenant):
        product_create(key="credits", name="Credits", product_type="quantity", features=["run"])
        product_create(key="pro", name="Pro", product_type="period")
        offer_create(
            sku="bonus_10",
            name="Ten credits",
            price=Decimal("0"),
            currency="USD",
            items=[ItemSpec("CREDITS", 10)],
        )
        ann = customer_ensure(CustomerRef(external_id="ann"))
        customer_ensure(CustomerRef(external_id="bob"))
        offer_grant(customer=ann, offer=offer_for_grant("BONUS_10"), kind="bonus")
    return acme


def _customer(tenant: Any, external_id: str = "ann") -> Customer:
    with tenant_context(tenant):
        return Customer.objects.get(identities__external_id=external_id)


def _batch(tenant: Any, external_id: str = "ann") -> QuotaBatch:
    with tenant_context(tenant):
        return QuotaBatch.objects.get(customer__identities__external_id=external_id)


def _member(tenant: Any, role: str) -> Client:
    make_member(tenant, f"{role}@example.com", role)
    return signed_in_client(f"{role}@example.com")


def _adjust_key(client: Client, customer: Customer) -> str:
    html = client.get(f"/console/customers/{customer.pk}/").content.decode()
    return form_key(html.split('id="adjust"', 1)[1])


# --- Adjustments


def test_an_adjustment_is_confirmed_then_applied_once(
    shop: TenantFixture, sent: dict[str, list[dict[str, Any]]]
) -> None:
    ann = _customer(shop.tenant)
    client = _member(shop.tenant, "support")
    form = {
        "form_key": _adjust_key(client, ann),
        "product": "CREDITS",
        "amount": "-4",
        "reason": "double charge",
    }

    asked = client.post(f"/console/customers/{ann.pk}/adjust/", form)

    assert asked.status_code == 200 and b"Debit 4 CREDITS?" in asked.content
    assert b"Reason: double charge" in asked.content
    with tenant_context(shop.tenant):
        assert not Adjustment.objects.exists()
    first = client.post(f"/console/customers/{ann.pk}/adjust/", {**form, "confirmed": "on"})
    second = client.post(f"/console/customers/{ann.pk}/adjust/", {**form, "confirmed": "on"})

    assert first.status_code == second.status_code == 302
    assert "Debited 4 CREDITS." in client.get(first["Location"]).content.decode()
    with tenant_context(shop.tenant):
        adjustment = Adjustment.objects.get()
        assert QuotaBatch.objects.get(customer=ann).remaining == 6
    assert (adjustment.amount, adjustment.reason) == (-4, "double charge")
    assert adjustment.actor == f"console:{first.wsgi_request.user.pk}"
    assert len(sent["adjustment_created"]) == 1
    (audit,) = AuditEntry.objects.filter(action="customer.adjust")
    assert audit.target == f"customer:{ann.pk}" and audit.detail["amount"] == -4


def test_a_credit_makes_a_new_batch(shop: TenantFixture) -> None:
    ann = _customer(shop.tenant)
    client = _member(shop.tenant, "admin")
    form = {
        "form_key": _adjust_key(client, ann),
        "product": "CREDITS",
        "amount": "25",
        "reason": "goodwill",
        "expires_at": "2099-01-01T00:00",
        "confirmed": "on",
    }

    assert client.post(f"/console/customers/{ann.pk}/adjust/", form).status_code == 302

    with tenant_context(shop.tenant):
        batch = QuotaBatch.objects.get(customer=ann, source="adjustment")
    assert (batch.initial, batch.expires_at.year) == (25, 2099)


def test_an_adjustment_refused_by_the_engine_is_shown_and_changes_nothing(
    shop: TenantFixture,
) -> None:
    ann = _customer(shop.tenant)
    client = _member(shop.tenant, "support")
    key = _adjust_key(client, ann)

    too_much = client.post(
        f"/console/customers/{ann.pk}/adjust/",
        {"form_key": key, "product": "CREDITS", "amount": "-50", "reason": "x", "confirmed": "on"},
    )

    assert too_much.status_code == 402
    assert "50 units cannot be debited; 10 are left." in too_much.content.decode()
    with tenant_context(shop.tenant):
        assert not Adjustment.objects.exists()
        assert QuotaBatch.objects.get(customer=ann).remaining == 10
    assert not Submission.objects.exists() and not AuditEntry.objects.exists()
    # The form's own checks: a zero amount, no reason, a product it does not offer.
    for fields, message in (
        ({"amount": "0"}, "Credit (positive) or debit (negative) some units."),
        ({"reason": "  "}, "This field is required."),
        ({"product": "PRO"}, "Select a valid choice. PRO is not one of the available choices."),
    ):
        data = {"form_key": key, "product": "CREDITS", "amount": "1", "reason": "r", **fields}
        response = client.post(f"/console/customers/{ann.pk}/adjust/", data)
        assert response.status_code == 422 and message in response.content.decode(), fields


# --- Revoking a batch


def test_revoking_a_batch_asks_for_a_reason_and_a_confirmation_and_applies_once(
    shop: TenantFixture, sent: dict[str, list[dict[str, Any]]]
) -> None:
    ann, batch = _customer(shop.tenant), _batch(shop.tenant)
    client = _member(shop.tenant, "support")
    page = client.get(f"/console/customers/{ann.pk}/").content.decode()
    path = f"/console/customers/{ann.pk}/batches/{batch.pk}/revoke/"
    assert f'href="{path}"' in page
    key = form_key(client.get(path).content)

    no_reason = client.post(path, {"form_key": key, "reason": ""})
    asked = client.post(path, {"form_key": key, "reason": "fraud"})

    assert no_reason.status_code == 422
    assert asked.status_code == 200 and b"Its 10 remaining units of CREDITS" in asked.content
    assert _batch(shop.tenant).state == BatchState.ACTIVE
    confirmed = {"form_key": key, "reason": "fraud", "confirmed": "on"}
    first = client.post(path, confirmed)
    second = client.post(path, confirmed)

    assert first.status_code == second.status_code == 302
    revoked = _batch(shop.tenant)
    assert (revoked.state, revoked.remaining) == (BatchState.REVOKED, 0)
    with tenant_context(shop.tenant):
        debit = LedgerEntry.objects.get(batch=revoked, direction="debit")
    assert debit.amount == 10 and debit.metadata == {"reason": "fraud"}
    assert len(sent["batch_revoked"]) == 1
    assert AuditEntry.objects.filter(action="customer.revoke_batch").count() == 1


def test_a_batch_already_closed_is_refused_in_words(shop: TenantFixture) -> None:
    ann, batch = _customer(shop.tenant), _batch(shop.tenant)
    client = _member(shop.tenant, "support")
    path = f"/console/customers/{ann.pk}/batches/{batch.pk}/revoke/"
    key = form_key(client.get(path).content)
    client.post(path, {"form_key": key, "reason": "first", "confirmed": "on"})
    again = form_key(client.get(f"/console/customers/{ann.pk}/").content)  # any fresh key

    response = client.post(path, {"form_key": again, "reason": "second", "confirmed": "on"})

    assert response.status_code == 409
    assert "The batch is revoked." in response.content.decode()
    assert AuditEntry.objects.filter(action="customer.revoke_batch").count() == 1


# --- Roles and isolation


def test_a_viewer_sees_no_correction_and_is_refused(shop: TenantFixture) -> None:
    ann, batch = _customer(shop.tenant), _batch(shop.tenant)
    key = _adjust_key(_member(shop.tenant, "owner"), ann)
    viewer = _member(shop.tenant, "viewer")

    page = viewer.get(f"/console/customers/{ann.pk}/").content.decode()
    assert 'id="adjust"' not in page and "/revoke/" not in page
    path = f"/console/customers/{ann.pk}/batches/{batch.pk}/revoke/"
    responses = [
        viewer.get(path),
        viewer.post(path, {"form_key": key, "reason": "x", "confirmed": "on"}),
        viewer.post(
            f"/console/customers/{ann.pk}/adjust/",
            {
                "form_key": key,
                "product": "CREDITS",
                "amount": "5",
                "reason": "x",
                "confirmed": "on",
            },
        ),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403]
    assert _batch(shop.tenant).state == BatchState.ACTIVE
    with tenant_context(shop.tenant):
        assert not Adjustment.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_batch_of_another_customer_or_tenant_is_not_found(
    shop: TenantFixture, globex: TenantFixture
) -> None:
    ann, bob = _customer(shop.tenant), _customer(shop.tenant, "bob")
    batch = _batch(shop.tenant)
    with tenant_context(globex.tenant):
        product_create(key="credits", name="Credits", product_type="quantity")
        offer_create(
            sku="secret_5",
            name="Secret",
            price=Decimal("0"),
            currency="USD",
            items=[ItemSpec("CREDITS", 5)],
        )
        carol = customer_ensure(CustomerRef(external_id="carol"))
        offer_grant(customer=carol, offer=offer_for_grant("SECRET_5"), kind="bonus")
        theirs = QuotaBatch.objects.get(customer=carol)
    client = _member(shop.tenant, "owner")
    key = _adjust_key(client, ann)
    confirmed = {"form_key": key, "reason": "x", "confirmed": "on"}

    paths = [
        f"/console/customers/{bob.pk}/batches/{batch.pk}/revoke/",  # ann's batch, bob's page
        f"/console/customers/{ann.pk}/batches/{theirs.pk}/revoke/",  # globex's batch
        f"/console/customers/{carol.pk}/batches/{theirs.pk}/revoke/",  # globex's customer
    ]
    for path in paths:
        assert client.get(path).status_code == 404, path
        assert client.post(path, confirmed).status_code == 404, path
    adjust = client.post(
        f"/console/customers/{carol.pk}/adjust/",
        {"form_key": key, "product": "CREDITS", "amount": "5", "reason": "x", "confirmed": "on"},
    )

    assert adjust.status_code == 404 and b"carol" not in adjust.content
    assert _batch(shop.tenant).state == BatchState.ACTIVE
    with tenant_context(globex.tenant):
        assert QuotaBatch.objects.get(pk=theirs.pk).state == BatchState.ACTIVE
        assert not Adjustment.objects.exists()
    assert not AuditEntry.objects.exists()
