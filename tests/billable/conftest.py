"""Fixtures for the billing engine: the acme schema selected, a small catalog."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.db import connection

from billable.models import Customer, Offer, Product
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import CustomerRef, customer_ensure
from tests.conftest import TenantFixture


@pytest.fixture
def in_acme(acme: TenantFixture) -> Iterator[TenantFixture]:
    """Run service code in acme's schema (inside the test's rolled-back transaction)."""
    connection.set_schema(acme.tenant.schema_name)
    yield acme
    connection.set_schema_to_public()


@pytest.fixture
def catalog(in_acme: TenantFixture) -> dict[str, Product | Offer]:
    items: dict[str, Product | Offer] = {
        "REPORTS": product_create(
            key="reports", name="Reports", product_type="quantity",
            features=["report_generation"],
        ),
        "PRO": product_create(
            key="pro", name="Pro", product_type="period", features=["priority_support"]
        ),
        "UNL": product_create(
            key="unl", name="Unlimited", product_type="unlimited", features=["exports"]
        ),
    }
    items["REPORTS_10"] = offer_create(
        sku="reports_10", name="10 reports", price=Decimal("9.00"), currency="usd",
        items=[ItemSpec("REPORTS", 10, "days", 30)],
    )
    items["REPORTS_5_FOREVER"] = offer_create(
        sku="reports_5_forever", name="5 reports", price=Decimal("4.00"), currency="USD",
        items=[ItemSpec("REPORTS", 5)],
    )
    items["PRO_MONTH"] = offer_create(
        sku="pro_month", name="Pro month", price=Decimal("19.00"), currency="USD",
        items=[ItemSpec("PRO", 1, "months", 1)],
    )
    items["UNL_FOREVER"] = offer_create(
        sku="unl_forever", name="Unlimited", price=Decimal("99.00"), currency="USD",
        items=[ItemSpec("UNL", 1)],
    )
    return items


@pytest.fixture
def alice(in_acme: TenantFixture) -> Customer:
    return customer_ensure(CustomerRef(external_id="alice"))
