"""The operators' admin site: Django's, with failed logins limited.

Failures count per account and per client IP (`billing_platform.core.ratelimits.LoginThrottle`).
Past either limit the login form refuses every attempt, the right password included, until the
window ends or an operator runs `manage.py unlock_admin_login`. A browser that signs in gets a
signed cookie naming the account; its later attempts on that account count against that browser
alone, so an outsider failing on purpose cannot lock an operator out of the browser they use.

`PlatformAdminConfig` (`billing_platform/operations/apps.py`) makes this site `admin.site`.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core import signing
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import reverse

from billing_platform.core.ratelimits import LoginThrottle, client_ip

logger = logging.getLogger("billable.admin")

DEVICE_COOKIE = "billable_admin_device"
DEVICE_MAX_AGE = 30 * 24 * 3600
_DEVICE_SALT = "billable.admin.device"


def _device_cookie(request: HttpRequest) -> tuple[str, str] | None:
    """(account, device id) from the browser's signed cookie, if it carries a valid one."""
    try:
        value = request.get_signed_cookie(DEVICE_COOKIE, salt=_DEVICE_SALT, max_age=DEVICE_MAX_AGE)
    except (KeyError, signing.BadSignature):
        return None
    account, _, device = (value or "").rpartition(":")
    return (account, device) if account and device else None


def known_device(request: HttpRequest, username: str) -> str | None:
    """The id of this browser if it signed in to `username` before, else None."""
    cookie = _device_cookie(request)
    if cookie is None or cookie[0] != username.strip().casefold():
        return None
    return cookie[1]


def remember_device(request: HttpRequest, response: HttpResponseBase, username: str) -> None:
    """Mark this browser as one that signed in to `username` (for 30 days from now)."""
    account = username.strip().casefold()
    device = known_device(request, account) or secrets.token_hex(8)
    response.set_signed_cookie(
        DEVICE_COOKIE,
        f"{account}:{device}",
        salt=_DEVICE_SALT,
        max_age=DEVICE_MAX_AGE,
        path=reverse("admin:index"),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


class ThrottledLoginForm(AdminAuthenticationForm):
    """The admin's login form; a locked account or address is refused before any password check."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "too_many_attempts": (
            "Too many failed logins for this account or from this address. "
            "Try again in %(minutes)d minute(s)."
        ),
    }

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if self.request is None or not username or not self.cleaned_data.get("password"):
            return super().clean()
        throttle = LoginThrottle(
            self.request, username, device=known_device(self.request, username)
        )
        locked_for = throttle.locked_for()
        if locked_for:
            logger.warning(
                "admin login refused: too many failed logins",
                extra={"username": username, "client_ip": client_ip(self.request)},
            )
            raise ValidationError(
                self.error_messages["too_many_attempts"],
                code="too_many_attempts",
                params={"minutes": math.ceil(locked_for / 60)},
            )
        try:
            return super().clean()
        except ValidationError:
            throttle.failed()
            raise


class PlatformAdminSite(admin.AdminSite):
    login_form = ThrottledLoginForm
    # "View site": the landing page (billing_platform/http/landing.py).
    site_url = "/"

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        response: HttpResponse = super().login(request, extra_context)
        if request.method == "POST" and response.status_code == 302 and self.has_permission(
            request
        ):
            remember_device(request, response, request.user.get_username())
        return response
