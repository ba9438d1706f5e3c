"""The console's guards in a real browser: a viewer sees no action and its forged POST is
refused; another tenant's customer is a 404 whether named in the URL or in a form; a POST
without the CSRF token is refused; sign-in is throttled after repeated failures.

Drives Debian's Chromium through Playwright as test_console_browser.py does (same marker, same
skip without /usr/bin/chromium, failing under CI=true). With CONSOLE_SCREENSHOTS=DIR it saves
the not-found and throttled pages into DIR.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django_tenants.utils import tenant_context

from billable.models import Customer, Grant, QuotaBatch
from billable.selectors import CustomerRef
from billable.services.catalog import ItemSpec, offer_create, product_create
from billable.services.customers import customer_ensure
from billing_platform.console.models import AuditEntry
from billing_platform.core.ratelimits import CONSOLE_LOGIN, login_unlock
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

VIEWER = "viewer@guards.example"
SUPPORT = "support@guards.example"
THROTTLED = "throttled@guards.example"

# A grant posted from the page's own script, as a hand-made form would send it: the form key
# and the CSRF token are taken from the sign-out form, which every page has.
FORGED_GRANT = """async ([path, offer, token]) => {
    const body = new FormData();
    body.append('csrfmiddlewaretoken', token === null
        ? document.querySelector('input[name=csrfmiddlewaretoken]').value : token);
    body.append('form_key', 'forged-key-0123456789abcdef');
    body.append('offer', offer);
    body.append('reason', 'forged');
    const sent = await fetch(path, {method: 'POST', body, credentials: 'same-origin'});
    return [sent.status, await sent.text()];
}"""


@dataclass
class Guarded:
    mine: TenantFixture
    theirs: TenantFixture
    ann: str
    zed: str


@pytest.fixture
def guarded(committed: None) -> Iterator[Guarded]:
    """Two committed tenants with a bonus offer and one customer each; a viewer and a support
    member of the first only."""
    with (
        fresh_tenant("guards", name="Mine") as mine,
        fresh_tenant("guards", name="Theirs") as theirs,
    ):
        ids = []
        for fixture, external_id in ((mine, "ann-1"), (theirs, "zed-secret")):
            with tenant_context(fixture.tenant):
                product_create(key="credits", name="Credits", product_type="quantity")
                offer_create(
                    sku="bonus_10",
                    name="Ten credits",
                    price=Decimal("0"),
                    currency="USD",
                    items=[ItemSpec("CREDITS", 10)],
                )
                ids.append(str(customer_ensure(CustomerRef(external_id=external_id)).pk))
        make_member(mine.tenant, VIEWER, "viewer")
        make_member(mine.tenant, SUPPORT, "support")
        make_member(mine.tenant, THROTTLED, "support")
        try:
            yield Guarded(mine=mine, theirs=theirs, ann=ids[0], zed=ids[1])
        finally:
            User.objects.filter(username__in=[VIEWER, SUPPORT, THROTTLED]).delete()
            # The failures counted from 127.0.0.1 must not lock the tests that follow.
            login_unlock(username=THROTTLED, ip="127.0.0.1", group=CONSOLE_LOGIN)


def _sign_in(page: object, base: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/console/login/")  # type: ignore[attr-defined]
    page.fill("#id_email", email)  # type: ignore[attr-defined]
    page.fill("#id_password", password)  # type: ignore[attr-defined]
    page.click("main button[type=submit]")  # type: ignore[attr-defined]


def test_roles_isolation_csrf_and_throttling_hold_in_a_browser(guarded: Guarded) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    grant_path = f"/console/customers/{guarded.ann}/grant/"
    with live_server_url() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # A viewer reads the customer but sees no action; a forged grant is refused.
            viewer = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
            viewer.set_default_timeout(20_000)
            _sign_in(viewer, base, VIEWER)
            expect(viewer).to_have_url(f"{base}/console/")
            viewer.goto(f"{base}/console/customers/{guarded.ann}/")
            expect(viewer.locator("#identities")).to_contain_text("ann-1")
            expect(viewer.locator("#grant")).to_have_count(0)
            expect(viewer.locator("#adjust")).to_have_count(0)
            status, body = viewer.evaluate(FORGED_GRANT, [grant_path, "BONUS_10", None])
            assert status == 403 and "does not allow this" in body, (status, body[:300])

            # A support member may grant, but not in another tenant: their customer's id in
            # the URL, in the search box, or as the target of a grant is unknown here.
            support = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
            support.set_default_timeout(20_000)
            _sign_in(support, base, SUPPORT)
            expect(support).to_have_url(f"{base}/console/")
            answer = support.goto(f"{base}/console/customers/{guarded.zed}/")
            assert answer is not None and answer.status == 404
            expect(support.locator("h1")).to_have_text("Not found")
            expect(support.locator("main")).not_to_contain_text("zed-secret")
            _shot(support, "not-found")
            support.goto(f"{base}/console/customers/?q={guarded.zed}")
            expect(support.locator("#customer-results tbody tr")).to_have_count(1)
            expect(support.locator("#customer-results")).not_to_contain_text("zed-secret")
            status, body = support.evaluate(
                FORGED_GRANT, [f"/console/customers/{guarded.zed}/grant/", "BONUS_10", None]
            )
            assert status == 404 and "zed-secret" not in body, status

            # The same grant without the CSRF token: refused before any view runs.
            status, _body = support.evaluate(FORGED_GRANT, [grant_path, "BONUS_10", "forged"])
            assert status == 403, status

            # Five wrong passwords lock the account: the right one is refused too.
            throttled = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
            throttled.set_default_timeout(20_000)
            for _ in range(5):
                _sign_in(throttled, base, THROTTLED, "not-the-password")
                expect(throttled.locator("main")).to_contain_text(
                    "That email and password do not match an account."
                )
            _sign_in(throttled, base, THROTTLED)
            expect(throttled.locator("main")).to_contain_text("Too many failed sign-ins")
            expect(throttled).to_have_url(f"{base}/console/login/")
            _shot(throttled, "throttled")
        finally:
            browser.close()

    for fixture in (guarded.mine, guarded.theirs):
        with tenant_context(fixture.tenant):
            assert not Grant.objects.exists() and not QuotaBatch.objects.exists()
            assert Customer.objects.count() == 1
    assert not AuditEntry.objects.filter(action="customer.grant").exists()
