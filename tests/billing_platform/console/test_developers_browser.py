"""The developers pages in a real browser: a key made (its secret shown once, then working) and
revoked; an endpoint registered, its event types changed, disabled and enabled, its secret
rotated, a test event sent and delivered to a local receiver; the delivery's page with both
attempts, and a redelivery.

Drives Debian's Chromium through Playwright as test_console_browser.py does (same marker, same
skip without /usr/bin/chromium, failing under CI=true). With CONSOLE_SCREENSHOTS=DIR it saves
developers.png, new-key.png, webhook.png and delivery.png into DIR.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connections
from standardwebhooks.webhooks import Webhook

from billing_platform.console.models import AuditEntry
from billing_platform.webhooks.models import Delivery, Endpoint
from tenants.models import ApiKey
from tests.billing_platform.console.test_console_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    _require_chromium,
    _shot,
)
from tests.support.console import make_member
from tests.support.console_browser import signed_in_page
from tests.support.servers import Receiver, Reply, live_server_url, running_receiver
from tests.support.tenants import TenantFixture, fresh_tenant
from tests.support.webhooks import drain

pytestmark = pytest.mark.browser

EMAIL = "admin@devs.example"


@pytest.fixture
def team(committed: None, settings: Any) -> Iterator[TenantFixture]:
    """A committed tenant with an admin; loopback receivers allowed, retries at once."""
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0, 0]
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    with fresh_tenant("console-developers", name="Browser Devs") as fresh:
        make_member(fresh.tenant, EMAIL, "admin")
        try:
            yield fresh
        finally:
            User.objects.filter(username=EMAIL).delete()


def _off_the_loop(work: Callable[[], Any]) -> Any:
    """Run database work on a thread of its own: Playwright's loop runs on this one."""

    def run() -> Any:
        try:
            return work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def _status(url: str, key: str) -> int:
    """The status the API answers a GET with this key (through the live server)."""
    return httpx.get(url, headers={"X-API-Key": key}, timeout=10).status_code


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def test_an_admin_runs_the_developers_pages(team: TenantFixture, receiver: Receiver) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with live_server_url() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = signed_in_page(browser, base, EMAIL)

            # A key: its secret shown once, with a curl example and the n8n hint.
            page.click("nav.main-nav >> text=Developers")
            expect(page.locator("#key-list tbody tr")).to_have_count(1)  # onboarding's
            page.fill("#id_name", "n8n production")
            page.check("input[name=scopes][value='billing:grant']")
            page.click("#new-key button")
            expect(page.locator(".messages")).to_contain_text("Created the key n8n production")
            secret = page.locator("#new-key-secret").inner_text()
            expect(page.locator("#try-curl")).to_contain_text(secret)
            expect(page.locator("#n8n-base")).to_have_text(f"{base}/api/v1")
            _shot(page, "new-key")
            balance = f"{base}/api/v1/billing/balance?provider=n8n&external_id=x"
            assert _status(balance, secret) == 200
            page.reload()
            expect(page.locator("#key-secret")).to_have_count(0)

            # Revoked after its confirmation.
            page.click("#revoke-key button")
            expect(page.locator("#confirm")).to_contain_text("This cannot be undone.")
            page.click("#confirm button[type=submit]")
            expect(page.locator("#key-status")).to_have_text("revoked")
            assert _status(balance, secret) == 401
            page.click(".crumbs a")
            expect(page.locator("#key-list tbody tr")).to_have_count(2)
            expect(page.locator("#key-list")).to_contain_text("revoked")
            _shot(page, "developers")

            # An endpoint for the local receiver; its signing secret shown once.
            page.click(".tabs >> text=Webhooks")
            page.fill("#id_url", receiver.url)
            page.fill("#id_description", "n8n workflow")
            page.check("input[name=event_types][value='order.created']")
            page.click("#new-endpoint button")
            expect(page.locator(".messages")).to_contain_text(f"Registered {receiver.url}.")
            first_secret = page.locator("#new-webhook-secret").inner_text()
            assert first_secret.startswith("whsec_")

            # Event types changed; disabled (confirmed) and enabled again.
            page.check("#endpoint-types input[value='quota.depleted']")
            page.click("#endpoint-types button")
            expect(page.locator("#endpoint-facts")).to_contain_text("quota.depleted")
            page.click("#endpoint-active button")
            expect(page.locator("#confirm h1")).to_contain_text("Disable")
            page.click("#confirm button[type=submit]")
            expect(page.locator("#endpoint-status")).to_have_text("disabled")
            page.click("#endpoint-active button")
            expect(page.locator("#endpoint-status")).to_have_text("active")

            # Rotated: the new secret shown once; both sign for a day.
            page.click("#rotate-secret button")
            page.click("#confirm button[type=submit]")
            new_secret = page.locator("#new-webhook-secret").inner_text()
            assert new_secret.startswith("whsec_") and new_secret != first_secret

            # A test event: refused once by the receiver, then taken.
            receiver.script = [Reply(status=500, headers={"X-Receiver": "warming up"},
                                     body=b'{"error": "not yet"}')]
            page.click("#test-endpoint button")
            expect(page.locator(".messages")).to_contain_text("webhook.test")
            _off_the_loop(drain)
            received = receiver.wait_for(2)
            for secret_ in (new_secret, first_secret):
                Webhook(secret_).verify(received[1].body, received[1].headers)
            page.reload()
            expect(page.locator("#delivery-list tbody tr")).to_have_count(1)
            expect(page.locator("#delivery-list")).to_contain_text("succeeded")
            _shot(page, "webhook")

            # The delivery's page: both attempts, request and answer; then sent again.
            page.click("#delivery-list tbody a")
            expect(page.locator("#attempts article")).to_have_count(2)
            expect(page.locator("#attempts")).to_contain_text("HTTP 500")
            expect(page.locator("#attempts")).to_contain_text("warming up")
            expect(page.locator("#attempts")).to_contain_text("webhook-signature")
            expect(page.locator("#delivery-body")).to_contain_text('"type":"webhook.test"')
            _shot(page, "delivery")
            page.click("#redeliver button")
            expect(page.locator(".messages")).to_contain_text("as a new delivery")
            expect(page.locator("#delivery-list tbody tr")).to_have_count(2)
            _off_the_loop(drain)
            assert receiver.wait_for(3)[2].headers["webhook-id"] == received[0].headers[
                "webhook-id"
            ]
        finally:
            browser.close()

    endpoint = Endpoint.objects.get(tenant=team.tenant)
    assert endpoint.event_types == ["order.created", "quota.depleted"] and endpoint.is_active
    assert Delivery.objects.filter(endpoint=endpoint).count() == 2
    assert ApiKey.objects.get(tenant=team.tenant, name="n8n production").revoked_at is not None
    assert sorted(
        AuditEntry.objects.filter(tenant=team.tenant).values_list("action", flat=True)
    ) == [
        "delivery.redeliver",
        "key.create",
        "key.revoke",
        "webhook.create",
        "webhook.disable",
        "webhook.enable",
        "webhook.rotate",
        "webhook.test",
        "webhook.update",
    ]
