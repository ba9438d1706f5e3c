"""The console in a real browser: an invitation accepted, a search, a customer's page, a grant
(sent twice, applied once), signing out and in again.

Drives Debian's Chromium through Playwright, as tests/tenants/test_admin_browser.py does; without
/usr/bin/chromium the test is skipped loudly, and fails under CI=true. With CONSOLE_SCREENSHOTS=DIR
it saves a screenshot of each page it passes into DIR (docs/console/ holds the ones docs/console.md
shows).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django_tenants.utils import tenant_context

from billable.models import Grant, QuotaBatch
from billable.selectors import CustomerRef
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billing_platform.console.models import AuditEntry
from tests.support.servers import live_server_url
from tests.support.tenants import TenantFixture, fresh_tenant

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EMAIL = "founder@example.com"
PASSWORD = "copper-kettle-meadow-5"


def _shot(page: Any, name: str) -> None:
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _require_chromium() -> None:
    if os.access(CHROMIUM, os.X_OK):
        return
    message = (
        f"!!! {CHROMIUM} is missing: the console browser test cannot run. "
        "Install it with `apt-get install chromium` (.ci/run does this in CI). !!!"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def shop(committed: None) -> Iterator[TenantFixture]:
    """A committed tenant with a bonus offer and two customers; dropped with its console rows."""
    with fresh_tenant("console", name="Browser Shop") as fresh:
        with tenant_context(fresh.tenant):
            product_create(key="credits", name="Credits", product_type="quantity", features=["run"])
            offer_create(
                sku="bonus_10",
                name="Ten credits",
                price=Decimal("0"),
                currency="USD",
                items=[ItemSpec("CREDITS", 10)],
            )
            customer_ensure(CustomerRef(external_id="ann-42"))
            customer_ensure(CustomerRef(external_id="bob-7"))
        try:
            yield fresh
        finally:
            User.objects.filter(username=EMAIL).delete()


def test_a_founder_joins_finds_a_customer_and_grants_a_bonus_once(shop: TenantFixture) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    # The ORM is used only outside the Playwright block (its event loop in this thread would
    # make Django refuse synchronous queries).
    with live_server_url() as base:
        out = StringIO()
        call_command("console_invite", shop.tenant.slug, EMAIL, "--base-url", base, stdout=out)
        link = re.search(r"http://\S+/console/invitations/\S+/", out.getvalue())
        assert link, out.getvalue()

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.set_default_timeout(20_000)

                # The invitation: choose a password, land in the console signed in.
                page.goto(link.group(0))
                expect(page.locator("h1")).to_have_text("Join Browser Shop")
                _shot(page, "invitation")
                page.fill("#id_password", PASSWORD)
                page.fill("#id_password_again", PASSWORD)
                page.click("button[type=submit]")
                expect(page).to_have_url(f"{base}/console/")
                expect(page.locator(".messages")).to_contain_text("Welcome to Browser Shop")
                expect(page.locator("#active-customers")).to_have_text("2")
                _shot(page, "overview")

                # The search, by the beginning of an external id.
                page.click("nav >> text=Customers")
                page.fill("#id_q", "ann")
                page.click("form.search button")
                results = page.locator("#customer-results tbody tr")
                expect(results).to_have_count(1)
                expect(results).to_contain_text("default: ann-42")
                _shot(page, "customers")
                results.locator("a").click()

                # The customer's page, then a grant, sent twice.
                expect(page.locator("#identities")).to_contain_text("ann-42")
                expect(page.locator("#balances")).to_contain_text("Nothing usable now.")
                page.select_option("#id_offer", "BONUS_10")
                page.fill("#id_reason", "welcome gift")
                # A double click sends the same form twice: the first copy goes out from the
                # page's script, the second is the click itself.
                status = page.evaluate(
                    """async () => {
                        const form = document.querySelector('#grant form');
                        const sent = await fetch(form.action, {
                            method: 'POST', body: new FormData(form), credentials: 'same-origin',
                        });
                        return sent.status;
                    }"""
                )
                assert status == 200, status  # the redirect to the customer's page, followed
                page.click("#grant button[type=submit]")
                expect(page.locator(".messages")).to_contain_text(
                    "This form was already sent; nothing more was done. Granted BONUS_10"
                )
                expect(page.locator("#balances")).to_contain_text("run")
                expect(page.locator("#ledger tbody tr")).to_have_count(1)
                expect(page.locator("#ledger")).to_contain_text("+10")

                # Why a feature is refused.
                page.fill("#feature", "export")
                page.click("#balances form button")
                expect(page.locator("#explain")).to_contain_text("not_covered")
                _shot(page, "customer")

                # The team page's audit log names the grant and who made it.
                page.click("nav >> text=Team")
                expect(page.locator("#audit tbody tr").first).to_contain_text("customer.grant")
                expect(page.locator("#audit tbody tr").first).to_contain_text(EMAIL)
                _shot(page, "team")

                # Out, and in again with the password.
                page.click("text=Sign out")
                expect(page).to_have_url(f"{base}/console/login/")
                _shot(page, "login")
                page.goto(f"{base}/console/customers/")
                expect(page).to_have_url(re.compile(r".*/console/login/\?next=.*"))
                page.fill("#id_email", EMAIL.upper())
                page.fill("#id_password", PASSWORD)
                page.click("main button[type=submit]")
                expect(page).to_have_url(f"{base}/console/customers/")
                expect(page.locator("#customer-results tbody tr")).to_have_count(2)
            finally:
                browser.close()

    with tenant_context(shop.tenant):
        (grant,) = Grant.objects.all()
        assert (grant.sku, grant.reason) == ("BONUS_10", "welcome gift")
        assert QuotaBatch.objects.count() == 1
    assert AuditEntry.objects.filter(tenant=shop.tenant, action="customer.grant").count() == 1
