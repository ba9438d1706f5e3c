"""The catalog, orders and corrections pages in a real browser: a product made from rows, an
offer made and deactivated (confirmed), a plan made, repriced and its first version retired, an
order confirmed, an adjustment and a revoked batch.

Drives Debian's Chromium through Playwright as test_console_browser.py does (same marker, same
skip without /usr/bin/chromium, failing under CI=true). With CONSOLE_SCREENSHOTS=DIR it saves a
screenshot of each page it passes into DIR (docs/console/ holds the ones docs/console.md shows).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django_tenants.utils import tenant_context

from billable.models import Adjustment, BatchState, Offer, Order, Plan, Product, QuotaBatch
from billable.selectors import CustomerRef
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billable.services.orders import LineIn, order_create
from billing_platform.console.models import AuditEntry
from tests.billing_platform.console.test_console_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    _require_chromium,
    _shot,
)
from tests.support.console import make_member
from tests.support.console_browser import signed_in_page
from tests.support.servers import live_server_url
from tests.support.tenants import TenantFixture, fresh_tenant

pytestmark = pytest.mark.browser

EMAIL = "admin@shop.example"


@pytest.fixture
def shop(committed: None) -> Iterator[TenantFixture]:
    """A committed tenant with credits, an offer, `ann` with a pending order, and an admin."""
    with fresh_tenant("console-billing", name="Browser Shop") as fresh:
        with tenant_context(fresh.tenant):
            product_create(key="credits", name="Credits", product_type="quantity", features=["run"])
            offer_create(
                sku="credits_10",
                name="Ten credits",
                price=Decimal("4.50"),
                currency="EUR",
                items=[ItemSpec("CREDITS", 10, "days", 30)],
            )
            ann = customer_ensure(CustomerRef(external_id="ann-42"))
            order_create(customer=ann, items=[LineIn(sku="CREDITS_10", quantity=2)])
        make_member(fresh.tenant, EMAIL, "admin")
        try:
            yield fresh
        finally:
            User.objects.filter(username=EMAIL).delete()


def test_an_admin_runs_the_catalog_and_orders_pages(shop: TenantFixture) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with tenant_context(shop.tenant):
        order = Order.objects.get()
    with live_server_url() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = signed_in_page(browser, base, EMAIL)

            # A product from rows: features, a credit cost, metadata of two kinds.
            page.click("nav.main-nav >> text=Catalog")
            expect(page.locator("#products tbody tr")).to_have_count(1)
            page.click("text=New product")
            page.fill("#id_key", "ai_credits")
            page.fill("#id_name", "AI credits")
            page.select_option("#id_product_type", "quantity")
            page.fill("#id_features-0-name", "small_model")
            page.fill("#id_features-1-name", "large_model")
            page.fill("#id_costs-0-feature", "large_model")
            page.fill("#id_costs-0-credits", "10")
            page.fill("#id_metadata-0-key", "team")
            page.fill("#id_metadata-0-value", "ml")
            page.fill("#id_metadata-1-key", "public")
            page.select_option("#id_metadata-1-kind", "boolean")
            page.fill("#id_metadata-1-value", "yes")
            _shot(page, "product-form")
            page.click("#product-form button:has-text('Create the product')")
            expect(page).to_have_url(f"{base}/console/catalog/products/AI_CREDITS/")
            expect(page.locator(".messages")).to_contain_text("Created the product AI_CREDITS.")
            expect(page.locator("#credit-costs")).to_contain_text("large_model")
            page.click("nav.main-nav >> text=Catalog")
            expect(page.locator("#products tbody tr")).to_have_count(2)
            _shot(page, "catalog")

            # An offer from an item row, then deactivated after its confirmation.
            page.click(".tabs >> text=Offers")
            page.click("text=New offer")
            page.fill("#id_sku", "ai_500")
            page.fill("#id_name", "500 AI credits")
            page.fill("#id_price", "12.00")
            page.fill("#id_currency", "eur")
            page.select_option("#id_items-0-product", "AI_CREDITS")
            page.fill("#id_items-0-quantity", "500")
            page.click("#offer-form button:has-text('Create the offer')")
            expect(page.locator("#price")).to_have_text("12.00 EUR")
            expect(page.locator("#items")).to_contain_text("AI_CREDITS")
            _shot(page, "offer")
            page.click("#active-form button")
            expect(page.locator("#confirm h1")).to_have_text("Deactivate the offer AI_500?")
            _shot(page, "confirm")
            page.click("#confirm button[type=submit]")
            expect(page.locator(".messages")).to_contain_text("Deactivated the offer AI_500.")
            expect(page.locator("h1 .badge")).to_have_text("inactive")

            # A plan from rows: an allowance and a value; then its price changed (version 2)
            # and version 1 retired after its confirmation.
            page.click("nav.main-nav >> text=Catalog")
            page.click(".tabs >> text=Plans")
            page.click("text=New plan")
            page.fill("#id_key", "team")
            page.fill("#id_name", "Team")
            page.fill("#id_price", "29")
            page.fill("#id_currency", "eur")
            page.fill("#id_trial_days", "7")
            page.select_option("#id_entitlements-0-entitlement_type", "allowance")
            page.select_option("#id_entitlements-0-product", "AI_CREDITS")
            page.fill("#id_entitlements-0-amount", "1000")
            page.select_option("#id_entitlements-1-entitlement_type", "value")
            page.fill("#id_entitlements-1-name", "seats")
            page.select_option("#id_entitlements-1-kind", "number")
            page.fill("#id_entitlements-1-value", "5")
            _shot(page, "plan-form")
            page.click("#plan-form button:has-text('Create the plan')")
            expect(page.locator(".messages")).to_contain_text("Created the plan TEAM.")
            expect(page.locator("#versions")).to_contain_text("1000 every 1 months")
            page.click(".heading >> text=Edit")
            page.fill("#id_price", "39")
            page.click("#plan-form button:has-text('Save')")
            expect(page.locator(".messages")).to_contain_text("its terms are now version 2")
            page.click("#retire-1 button")
            expect(page.locator("#confirm h1")).to_have_text("Retire version 1 of the plan TEAM?")
            page.click("#confirm button[type=submit]")
            expect(page.locator("#versions")).to_contain_text("Version 1 · retired")
            _shot(page, "plan")

            # The orders list, filtered; the order confirmed after its confirmation.
            page.click("nav.main-nav >> text=Orders")
            page.select_option("#id_status", "pending")
            page.click("#order-filters button")
            expect(page.locator("#order-results tbody tr")).to_have_count(1)
            expect(page.locator("#order-results")).to_contain_text("9.00 EUR")
            _shot(page, "orders")
            page.click(f"a[href='/console/orders/{order.pk}/']")
            page.fill("#id_payment_id", "pi_browser")
            page.click("#confirm-order button")
            expect(page.locator("#confirm")).to_contain_text("with the payment id pi_browser")
            page.click("#confirm button[type=submit]")
            expect(page.locator("#order-status")).to_have_text("paid")
            expect(page.locator("#refund-order")).to_be_visible()
            _shot(page, "order")

            # On the customer's page: a debit adjustment, then the batch revoked.
            page.click("#order-facts a[href^='/console/customers/']")
            page.select_option("#id_product", "CREDITS")
            page.fill("#adjust #id_amount", "-5")
            page.fill("#adjust #id_reason", "duplicate order line")
            page.click("#adjust button")
            expect(page.locator("#confirm h1")).to_have_text("Debit 5 CREDITS?")
            page.click("#confirm button[type=submit]")
            expect(page.locator(".messages")).to_contain_text("Debited 5 CREDITS.")
            page.click("#batches a.revoke")
            page.fill("#id_reason", "chargeback")
            page.click("#revoke button")
            expect(page.locator("#confirm")).to_contain_text("Its 15 remaining units of CREDITS")
            page.click("#confirm button[type=submit]")
            expect(page.locator("#batches")).to_contain_text("revoked")
            _shot(page, "corrections")
        finally:
            browser.close()

    with tenant_context(shop.tenant):
        assert Product.objects.get(key="AI_CREDITS").credit_costs == {"large_model": 10}
        assert not Offer.objects.get(sku="AI_500").is_active
        assert Order.objects.get().status == "paid"
        plan = Plan.objects.get(key="TEAM")
        assert plan.current_version == 2 and plan.versions.get(version=1).retired_at is not None
        assert Adjustment.objects.get().amount == -5
        assert QuotaBatch.objects.get().state == BatchState.REVOKED
    assert sorted(
        AuditEntry.objects.filter(tenant=shop.tenant).values_list("action", flat=True)
    ) == [
        "customer.adjust",
        "customer.revoke_batch",
        "offer.create",
        "offer.deactivate",
        "order.confirm",
        "plan.create",
        "plan.retire_version",
        "plan.update",
        "product.create",
    ]
