"""The overview, merging and erasing in a real browser: the chart of a month of consumption with
its table, orders, webhook health; one person's two customers merged (confirmed), then erased
(confirmed).

Drives Debian's Chromium through Playwright as test_console_browser.py does (same marker, same
skip without /usr/bin/chromium, failing under CI=true). With CONSOLE_SCREENSHOTS=DIR it saves
overview.png, merge.png and erase.png into DIR (docs/console/ holds the ones docs/console.md
shows).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django_tenants.utils import tenant_context

from billable import clock
from billable.models import Customer, ExternalIdentity
from billable.selectors import CustomerRef
from billable.services.customers import customer_ensure
from billable.services.orders import LineIn, order_confirm, order_create
from billing_platform.console.models import AuditEntry
from billing_platform.webhooks.models import Delivery, Endpoint, Event
from tests.billing_platform.console.test_console_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    _require_chromium,
    _shot,
)
from tests.billing_platform.console.test_overview import priced_catalog
from tests.support.console import make_member
from tests.support.console_browser import signed_in_page
from tests.support.servers import live_server_url
from tests.support.tenants import TenantFixture, fresh_tenant

pytestmark = pytest.mark.browser

EMAIL = "owner@overview.example"


@pytest.fixture
def shop(committed: None) -> Iterator[TenantFixture]:
    """A committed tenant with a month of usages, paid orders in two currencies, a failing
    webhook endpoint with a pending delivery, and one person as two customers."""
    with fresh_tenant("console-overview", name="Overview Shop") as fresh:
        with tenant_context(fresh.tenant):
            priced_catalog(["chat", "export", "search"])
            ann = customer_ensure(CustomerRef(external_id="ann-42"))
            customer_ensure(CustomerRef(external_id="ann@example.com", provider="email"))
            for index, (sku, quantity) in enumerate((("PACK_USD", 3), ("PACK_EUR", 2))):
                order = order_create(customer=ann, items=[LineIn(sku, quantity)])
                order_confirm(order=order, payment_id=f"pay_{index}", payment_method="card",
                              actor="test")
            with connection.cursor() as cursor:
                # A month of use: more chat as the weeks go on, exports on weekdays.
                cursor.execute(
                    "INSERT INTO billable_usage (id, customer_id, feature, amount, credits,"
                    " action_type, action_id, metadata, created_at)"
                    " SELECT gen_random_uuid(), %s, f.name, f.base + d * f.slope, 0, 'usage', '',"
                    " '{}'::jsonb, date_trunc('day', now()) - d * interval '1 day'"
                    " + interval '30 seconds'"
                    " FROM generate_series(0, 29) d, (VALUES ('chat', 180, -4), ('search', 40, 1),"
                    " ('export', 25, 0)) f(name, base, slope)"
                    " WHERE f.name <> 'export' OR extract(isodow FROM now() - d * interval"
                    " '1 day') < 6",
                    [ann.pk],
                )
        make_member(fresh.tenant, EMAIL, "owner")
        endpoint = Endpoint.objects.create(
            tenant=fresh.tenant,
            url="http://127.0.0.1:9/billing-hook",
            secret_encrypted="-",
            consecutive_failures=5,
            failing_since=clock.now() - timedelta(hours=4),
        )
        event = Event.objects.create(tenant=fresh.tenant, type="usage.recorded", data={})
        delivery = Delivery.objects.create(
            event=event, endpoint=endpoint, attempts=5, last_status_code=502
        )
        Delivery.objects.filter(pk=delivery.pk).update(
            created_at=clock.now() - timedelta(minutes=95)
        )
        try:
            yield fresh
        finally:
            User.objects.filter(username=EMAIL).delete()


def test_an_owner_reads_the_overview_then_merges_and_erases(shop: TenantFixture) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with tenant_context(shop.tenant):
        ann = Customer.objects.get(identities__external_id="ann-42")
        other = Customer.objects.get(identities__external_id="ann@example.com")
    with live_server_url() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = signed_in_page(browser, base, EMAIL)

            # The overview: the chart, its legend and its table; orders; webhook health.
            expect(page.locator("#consumption svg rect").first).to_be_visible()
            expect(page.locator("#consumption .legend")).to_contain_text("chat")
            expect(page.locator("#orders")).to_contain_text("28.50 USD")
            expect(page.locator("#orders")).to_contain_text("8.00 EUR")
            expect(page.locator("#failing-endpoints")).to_contain_text("5 failures in a row")
            expect(page.locator("#oldest-pending")).to_contain_text("usage.recorded")
            expect(page.locator("#active-customers")).to_have_text("2")
            _shot(page, "overview")
            page.click("#consumption summary")
            expect(page.locator("#usage-table tbody tr")).to_have_count(30)

            # One person, two customers: the one found by mail merges into ann-42.
            page.goto(f"{base}/console/customers/{other.pk}/")
            page.click("#customer-actions >> text=Merge into another customer…")
            page.fill("#id_target", "ann-42")
            page.fill("#id_reason", "the same person signed up by mail")
            page.click("#merge button[type=submit]")
            expect(page.locator("#confirm h1")).to_have_text(
                f"Merge the customer {other.pk} into {ann.pk}?"
            )
            expect(page.locator("#confirm")).to_contain_text("This cannot be undone.")
            _shot(page, "merge")
            page.click("#confirm button[type=submit]")
            expect(page).to_have_url(f"{base}/console/customers/{ann.pk}/")
            expect(page.locator(".messages")).to_contain_text(f"Merged the customer {other.pk}")
            expect(page.locator("#identities")).to_contain_text("email: ann@example.com")

            # Then the person asks to be forgotten.
            page.click("#customer-actions >> text=Erase…")
            page.fill("#id_reason", "asked to be forgotten")
            page.click("#erase button[type=submit]")
            expect(page.locator("#confirm h1")).to_have_text(f"Erase the customer {ann.pk}?")
            expect(page.locator("#confirm")).to_contain_text("the 1 customer merged into it")
            _shot(page, "erase")
            page.click("#confirm button[type=submit]")
            expect(page.locator(".messages")).to_contain_text(f"Erased the customer {ann.pk}")
            expect(page.locator("#identities")).to_contain_text("None")
            expect(page.locator("#customer-actions")).to_have_count(0)
        finally:
            browser.close()

    with tenant_context(shop.tenant):
        assert Customer.objects.get(pk=other.pk).merged_into_id == ann.pk
        assert Customer.objects.get(pk=ann.pk).erased_at is not None
        assert not ExternalIdentity.objects.exists()
    assert sorted(
        AuditEntry.objects.filter(tenant=shop.tenant).values_list("action", flat=True)
    ) == ["customer.erase", "customer.merge"]
