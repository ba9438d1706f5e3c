"""Merging a customer into another and erasing a customer from the console: admins and owners
only, a reason and a confirmation each, applied once through the engine's `customer_merge` and
`customer_erase`, with `customer.merge` / `customer.erase` in the audit log."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from billable.models import Customer, ExternalIdentity, QuotaBatch
from billable.selectors import CustomerRef, offer_for_grant
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billable.services.grants import offer_grant
from billing_platform.console.models import AuditEntry, Submission
from tests.support.console import PASSWORD, form_key, make_member, signed_in_client
from tests.support.tenants import TenantFixture


@pytest.fixture
def shop(acme: TenantFixture) -> TenantFixture:
    """acme with `ann` (one batch) and `ann-2` (another batch, by mail): one person, two
    customers; and `bob`."""
    with tenant_context(acme.tenant):
        product_create(key="credits", name="Credits", product_type="quantity", features=["run"])
        offer_create(
            sku="bonus_10",
            name="Ten credits",
            price=Decimal("0"),
            currency="USD",
            items=[ItemSpec("CREDITS", 10)],
        )
        for provider, external_id in (("default", "ann"), ("email", "ann-2")):
            customer = customer_ensure(CustomerRef(external_id=external_id, provider=provider))
            Customer.objects.filter(pk=customer.pk).update(metadata={"name": "Ann"})
            offer_grant(customer=customer, offer=offer_for_grant("BONUS_10"), kind="bonus")
        customer_ensure(CustomerRef(external_id="bob"))
    return acme


def _customer(tenant: Any, external_id: str) -> Customer:
    with tenant_context(tenant):
        return Customer.objects.get(identities__external_id=external_id)


def _fresh(tenant: Any, customer: Customer) -> Customer:
    with tenant_context(tenant):
        return Customer.objects.get(pk=customer.pk)


def _member(tenant: Any, role: str) -> Client:
    make_member(tenant, f"{role}@example.com", role)
    return signed_in_client(f"{role}@example.com")


def _key(client: Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.content[:300]
    return form_key(page.content)


# --- Merge


def test_a_merge_is_confirmed_then_applied_once(
    shop: TenantFixture, sent: dict[str, list[dict[str, Any]]]
) -> None:
    source, target = _customer(shop.tenant, "ann-2"), _customer(shop.tenant, "ann")
    admin = _member(shop.tenant, "admin")
    path = f"/console/customers/{source.pk}/merge/"
    form = {"form_key": _key(admin, path), "target": "ann", "reason": "signed up twice"}

    asked = admin.post(path, form)

    assert asked.status_code == 200
    assert f"Merge the customer {source.pk} into {target.pk}?".encode() in asked.content
    assert b"This cannot be undone." in asked.content
    assert b"Reason: signed up twice" in asked.content
    # Without `confirmed` nothing moved.
    assert _fresh(shop.tenant, source).merged_into_id is None
    assert not AuditEntry.objects.exists() and not sent["customer_merged"]

    first = admin.post(path, {**form, "confirmed": "on"})
    again = admin.post(path, {**form, "confirmed": "on"}, follow=True)

    assert first.status_code == 302 and first["Location"] == f"/console/customers/{target.pk}/"
    assert _fresh(shop.tenant, source).merged_into_id == target.pk
    with tenant_context(shop.tenant):
        assert QuotaBatch.objects.filter(customer=target).count() == 2
        assert set(
            ExternalIdentity.objects.filter(customer=target).values_list("external_id", flat=True)
        ) == {"ann", "ann-2"}
    assert len(sent["customer_merged"]) == 1
    assert b"This form was already sent; nothing more was done. Merged" in again.content
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target) == ("customer.merge", f"customer:{target.pk}")
    assert entry.detail["source"] == str(source.pk) and entry.detail["reason"] == "signed up twice"
    assert entry.detail["moved"]["batches"] == 1
    assert Submission.objects.count() == 1


def test_the_target_is_named_by_its_id_and_a_refusal_is_shown_in_words(
    shop: TenantFixture,
) -> None:
    source, target = _customer(shop.tenant, "ann-2"), _customer(shop.tenant, "ann")
    owner = _member(shop.tenant, "owner")
    path = f"/console/customers/{source.pk}/merge/"
    key = _key(owner, path)

    itself = owner.post(
        path, {"form_key": key, "target": str(source.pk), "reason": "x", "confirmed": "on"}
    )
    bob = _customer(shop.tenant, "bob")
    conflict = owner.post(
        f"/console/customers/{bob.pk}/merge/",
        {"form_key": key, "target": "ann", "reason": "x", "confirmed": "on"},
    )
    no_reason = owner.post(path, {"form_key": key, "target": str(target.pk), "reason": " "})
    by_id = owner.post(path, {"form_key": key, "target": str(target.pk), "reason": "twice"})

    assert itself.status_code == 422 and b"same" in itself.content.lower()
    # Both hold a different "default" identity: the engine's refusal, in its words.
    assert conflict.status_code == 409
    assert b"Both customers have a different" in conflict.content
    assert no_reason.status_code == 422 and b"This field is required." in no_reason.content
    assert by_id.status_code == 200 and f"into {target.pk}?".encode() in by_id.content
    assert _fresh(shop.tenant, source).merged_into_id is None
    assert not AuditEntry.objects.exists()
    # The refused form's key was rolled back with it: the corrected form goes through.
    done = owner.post(
        path, {"form_key": key, "target": str(target.pk), "reason": "twice", "confirmed": "on"}
    )
    assert done.status_code == 302
    assert _fresh(shop.tenant, source).merged_into_id == target.pk


def test_another_tenants_customer_is_not_a_merge_target(
    shop: TenantFixture, globex: TenantFixture
) -> None:
    source = _customer(shop.tenant, "ann-2")
    with tenant_context(globex.tenant):
        theirs = customer_ensure(CustomerRef(external_id="globex-carol"))
    owner = _member(shop.tenant, "owner")
    path = f"/console/customers/{source.pk}/merge/"
    key = _key(owner, path)

    answers = [
        owner.post(path, {"form_key": key, "target": target, "reason": "x", "confirmed": "on"})
        for target in (str(theirs.pk), "globex-carol")
    ]
    by_url = owner.post(
        f"/console/customers/{theirs.pk}/merge/",
        {"form_key": key, "target": "ann", "reason": "x", "confirmed": "on"},
    )

    for answer in answers:
        assert answer.status_code == 404
        assert b"No customer of this team has this id or external id." in answer.content
        assert b"globex-carol" not in answer.content.replace(b'value="globex-carol"', b"")
    assert by_url.status_code == 404
    assert _fresh(shop.tenant, source).merged_into_id is None
    with tenant_context(globex.tenant):
        assert Customer.objects.get(pk=theirs.pk).merged_into_id is None
    assert not AuditEntry.objects.exists()


# --- Erase


def test_an_erase_is_confirmed_then_applied_once(shop: TenantFixture) -> None:
    ann = _customer(shop.tenant, "ann")
    owner = _member(shop.tenant, "owner")
    path = f"/console/customers/{ann.pk}/erase/"
    form = {"form_key": _key(owner, path), "reason": "asked to be forgotten"}

    asked = owner.post(path, form)

    assert asked.status_code == 200 and f"Erase the customer {ann.pk}?".encode() in asked.content
    assert b"This cannot be undone." in asked.content
    assert _fresh(shop.tenant, ann).erased_at is None

    first = owner.post(path, {**form, "confirmed": "on"})
    again = owner.post(path, {**form, "confirmed": "on"}, follow=True)

    assert first.status_code == 302 and first["Location"] == f"/console/customers/{ann.pk}/"
    erased = _fresh(shop.tenant, ann)
    assert erased.erased_at is not None and erased.metadata == {}
    with tenant_context(shop.tenant):
        assert not ExternalIdentity.objects.filter(customer=ann).exists()
        # The ledger stays.
        assert QuotaBatch.objects.filter(customer=ann).count() == 1
    assert b"This form was already sent; nothing more was done. Erased" in again.content
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target) == ("customer.erase", f"customer:{ann.pk}")
    assert entry.detail == {"customer_ids": [str(ann.pk)], "reason": "asked to be forgotten"}
    # The page says so, and offers neither merge nor erase any more.
    page = owner.get(f"/console/customers/{ann.pk}/").content.decode()
    assert "Erased on" in page and "/erase/" not in page and "/merge/" not in page


def test_erasing_a_merged_customers_id_erases_the_one_it_was_merged_into(
    shop: TenantFixture,
) -> None:
    source, target = _customer(shop.tenant, "ann-2"), _customer(shop.tenant, "ann")
    admin = _member(shop.tenant, "admin")
    merge = f"/console/customers/{source.pk}/merge/"
    admin.post(
        merge,
        {"form_key": _key(admin, merge), "target": "ann", "reason": "twice", "confirmed": "on"},
    )
    path = f"/console/customers/{source.pk}/erase/"

    asked = admin.post(path, {"form_key": _key(admin, path), "reason": "forget me"})

    assert f"Erase the customer {target.pk}?".encode() in asked.content
    assert b"those of the 1 customer merged into it" in asked.content
    key = form_key(asked.content)
    assert admin.post(path, {"form_key": key, "reason": "forget me", "confirmed": "on"})[
        "Location"
    ] == f"/console/customers/{target.pk}/"
    assert _fresh(shop.tenant, source).erased_at is not None
    assert _fresh(shop.tenant, target).erased_at is not None
    entry = AuditEntry.objects.get(action="customer.erase")
    assert sorted(entry.detail["customer_ids"]) == sorted([str(source.pk), str(target.pk)])


def test_another_tenants_customer_cannot_be_erased(
    shop: TenantFixture, globex: TenantFixture
) -> None:
    with tenant_context(globex.tenant):
        theirs = customer_ensure(CustomerRef(external_id="globex-carol"))
    owner = _member(shop.tenant, "owner")
    key = _key(owner, f"/console/customers/{_customer(shop.tenant, 'bob').pk}/erase/")

    answers = [
        owner.get(f"/console/customers/{theirs.pk}/erase/"),
        owner.post(
            f"/console/customers/{theirs.pk}/erase/",
            {"form_key": key, "reason": "x", "confirmed": "on"},
        ),
    ]

    assert [a.status_code for a in answers] == [404, 404]
    assert all(b"globex-carol" not in a.content for a in answers)
    with tenant_context(globex.tenant):
        assert Customer.objects.get(pk=theirs.pk).erased_at is None
    assert not AuditEntry.objects.exists()


# --- Roles and CSRF


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_merge_and_erase_are_for_admins_and_owners(shop: TenantFixture, role: str) -> None:
    source, target = _customer(shop.tenant, "ann-2"), _customer(shop.tenant, "ann")
    key = _key(_member(shop.tenant, "owner"), f"/console/customers/{source.pk}/erase/")
    member = _member(shop.tenant, role)

    page = member.get(f"/console/customers/{source.pk}/").content.decode()
    responses = [
        member.get(f"/console/customers/{source.pk}/merge/"),
        member.get(f"/console/customers/{source.pk}/erase/"),
        member.post(
            f"/console/customers/{source.pk}/merge/",
            {"form_key": key, "target": str(target.pk), "reason": "x", "confirmed": "on"},
        ),
        member.post(
            f"/console/customers/{source.pk}/erase/",
            {"form_key": key, "reason": "x", "confirmed": "on"},
        ),
    ]

    assert "/merge/" not in page and "/erase/" not in page
    assert [r.status_code for r in responses] == [403, 403, 403, 403]
    refreshed = _fresh(shop.tenant, source)
    assert refreshed.merged_into_id is None and refreshed.erased_at is None
    assert not AuditEntry.objects.exists()


def test_an_admin_sees_the_links(shop: TenantFixture) -> None:
    ann = _customer(shop.tenant, "ann")
    page = _member(shop.tenant, "admin").get(f"/console/customers/{ann.pk}/").content.decode()
    assert f"/console/customers/{ann.pk}/merge/" in page
    assert f"/console/customers/{ann.pk}/erase/" in page


def test_an_erase_without_its_csrf_token_is_refused(shop: TenantFixture) -> None:
    ann = _customer(shop.tenant, "ann")
    make_member(shop.tenant, "owner@example.com", "owner")
    browser = Client(enforce_csrf_checks=True)
    token = browser.get("/console/login/").cookies["csrftoken"].value
    signed = browser.post(
        "/console/login/",
        {"email": "owner@example.com", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert signed.status_code == 302
    path = f"/console/customers/{ann.pk}/erase/"
    key = form_key(browser.get(path).content)

    refused = browser.post(path, {"form_key": key, "reason": "x", "confirmed": "on"})

    assert refused.status_code == 403
    assert _fresh(shop.tenant, ann).erased_at is None
    assert not AuditEntry.objects.exists()
