"""The customers pages: search, a customer's page, and the grant applied once per form."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from billable.models import Customer, Grant, LedgerEntry, Offer, QuotaBatch
from billable.selectors import CustomerRef, offer_for_grant
from billable.services.catalog import ItemSpec, offer_create, offer_update, product_create
from billable.services.customers import customer_ensure, customer_identify
from billable.services.grants import offer_grant
from billable.services.merge import customer_merge
from billable.services.quota import quota_consume
from billing_platform.console import selectors
from billing_platform.console.models import AuditEntry, Submission
from tests.support.console import form_key, make_member, signed_in_client
from tests.support.tenants import TenantFixture, fresh_tenant


@pytest.fixture
def shop(acme: TenantFixture) -> TenantFixture:
    """acme with a credits product, a bonus offer and the customer `ann-42`."""
    with tenant_context(acme.tenant):
        product_create(key="credits", name="Credits", product_type="quantity", features=["run"])
        offer_create(
            sku="bonus_10",
            name="Ten credits",
            price=Decimal("0"),
            currency="USD",
            items=[ItemSpec("CREDITS", 10)],
        )
        customer_ensure(CustomerRef(external_id="ann-42"))
    return acme


def _ann(tenant: Any) -> Customer:
    with tenant_context(tenant):
        return Customer.objects.get(identities__external_id="ann-42")


def _grant(client: Client, customer: Customer, key: str, **fields: str) -> Any:
    return client.post(
        f"/console/customers/{customer.pk}/grant/",
        {"form_key": key, "offer": "BONUS_10", "reason": "sorry for the outage", **fields},
    )


# --- Search


def test_search_finds_by_external_id_beginning_and_by_id(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        bob = customer_ensure(CustomerRef(external_id="bob@example.com", provider="email"))
    make_member(shop.tenant, "ann@example.com", "viewer")
    client = signed_in_client("ann@example.com")

    by_beginning = client.get("/console/customers/?q=bob@")
    by_id = client.get(f"/console/customers/?q={bob.pk}")
    nobody = client.get("/console/customers/?q=carol")

    assert b"email: bob@example.com" in by_beginning.content
    assert b"ann-42" not in by_beginning.content
    assert b"email: bob@example.com" in by_id.content and b"ann-42" not in by_id.content
    assert b"No customer matches" in nobody.content


def test_the_list_is_paged_newest_first(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        for i in range(selectors.SEARCH_PAGE + 3):
            customer_ensure(CustomerRef(external_id=f"page-{i:03d}"))
        first = selectors.customer_search(query="page-")
        second = selectors.customer_search(query="page-", cursor=first.next_cursor)

    assert len(first.items) == selectors.SEARCH_PAGE and first.next_cursor
    assert len(second.items) == 3 and second.next_cursor is None
    assert not {c.pk for c in first.items} & {c.pk for c in second.items}
    make_member(shop.tenant, "ann@example.com", "viewer")
    client = signed_in_client("ann@example.com")
    page = client.get("/console/customers/?q=page-")
    assert f"cursor={first.next_cursor}".encode() in page.content
    # A cursor the page never issued shows the first page instead of failing.
    assert client.get("/console/customers/?cursor=!!").status_code == 200


def test_search_by_identity_uses_the_index(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant), connection.cursor() as cursor:
        # On Citus the worker plans the query: the setting below must reach it (on plain
        # PostgreSQL a `citus.` setting is a placeholder that changes nothing).
        cursor.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT 1 FROM billable_externalidentity WHERE external_id LIKE 'ann%%'"
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "identity_external_id_idx" in plan, plan


# --- A customer's page


def test_the_customer_page_shows_balances_ledger_and_why_a_feature_is_refused(
    shop: TenantFixture,
) -> None:
    ann = _ann(shop.tenant)
    make_member(shop.tenant, "owner@example.com", "owner")
    client = signed_in_client("owner@example.com")
    _grant(client, ann, form_key(client.get(f"/console/customers/{ann.pk}/").content))
    with tenant_context(shop.tenant):
        quota_consume(customer=ann, feature="run", amount=3)

    page = client.get(f"/console/customers/{ann.pk}/?feature=export")
    html = page.content.decode()

    assert page.status_code == 200
    assert "ann-42" in html
    assert "<td>run</td>" in html and "<td>7</td>" in html  # 10 granted, 3 used
    assert "refused — <code>not_covered</code>" in html
    assert f"console:{page.wsgi_request.user.pk}" in html  # who, in the ledger
    allowed = client.get(f"/console/customers/{ann.pk}/?feature=run").content.decode()
    assert "usable, 7 left" in allowed


def test_a_malformed_or_unknown_customer_id_is_a_404_page(shop: TenantFixture) -> None:
    make_member(shop.tenant, "owner@example.com", "owner")
    client = signed_in_client("owner@example.com")
    for path in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = client.get(f"/console/customers/{path}/")
        assert response.status_code == 404
        assert b"Not found" in response.content


def test_the_ledger_is_paged(shop: TenantFixture) -> None:
    ann = _ann(shop.tenant)
    with tenant_context(shop.tenant):
        for _ in range(selectors.LEDGER_PAGE + 1):
            offer_grant(customer=ann, offer=offer_for_grant("BONUS_10"), kind="bonus")
        first = selectors.customer_ledger(customer=ann)
        second = selectors.customer_ledger(customer=ann, cursor=first.next_cursor)
    assert len(first.items) == selectors.LEDGER_PAGE and len(second.items) == 1
    assert first.items[0].pk > first.items[-1].pk > second.items[0].pk


# --- The grant


def test_a_grant_goes_through_the_engine_with_its_event_and_audit_entry(
    shop: TenantFixture, sent: dict[str, list[dict[str, Any]]]
) -> None:
    ann = _ann(shop.tenant)
    owner = make_member(shop.tenant, "owner@example.com", "support")
    client = signed_in_client("owner@example.com")
    key = form_key(client.get(f"/console/customers/{ann.pk}/").content)

    response = _grant(client, ann, key, expires_at="2099-01-01T00:00")

    assert response.status_code == 302 and response["Location"] == f"/console/customers/{ann.pk}/"
    assert "Granted BONUS_10" in client.get(response["Location"]).content.decode()
    with tenant_context(shop.tenant):
        grant = Grant.objects.get()
        batch = QuotaBatch.objects.get(customer=ann)
        entry = LedgerEntry.objects.get(batch=batch)
    assert (grant.kind, grant.sku, grant.reason) == ("bonus", "BONUS_10", "sorry for the outage")
    assert grant.actor == f"console:{owner.pk}" == entry.actor
    assert (batch.initial, batch.expires_at.year) == (10, 2099)
    (audit,) = selectors.audit_entries(tenant=shop.tenant).items
    assert (audit.action, audit.target, audit.actor) == (
        "customer.grant",
        f"customer:{ann.pk}",
        "owner@example.com",
    )
    assert audit.detail["grant_id"] == str(grant.pk) and audit.ip == "127.0.0.1"
    (signal,) = sent["grant_created"]
    assert signal["grant"].pk == grant.pk


def test_a_double_submitted_grant_applies_once(shop: TenantFixture) -> None:
    ann = _ann(shop.tenant)
    make_member(shop.tenant, "owner@example.com", "owner")
    client = signed_in_client("owner@example.com")
    key = form_key(client.get(f"/console/customers/{ann.pk}/").content)

    first = _grant(client, ann, key)
    second = _grant(client, ann, key)

    assert first.status_code == second.status_code == 302
    shown = client.get(second["Location"]).content.decode()
    assert "This form was already sent; nothing more was done. Granted BONUS_10" in shown
    with tenant_context(shop.tenant):
        assert Grant.objects.count() == 1
        assert QuotaBatch.objects.filter(customer=ann).count() == 1
    assert AuditEntry.objects.filter(action="customer.grant").count() == 1
    # A new rendering of the form has a new key: granting again is a new grant.
    third = _grant(client, ann, form_key(client.get(f"/console/customers/{ann.pk}/").content))
    assert third.status_code == 302
    with tenant_context(shop.tenant):
        assert Grant.objects.count() == 2


def test_a_refused_grant_shows_the_reason_and_changes_nothing(shop: TenantFixture) -> None:
    ann = _ann(shop.tenant)
    make_member(shop.tenant, "owner@example.com", "owner")
    client = signed_in_client("owner@example.com")
    key = form_key(client.get(f"/console/customers/{ann.pk}/").content)
    # The offer is deactivated between rendering and sending.
    with tenant_context(shop.tenant):
        offer_update(offer=Offer.objects.get(sku="BONUS_10"), is_active=False)

    response = _grant(client, ann, key)

    assert response.status_code == 422
    assert "BONUS_10 is not one of the available choices" in response.content.decode()
    with tenant_context(shop.tenant):
        assert not Grant.objects.exists()
    assert not Submission.objects.exists() and not AuditEntry.objects.exists()


def test_an_engine_refusal_is_shown_beside_its_field_and_the_form_can_be_sent_again(
    shop: TenantFixture,
) -> None:
    ann = _ann(shop.tenant)
    make_member(shop.tenant, "owner@example.com", "owner")
    client = signed_in_client("owner@example.com")
    key = form_key(client.get(f"/console/customers/{ann.pk}/").content)

    # offer_grant refuses an expiry past the latest one stored (422 validation_error).
    refused = _grant(client, ann, key, expires_at="9999-06-01T00:00")

    assert refused.status_code == 422
    form = refused.context["grant_form"]
    assert form.errors["expires_at"] == ["expires_at is at most 9999-01-01."]
    with tenant_context(shop.tenant):
        assert not Grant.objects.exists()
    assert not Submission.objects.exists() and not AuditEntry.objects.exists()
    # The same form (same key), corrected, applies.
    assert _grant(client, ann, key).status_code == 302
    with tenant_context(shop.tenant):
        assert Grant.objects.count() == 1


def test_a_grant_without_a_reason_or_with_a_past_expiry_is_refused(shop: TenantFixture) -> None:
    ann = _ann(shop.tenant)
    make_member(shop.tenant, "owner@example.com", "owner")
    client = signed_in_client("owner@example.com")
    key = form_key(client.get(f"/console/customers/{ann.pk}/").content)

    blank = _grant(client, ann, key, reason="   ")
    past = _grant(client, ann, key, expires_at="2001-01-01T00:00")
    stale = _grant(client, ann, "short")

    assert blank.status_code == past.status_code == stale.status_code == 422
    assert "This field is required." in blank.content.decode()
    assert "The expiry must be in the future." in past.content.decode()
    assert "This form is out of date" in stale.content.decode()
    with tenant_context(shop.tenant):
        assert not Grant.objects.exists()


# --- The same form sent at once from several connections (committed data, real threads)


@pytest.fixture
def committed_shop(committed: None) -> Iterator[TenantFixture]:
    with fresh_tenant("console-race") as fresh:
        with tenant_context(fresh.tenant):
            product_create(key="credits", name="Credits", product_type="quantity")
            offer_create(
                sku="bonus_10",
                name="Ten credits",
                price=Decimal("0"),
                currency="USD",
                items=[ItemSpec("CREDITS", 10)],
            )
            customer_ensure(CustomerRef(external_id="ann-42"))
        make_member(fresh.tenant, "racer@example.com", "support")
        try:
            yield fresh
        finally:
            User.objects.filter(username="racer@example.com").delete()


def test_the_same_grant_form_sent_at_once_applies_once(committed_shop: TenantFixture) -> None:
    ann = _ann(committed_shop.tenant)
    signed = signed_in_client("racer@example.com")
    key = form_key(signed.get(f"/console/customers/{ann.pk}/").content)
    barrier = threading.Barrier(6)
    answers: list[int] = []

    def send() -> None:
        try:
            client = Client()
            client.cookies = signed.cookies
            barrier.wait(timeout=30)
            answers.append(_grant(client, ann, key).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert answers == [302] * 6
    with tenant_context(committed_shop.tenant):
        assert Grant.objects.count() == 1
        assert QuotaBatch.objects.count() == 1
    assert AuditEntry.objects.filter(tenant=committed_shop.tenant).count() == 1


def test_metadata_shows_whatever_its_keys(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        customer_identify(
            provider="default", external_id="ann-42", profile={"items": 3, "plan": "gold"}
        )
    ann = _ann(shop.tenant)
    make_member(shop.tenant, "viewer@example.com", "viewer")

    page = signed_in_client("viewer@example.com").get(f"/console/customers/{ann.pk}/")

    assert page.status_code == 200
    assert "<dt>items</dt><dd>3</dd><dt>plan</dt><dd>gold</dd>" in page.content.decode()


def test_a_grant_to_a_merged_customer_goes_to_the_one_it_was_merged_into(
    shop: TenantFixture,
) -> None:
    ann = _ann(shop.tenant)
    with tenant_context(shop.tenant):
        target = customer_ensure(CustomerRef(external_id="ann@example.com", provider="email"))
        customer_merge(target=target, source=ann)
    make_member(shop.tenant, "owner@example.com", "owner")
    client = signed_in_client("owner@example.com")
    page = client.get(f"/console/customers/{ann.pk}/")
    assert "Merged into" in page.content.decode()

    response = _grant(client, ann, form_key(page.content))

    assert response["Location"] == f"/console/customers/{target.pk}/"
    with tenant_context(shop.tenant):
        assert Grant.objects.get().customer_id == target.pk


def test_form_keys_are_forgotten_after_a_week(shop: TenantFixture) -> None:
    ann = _ann(shop.tenant)
    make_member(shop.tenant, "owner@example.com", "owner")
    client = signed_in_client("owner@example.com")
    old_key = form_key(client.get(f"/console/customers/{ann.pk}/").content)
    _grant(client, ann, old_key)
    Submission.objects.update(created_at=timezone.now() - timedelta(days=8))

    _grant(client, ann, form_key(client.get(f"/console/customers/{ann.pk}/").content))

    assert list(Submission.objects.values_list("key", flat=True)) != [old_key]
    assert Submission.objects.count() == 1
