"""The settings pages and an operator's support session in a real browser: an operator opens a
tenant's console from the admin with a reason, grants under the banner and ends the session; the
tenant's owner then changes its settings (a refusal first) and reads all of it in the audit log.

Drives Debian's Chromium through Playwright as test_console_browser.py does (same marker, same
skip without /usr/bin/chromium). With CONSOLE_SCREENSHOTS=DIR it saves settings.png, audit.png
and support-session.png into DIR (docs/console/ holds the ones docs/console.md shows).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django_tenants.utils import tenant_context

from billable.models import Customer, Grant
from billable.selectors import CustomerRef
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billing_platform.console.models import AuditEntry, SupportSession
from tenants.models import Tenant
from tests.billing_platform.console.test_console_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    _require_chromium,
    _shot,
)
from tests.support.console import PASSWORD, make_member
from tests.support.servers import live_server_url
from tests.support.tenants import TenantFixture, fresh_tenant

pytestmark = pytest.mark.browser

OWNER = "owner@settings.example"
OPERATOR = "olga-operator"
OPERATOR_PASSWORD = "granite-lighthouse-41"


@pytest.fixture
def shop(committed: None) -> Iterator[TenantFixture]:
    """A committed tenant with a bonus offer, a customer `ann-42`, an owner and an operator who
    may change tenants."""
    with fresh_tenant("console-settings", name="Settings Shop") as fresh:
        with tenant_context(fresh.tenant):
            product_create(key="credits", name="Credits", product_type="quantity", features=["run"])
            offer_create(
                sku="bonus_10",
                name="Ten credits",
                price=Decimal("0"),
                currency="EUR",
                items=[ItemSpec("CREDITS", 10)],
            )
            customer_ensure(CustomerRef(external_id="ann-42"))
        make_member(fresh.tenant, OWNER, "owner")
        operator = User.objects.create_user(
            OPERATOR, "olga@operator.example", OPERATOR_PASSWORD, is_staff=True
        )
        operator.user_permissions.set(
            Permission.objects.filter(codename__in=["view_tenant", "change_tenant"])
        )
        try:
            yield fresh
        finally:
            User.objects.filter(username__in=[OWNER, OPERATOR]).delete()


def test_support_session_from_the_admin_then_settings_and_the_audit_log(
    shop: TenantFixture,
) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    # The ORM only outside the Playwright block (its event loop would make Django refuse it).
    tenant_id = shop.tenant.pk
    with tenant_context(shop.tenant):
        ann = Customer.objects.get(identities__external_id="ann-42")
    operator_id = User.objects.get(username=OPERATOR).pk
    with live_server_url() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # The operator: the admin's tenant page, the reason, the console with its banner.
            admin = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
            admin.set_default_timeout(20_000)
            admin.goto(f"{base}/admin/tenants/tenant/{tenant_id}/change/")
            admin.fill("#id_username", OPERATOR)
            admin.fill("#id_password", OPERATOR_PASSWORD)
            admin.click("input[type=submit]")
            admin.click("#support-console")
            expect(admin.locator("#support-start h1")).to_have_text(
                "Open Settings Shop's console"
            )
            admin.fill("#id_reason", "   ")  # blank: the browser sends it, the form refuses it
            admin.click("#support-start button[type=submit]")
            expect(admin.locator(".field.invalid .error")).to_have_text("Say why.")
            admin.fill("#id_reason", "Ticket 4521: ann-42 asks about her credits")
            admin.click("#support-start button[type=submit]")
            expect(admin).to_have_url(f"{base}/console/")
            banner = admin.locator("#support-banner")
            expect(banner).to_contain_text(f"Support session by {OPERATOR} until")
            expect(admin.locator(".top .role")).to_have_text("support")

            admin.goto(f"{base}/console/customers/{ann.pk}/")
            admin.select_option("#id_offer", "BONUS_10")
            admin.fill("#id_reason", "goodwill, ticket 4521")
            admin.click("#grant button[type=submit]")
            expect(admin.locator(".messages")).to_contain_text("Granted BONUS_10")
            expect(banner).to_be_visible()
            _shot(admin, "support-session")
            # No settings form, team or audit log for a support member.
            admin.click("nav.main-nav >> text=Settings")
            expect(admin.locator("#settings-read")).to_be_visible()
            expect(admin.locator("#settings-form")).to_have_count(0)

            admin.click("#support-banner button")
            expect(admin).to_have_url(f"{base}/admin/tenants/tenant/{tenant_id}/change/")
            expect(admin.locator(".messagelist")).to_contain_text("has ended")
            admin.goto(f"{base}/console/")
            expect(admin.locator("#support-none")).to_be_visible()

            # The owner: the settings (refused, then saved), then the whole audit log.
            page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{base}/console/login/")
            page.fill("#id_email", OWNER)
            page.fill("#id_password", PASSWORD)
            page.click("main button[type=submit]")
            expect(page).to_have_url(f"{base}/console/")
            page.click("nav.main-nav >> text=Settings")
            page.fill("#id_idempotency_retention_days", "31")
            page.check("#id_public_catalog")
            page.click("#settings-form button[type=submit]")
            field = page.locator(".field.invalid")
            expect(field).to_have_count(1)
            expect(field).to_contain_text("Idempotency retention days")
            expect(field.locator(".error")).to_have_text(
                "Input should be less than or equal to 30"
            )
            page.fill("#id_idempotency_retention_days", "14")
            page.fill("#id_referral_reward_sku", "bonus_10")
            page.click("#settings-form button[type=submit]")
            expect(page.locator(".messages")).to_contain_text("Settings saved")
            expect(page.locator("#id_referral_reward_sku")).to_have_value("BONUS_10")
            expect(page.locator("#id_public_catalog")).to_be_checked()
            _shot(page, "settings")

            page.click(".tabs >> text=Audit log")
            rows = page.locator("#audit-entries tbody tr")
            expect(rows).to_have_count(4)
            expect(rows.nth(0)).to_contain_text("settings.update")
            expect(rows.nth(1)).to_contain_text("support.ended")
            expect(rows.nth(2)).to_contain_text("customer.grant")
            expect(rows.nth(3)).to_contain_text("support.started")
            _shot(page, "audit")
            page.fill("#id_actor", f"operator:{operator_id}")
            page.click("#audit-filters button")
            expect(rows).to_have_count(3)
            expect(rows.nth(1)).to_contain_text(f"customer:{ann.pk}")
            page.click(".tabs >> text=Team")
            page.click("#audit a:has-text('The full log')")
            expect(page).to_have_url(f"{base}/console/audit/")
        finally:
            browser.close()

    session = SupportSession.objects.get(tenant_id=tenant_id)
    assert session.ended_at is not None and session.operator_id == operator_id
    with tenant_context(shop.tenant):
        assert Grant.objects.get().actor == f"operator:{operator_id}"
    assert Tenant.objects.get(pk=tenant_id).merged_settings["idempotency_retention_days"] == 14
    actions = list(
        AuditEntry.objects.filter(tenant_id=tenant_id)
        .order_by("created_at", "pk")
        .values_list("action", "actor")
    )
    assert actions == [
        ("support.started", f"operator:{operator_id}"),
        ("customer.grant", f"operator:{operator_id}"),
        ("support.ended", f"operator:{operator_id}"),
        ("settings.update", OWNER),
    ]
