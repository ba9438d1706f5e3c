"""The console in a real browser: Debian's Chromium driven by Playwright, signed in as a member."""

from __future__ import annotations

from typing import Any

from tests.support.console import PASSWORD

VIEWPORT = {"width": 1200, "height": 800}


def signed_in_page(browser: Any, base: str, email: str, password: str = PASSWORD) -> Any:
    """A new page of `browser`, signed in to the console at `base` and on its overview."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(20_000)
    page.goto(f"{base}/console/login/")
    page.fill("#id_email", email)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    expect(page).to_have_url(f"{base}/console/")
    return page
