"""Who is signed in, in which tenant, and whether they may: the one gate of every console page.

`console_page(action)` wraps a view. It sends an anonymous visitor to the login page, signs out
a session whose second factor was never verified, resolves the current tenant from the user's
own memberships (the session remembers which one; nothing the browser sends can name another),
refuses with 403 a member whose role may not do `action` (the same check hides the page's
buttons: `ConsoleContext.can`), selects the tenant's schema for the rest of the request, and
renders a `NotFound` (a customer id of another tenant alike) as the console's 404 page.

A staff user (an operator) is never a member: the gate lets one in only through the support
session this browser session opened from the admin (`support_session`), as a `support` member of
that one tenant, until the session ends or expires (checked on every page).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib.auth import logout
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing_platform.console import selectors, settings_selectors, settings_services
from billing_platform.console.models import Membership, Role, SupportSession
from billing_platform.console.permissions import Action, allowed, granted
from billing_platform.console.services import Actor
from billing_platform.core.db import activate_tenant
from billing_platform.core.errors import NotFound
from billing_platform.core.ratelimits import client_ip
from tenants.models import Tenant

CURRENT_TENANT = "console_tenant_id"
SUPPORT_SESSION = "console_support_session"
# What a staff user needs to open (and keep using) a support session: to change tenants.
SUPPORT_PERMISSION = "tenants.change_tenant"


@dataclass(frozen=True)
class ConsoleContext:
    """The signed-in member and the tenant the request runs in."""

    user: User
    membership: Membership
    memberships: list[Membership]
    ip: str
    support: SupportSession | None = None  # an operator's support session, when in one

    @property
    def tenant(self) -> Tenant:
        return self.membership.tenant

    @property
    def role(self) -> str:
        return self.membership.role

    def may(self, action: Action) -> bool:
        return allowed(self.role, action)

    @property
    def can(self) -> dict[str, bool]:
        """`{{ console.can.customers_grant }}` in templates."""
        return granted(self.role)

    @property
    def actor(self) -> Actor:
        return Actor(
            tenant=self.tenant, user=self.user, ip=self.ip, operator=self.support is not None
        )


def second_factor_pending(request: HttpRequest) -> bool:
    """Whether the user has a confirmed TOTP device this session was not verified with."""
    user = request.user
    devices = TOTPDevice.objects.filter(user_id=user.pk, confirmed=True)
    if not devices.exists():
        return False
    verified = request.session.get(DEVICE_ID_SESSION_KEY)
    return not any(device.persistent_id == verified for device in devices)


def current_membership(request: HttpRequest, memberships: list[Membership]) -> Membership:
    """The membership the session chose (the first one when it chose none it still has)."""
    chosen = request.session.get(CURRENT_TENANT)
    for membership in memberships:
        if membership.tenant_id == chosen:
            return membership
    first = memberships[0]
    request.session[CURRENT_TENANT] = first.tenant_id
    return first


def may_open_support(user: User) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(SUPPORT_PERMISSION))


def support_session(request: HttpRequest, user: User) -> SupportSession | None:
    """The support session this browser session runs, if it still does; one found expired is
    ended here (audited `support.ended`, why `expired`)."""
    session = settings_selectors.support_session_running(
        session_id=request.session.get(SUPPORT_SESSION), operator=user
    )
    if session is not None and settings_selectors.support_expired(session):
        settings_services.support_end(session=session, ip=client_ip(request), why="expired")
        session = None
    if session is None:
        request.session.pop(SUPPORT_SESSION, None)
    return session


def support_session_end(request: HttpRequest, *, why: str = "ended") -> SupportSession | None:
    """End the support session this browser runs, if any (audited `support.ended` with `why`),
    and forget it; the session ended, or None."""
    user = request.user
    session_id = request.session.pop(SUPPORT_SESSION, None)
    if not user.is_authenticated or not user.is_staff:
        return None
    session = settings_selectors.support_session_running(session_id=session_id, operator=user)
    if session is not None:
        settings_services.support_end(session=session, ip=client_ip(request), why=why)
    return session


def render_status(
    request: HttpRequest, template: str, status: int, context: dict[str, Any] | None = None
) -> HttpResponse:
    return render(request, template, context or {}, status=status)


ConsoleView = Callable[..., HttpResponse]


def console_page(action: Action = Action.VIEW) -> Callable[[ConsoleView], Callable[..., Any]]:
    """Gate a view taking `(request, console, ...)`: signed in, a member, allowed `action`."""

    def decorate(view: ConsoleView) -> Callable[..., HttpResponse]:
        @wraps(view)
        def gated(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                login = reverse("console:login")
                return redirect(f"{login}?{urlencode({'next': request.get_full_path()})}")
            if second_factor_pending(request):
                logout(request)
                return redirect("console:login")
            user: User = request.user
            support = None
            if user.is_staff:
                support = support_session(request, user) if may_open_support(user) else None
                if support is None:
                    return render_status(request, "console/support_none.html", 403)
                memberships = [Membership(user=user, tenant=support.tenant, role=Role.SUPPORT)]
            else:
                memberships = selectors.memberships_of(user)
            if not memberships:
                return render_status(request, "console/no_tenant.html", 403)
            console = ConsoleContext(
                user=user,
                membership=current_membership(request, memberships),
                memberships=memberships,
                ip=client_ip(request),
                support=support,
            )
            if not console.may(action):
                return render_status(request, "console/forbidden.html", 403, {"console": console})
            activate_tenant(console.tenant)
            try:
                return view(request, console, *args, **kwargs)
            except (NotFound, Http404):
                return render_status(request, "console/not_found.html", 404, {"console": console})

        return gated

    return decorate
