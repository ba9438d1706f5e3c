"""The Team page's actions in a real browser: an owner invites someone and revokes the
invitation, changes a member's role, then removes the member after the confirmation.

Drives Debian's Chromium through Playwright as test_console_browser.py does (same marker, same
skip without /usr/bin/chromium, failing under CI=true); with CONSOLE_SCREENSHOTS=DIR it saves
the Team page after the changes as team-actions.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User

from billing_platform.console.models import AuditEntry, Invitation, Membership
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

OWNER = "owner@team-browser.example"
MEMBER = "member@team-browser.example"


@pytest.fixture
def team(committed: None) -> Iterator[TenantFixture]:
    with fresh_tenant("console-team", name="Team Shop") as fresh:
        make_member(fresh.tenant, OWNER, "owner")
        make_member(fresh.tenant, MEMBER, "viewer")
        try:
            yield fresh
        finally:
            User.objects.filter(username__in=[OWNER, MEMBER]).delete()


def test_an_owner_invites_revokes_changes_a_role_and_removes_a_member(
    team: TenantFixture,
) -> None:
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    member_id = Membership.objects.get(user__username=MEMBER).pk
    with live_server_url() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = signed_in_page(browser, base, OWNER)
            page.goto(f"{base}/console/team/")

            # An invitation, then revoked: its link is shown once, then it leaves the list.
            page.fill("#id_email", "later@team-browser.example")
            page.select_option("#id_role", "admin")
            page.click("form:has(#id_email) button[type=submit]")
            expect(page.locator("#invitation-link")).to_be_visible()
            expect(page.locator("#invitations")).to_contain_text("later@team-browser.example")
            page.click("#invitations button:has-text('Revoke')")
            expect(page.locator(".messages")).to_contain_text("its link no longer works")
            expect(page.locator("#invitations")).not_to_contain_text("later@team-browser.example")

            # A role changed.
            row = page.locator(f"#member-{member_id}")
            row.locator("select").select_option("support")
            row.locator(".member-role button").click()
            expect(page.locator(".messages")).to_contain_text(f"{MEMBER} is now support.")
            expect(page.locator(f"#member-{member_id} select")).to_have_value("support")

            # The last owner cannot step down: said in words.
            me = page.locator("#members tr", has_text=OWNER)
            me.locator("select").select_option("viewer")
            me.locator(".member-role button").click()
            expect(page.locator(".messages")).to_contain_text("at least one owner")

            # The member removed, after the confirmation.
            page.locator(f"#member-{member_id} .member-remove button").click()
            expect(page.locator("#confirm h1")).to_have_text(f"Remove {MEMBER} from Team Shop?")
            page.click("#confirm button[type=submit]")
            expect(page.locator(".messages")).to_contain_text("is no longer a member")
            expect(page.locator("#members")).not_to_contain_text(MEMBER)
            _shot(page, "team-actions")
        finally:
            browser.close()

    assert not Membership.objects.filter(pk=member_id).exists()
    assert Membership.objects.get(user__username=OWNER).role == "owner"
    (invitation,) = Invitation.objects.filter(tenant=team.tenant)
    assert invitation.accepted_at is None and invitation.expires_at < invitation.created_at + (
        timedelta(minutes=5)
    )  # revoked: it expired when it was revoked, not in days
    assert sorted(
        AuditEntry.objects.filter(tenant=team.tenant).values_list("action", flat=True)
    ) == ["invitation.created", "invitation.revoke", "member.remove", "member.role"]
