"""The overview: consumption per feature per day (an inline SVG chart and its table; past days
cached, today summed on every view), active customers, orders and revenue per currency,
subscriptions by status and webhook health — the current tenant's only."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django_tenants.utils import tenant_context

from billable import clock
from billable.models import Customer
from billable.selectors import CustomerRef
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billable.services.orders import LineIn, order_confirm, order_create
from billable.services.subscriptions import subscription_create
from billing_platform.webhooks.models import Delivery, Endpoint, Event
from tests.support.billing import team_plan
from tests.support.console import make_member, signed_in_client
from tests.support.tenants import TenantFixture


def priced_catalog(features: list[str]) -> None:
    """CREDITS with `features`, and two packs of 100: PACK_USD (9.50 USD), PACK_EUR (4.00 EUR)."""
    product_create(key="credits", name="Credits", product_type="quantity", features=features)
    for sku, price, currency in (("pack_usd", "9.50", "USD"), ("pack_eur", "4.00", "EUR")):
        offer_create(
            sku=sku,
            name=sku,
            price=Decimal(price),
            currency=currency,
            items=[ItemSpec("CREDITS", 100)],
        )


@pytest.fixture
def shop(acme: TenantFixture) -> TenantFixture:
    """acme with a product of two features, two offers (USD, EUR) and two customers."""
    with tenant_context(acme.tenant):
        priced_catalog(["run", "export"])
        customer_ensure(CustomerRef(external_id="ann"))
        customer_ensure(CustomerRef(external_id="bob"))
    return acme


def _viewer(tenant: Any) -> Client:
    make_member(tenant, "viewer@example.com", "viewer")
    return signed_in_client("viewer@example.com")


def _used(tenant: Any, feature: str, amount: int, days_ago: int) -> None:
    """A usage written in SQL at noon (UTC) `days_ago` days back (0: a minute ago)."""
    now = clock.now()
    when = (
        now - timedelta(minutes=1)
        if days_ago == 0
        else (now - timedelta(days=days_ago)).replace(hour=12, minute=0)
    )
    with tenant_context(tenant), connection.cursor() as cursor:
        ann = Customer.objects.get(identities__external_id="ann")
        cursor.execute(
            "INSERT INTO billable_usage (id, customer_id, feature, amount, credits, action_type,"
            " action_id, metadata, created_at) VALUES (gen_random_uuid(), %s, %s, %s, %s,"
            " 'usage', '', '{}'::jsonb, %s)",
            [ann.pk, feature, amount, amount, when],
        )


def _cell(html: str, day: str, column: int) -> str:
    row = re.search(rf'<tr><th scope="row">{day}</th>(.*?)</tr>', html)
    assert row, f"no row for {day}"
    return re.findall(r"<td>(\d+)</td>", row.group(1))[column]


def test_consumption_per_feature_per_day_is_drawn_and_tabled(shop: TenantFixture) -> None:
    today = clock.now().date()
    two_days_ago = f"{today - timedelta(days=2):%Y-%m-%d}"
    _used(shop.tenant, "export", 5, days_ago=2)
    _used(shop.tenant, "run", 3, days_ago=0)
    _used(shop.tenant, "run", 4, days_ago=0)
    _used(shop.tenant, "run", 1000, days_ago=40)  # before the chart's 30 days
    client = _viewer(shop.tenant)

    html = client.get("/console/").content.decode()

    # The chart: inline SVG with a title, a description and a <title> per segment.
    assert '<svg role="img"' in html and "<script" not in html
    assert f"<title>{two_days_ago}: export 5</title>" in html
    assert f"<title>{today:%Y-%m-%d}: run 7</title>" in html
    assert "run: 7 units; export: 5 units" in html  # the busiest first, 30 days only
    # The table fallback: one row a day, one column a feature (run, export).
    assert _cell(html, f"{today:%Y-%m-%d}", 0) == "7"
    assert _cell(html, two_days_ago, 1) == "5"
    assert html.count('<th scope="row">') == 30

    # Past days are kept in the cache; today is summed again on every view.
    _used(shop.tenant, "export", 2, days_ago=2)
    _used(shop.tenant, "run", 1, days_ago=0)
    html = client.get("/console/").content.decode()
    assert _cell(html, f"{today:%Y-%m-%d}", 0) == "8"
    assert _cell(html, two_days_ago, 1) == "5"
    cache.clear()
    html = client.get("/console/").content.decode()
    assert _cell(html, two_days_ago, 1) == "7"


def test_an_empty_tenant_says_so(shop: TenantFixture) -> None:
    html = _viewer(shop.tenant).get("/console/").content.decode()

    assert "Nothing was used in the last 30 days." in html and "<svg" not in html
    assert "No orders." in html and "No subscriptions." in html
    assert "No webhook endpoints." in html
    assert '<span class="figure" id="active-customers">2</span>' in html


def test_orders_and_revenue_per_currency(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        ann = Customer.objects.get(identities__external_id="ann")
        paid = order_create(customer=ann, items=[LineIn("PACK_USD", 2)])
        order_confirm(order=paid, payment_id="pay_1", payment_method="card", actor="test")
        order_create(customer=ann, items=[LineIn("PACK_USD", 1)])
        order_create(customer=ann, items=[LineIn("PACK_EUR", 1)])

    html = _viewer(shop.tenant).get("/console/").content.decode()

    section = html.split('id="orders"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(.*?)</td>",
                      section)
    assert rows == [("EUR", "1", "0", "0", "0.00 EUR"), ("USD", "2", "1", "0", "19.00 USD")]
    assert '<span class="figure" id="orders-count">3</span>' in html


def test_subscriptions_by_status(shop: TenantFixture) -> None:
    with tenant_context(shop.tenant):
        plan = team_plan()
        for external_id in ("ann", "bob"):
            subscription_create(
                customer=Customer.objects.get(identities__external_id=external_id), plan=plan
            )

    html = _viewer(shop.tenant).get("/console/").content.decode()

    section = html.split('id="subscriptions"', 1)[1].split("</section>", 1)[0]
    assert '<th scope="row">trialing</th><td>2</td>' in section
    assert "active" not in section


def test_webhook_health_shows_this_tenants_endpoints_only(
    shop: TenantFixture, globex: TenantFixture
) -> None:
    now = clock.now()
    failing = Endpoint.objects.create(
        tenant=shop.tenant,
        url="http://127.0.0.1:9/failing?token=s3cret",
        secret_encrypted="-",
        consecutive_failures=4,
        failing_since=now - timedelta(hours=3),
    )
    Endpoint.objects.create(
        tenant=shop.tenant,
        url="http://127.0.0.1:9/off",
        secret_encrypted="-",
        is_active=False,
        disabled_at=now,
        disabled_reason="failed for 3 days",
    )
    Endpoint.objects.create(tenant=shop.tenant, url="http://127.0.0.1:9/fine", secret_encrypted="-")
    theirs = Endpoint.objects.create(
        tenant=globex.tenant,
        url="http://127.0.0.1:9/globex-secret",
        secret_encrypted="-",
        consecutive_failures=9,
    )
    for endpoint, age, event_type in (
        (failing, timedelta(hours=2), "grant.created"),
        (failing, timedelta(minutes=5), "usage.recorded"),
        (theirs, timedelta(days=3), "order.paid"),
    ):
        event = Event.objects.create(tenant=endpoint.tenant, type=event_type, data={})
        delivery = Delivery.objects.create(
            event=event, endpoint=endpoint, attempts=3, last_status_code=503
        )
        Delivery.objects.filter(pk=delivery.pk).update(created_at=now - age)

    html = _viewer(shop.tenant).get("/console/").content.decode()

    section = html.split('id="webhooks"', 1)[1].split("</section>", 1)[0]
    assert "3 endpoints; 2 deliveries pending." in section
    # Every member reads this page: a URL's query string (a token, often) is not shown.
    assert "<code>grant.created</code> to http://127.0.0.1:9/failing?…, waiting 2" in section
    assert "s3cret" not in html
    assert "last answer HTTP 503" in section
    assert "4 failures in a row" in section
    assert "http://127.0.0.1:9/off — failed for 3 days" in section
    assert "fine" not in section
    assert "globex" not in html and "order.paid" not in html
    assert '<span class="figure bad" id="webhook-problems">2</span>' in html


def test_another_tenants_consumption_is_never_shown_nor_cached_for_this_one(
    shop: TenantFixture, globex: TenantFixture
) -> None:
    with tenant_context(globex.tenant):
        customer_ensure(CustomerRef(external_id="ann"))
    _used(globex.tenant, "globex_secret", 9, days_ago=2)
    _used(shop.tenant, "export", 5, days_ago=2)
    make_member(globex.tenant, "globex@example.com", "viewer")
    theirs = signed_in_client("globex@example.com").get("/console/").content.decode()
    assert "globex_secret 9" in theirs  # their past days are now in the cache

    ours = _viewer(shop.tenant).get("/console/").content.decode()

    assert "globex_secret" not in ours
    assert "export: 5 units" in ours
