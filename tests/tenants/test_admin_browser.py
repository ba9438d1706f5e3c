"""A platform operator onboards a tenant and creates a key in a real browser; each key is shown
once (a reload shows it no more and creates nothing) and works on the API.

Drives Debian's Chromium through Playwright (its own browser download cannot work here). Without
/usr/bin/chromium the test is skipped loudly, and fails under CI=true, where it must be installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth.models import User

from tenants.models import Tenant
from tests.support.servers import live_server_url
from tests.support.tenants import drop_tenants

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
USERNAME = "adm-browser-operator"
PASSWORD = "browser-horse-battery-9"
SLUG = "adm-browser"


def _require_chromium() -> None:
    if os.access(CHROMIUM, os.X_OK):
        return
    message = (
        f"!!! {CHROMIUM} is missing: the admin browser test cannot run. "
        "Install it with `apt-get install chromium` (.ci/run does this in CI). !!!"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser_operator(committed: None) -> Iterator[None]:
    user = User.objects.create_superuser(USERNAME, "browser@example.com", PASSWORD)
    yield
    user.delete()


@pytest.fixture
def cleanup_browser_tenant(committed: None) -> Iterator[None]:
    yield
    drop_tenants(Tenant.objects.filter(slug=SLUG))


def test_operator_onboards_a_tenant_and_its_key_works(
    browser_operator: None, cleanup_browser_tenant: None
) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    # The ORM is used only outside the Playwright block: its event loop in this thread would make
    # Django refuse synchronous queries.

    with live_server_url() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)

            # Log in: the admin sends an anonymous visitor to its login form.
            page.goto(f"{base}/admin/")
            expect(page).to_have_url(f"{base}/admin/login/?next=/admin/")
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            expect(page).to_have_url(f"{base}/admin/")
            page.click("a[href='/admin/tenants/tenant/add/']")

            # Onboard: the slug is prepopulated from the name, then set explicitly.
            expect(page.locator("h1")).to_have_text("Onboard a tenant")
            page.locator("#id_name").press_sequentially("Browser Made")
            expect(page.locator("#id_slug")).to_have_value("browser-made")
            page.fill("#id_slug", SLUG)
            page.fill("#id_rate_limit", "30/m")
            page.click("input[name=_save]")

            key_element = page.locator("#api-key")
            expect(key_element).to_have_count(1)
            raw = key_element.inner_text().strip()
            assert raw.startswith("bk_"), raw
            expect(page.locator("#content-main")).to_contain_text("shown only this once")

            # The page was reached by a redirect: reloading it neither submits the onboarding
            # again nor shows the key again.
            assert "/onboarded/" in page.url
            page.reload()
            expect(page.locator("#api-key")).to_have_count(0)
            expect(page.locator("#api-key-gone")).to_contain_text("shown once already")

            # Once: the tenant's pages do not carry the key.
            page.click("text=Open the tenant")
            expect(page.locator("h1")).to_have_text("Change tenant")
            assert raw not in page.content()

            # A second key, for reading only, from the tenant's page.
            page.click("text=Create an API key")
            expect(page.locator("h1")).to_have_text(f"Create an API key for {SLUG}")
            page.fill("#id_name", "reporting")
            page.check("input[name=scopes][value='billing:read']")
            page.fill("#id_expires_at", "2099-06-30T18:00")
            page.click("input[name=_save]")
            second_element = page.locator("#api-key")
            expect(second_element).to_have_count(1)
            second = second_element.inner_text().strip()
            assert second.startswith("bk_") and second != raw, second
            expect(page.locator("#content-main")).to_contain_text("expires at 2099-06-30 18:00")
            page.reload()
            expect(page.locator("#api-key")).to_have_count(0)
            assert second not in page.content()

            page.goto(f"{base}/admin/tenants/apikey/")
            assert raw not in page.content() and second not in page.content()
            expect(page.locator("#result_list")).to_contain_text(SLUG)
            expect(page.locator("#result_list")).to_contain_text("reporting")
        finally:
            browser.close()

        response = httpx.get(f"{base}/api/v1/keys", headers={"X-API-Key": raw}, timeout=10)
        reads = httpx.get(
            f"{base}/api/v1/billing/products", headers={"X-API-Key": second}, timeout=10
        )
        refused = httpx.get(f"{base}/api/v1/keys", headers={"X-API-Key": second}, timeout=10)

    assert response.status_code == 200, response.text
    names = {item["name"]: item for item in response.json()["items"]}
    assert set(names) == {"onboarding", "reporting"}
    assert names["reporting"]["scopes"] == ["billing:read"]
    assert reads.status_code == 200, reads.text
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    # One tenant for one submitted form, whatever was reloaded.
    tenant = Tenant.objects.get(slug=SLUG)
    assert (tenant.name, tenant.rate_limit, tenant.status) == ("Browser Made", "30/m", "active")
