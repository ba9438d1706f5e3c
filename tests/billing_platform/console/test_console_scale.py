"""The customers pages stay indexed with 10,000 customers: a bounded number of queries per page,
and plans that use the indexes instead of reading every customer."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django_tenants.utils import tenant_context

from billable.models import Customer
from billable.selectors import CustomerRef, offer_for_grant
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billable.services.grants import offer_grant
from billable.services.quota import quota_consume
from billing_platform.console import selectors
from tests.support.console import make_member, measured, signed_in_client
from tests.support.crowds import insert_customers
from tests.support.tenants import TenantFixture, fresh_tenant

CUSTOMERS = 10_000


@pytest.fixture(scope="module")
def crowd(django_db_setup: None, django_db_blocker: Any) -> Iterator[TenantFixture]:
    """A committed tenant with 10,000 customers (two identities each) and one busy customer."""
    with django_db_blocker.unblock(), fresh_tenant("console-scale") as fresh:
        with tenant_context(fresh.tenant), connection.cursor() as cursor:
            insert_customers(cursor, CUSTOMERS, {"tg": "tg", "email": "email"})
            cursor.execute("ANALYZE billable_customer")
            cursor.execute("ANALYZE billable_externalidentity")
            product_create(key="credits", name="Credits", product_type="quantity", features=["run"])
            offer_create(
                sku="bonus_100",
                name="Bonus",
                price=Decimal("0"),
                currency="USD",
                items=[ItemSpec("CREDITS", 100)],
            )
            busy = customer_ensure(CustomerRef(external_id="busy"))
            for _ in range(30):
                offer_grant(customer=busy, offer=offer_for_grant("BONUS_100"), kind="bonus")
            for _ in range(60):
                quota_consume(customer=busy, feature="run", amount=1)
        make_member(fresh.tenant, "scale@example.com", "owner")
        try:
            yield fresh
        finally:
            User.objects.filter(username="scale@example.com").delete()


def test_customer_pages_use_a_fixed_number_of_indexed_queries(crowd: TenantFixture) -> None:
    client = signed_in_client("scale@example.com")
    with tenant_context(crowd.tenant):
        busy = Customer.objects.get(identities__external_id="busy")
    pages = {
        "list": ("/console/customers/", 12),
        "search": ("/console/customers/?q=email-99", 12),
        "by id": (f"/console/customers/?q={busy.pk}", 12),
        "customer": (f"/console/customers/{busy.pk}/?feature=run", 30),
        "overview": ("/console/", 16),  # its own reads: test_overview_scale.py
    }
    for name, (path, budget) in pages.items():
        status, best, queries = measured(client, path)
        # Printed for docs/console.md; the machine is shared, so only the queries are asserted.
        print(f"{name}: {best * 1000:.1f} ms, {queries} queries")
        assert status == 200, name
        assert queries <= budget, (name, queries)


def test_the_search_plans_use_the_indexes(crowd: TenantFixture) -> None:
    newest_first = ("-created_at", "-id")
    with tenant_context(crowd.tenant):
        beginning = selectors.customers_matching("tg-42").order_by(*newest_first)[:26].explain()
        newest = selectors.customers_matching("").order_by(*newest_first)[:26].explain()
    assert "identity_external_id_idx" in beginning, beginning
    assert "customer_recent_idx" in newest, newest
