"""Signing in and out, the second factor, password resets, invitations, the tenant switcher."""

from __future__ import annotations

import base64
import math
import time
from typing import Any

import django_otp
import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing_platform.console import errors, selectors, services
from billing_platform.console.access import (
    CURRENT_TENANT,
    ConsoleContext,
    console_page,
    render_status,
    second_factor_pending,
    support_session_end,
)
from billing_platform.console.forms import AcceptForm, LoginForm, TokenForm, show_error
from billing_platform.core.errors import ValidationFailed
from billing_platform.core.ratelimits import (
    CONSOLE_LOGIN,
    LoginThrottle,
    client_ip,
    password_reset_limited,
)

# The signed-in-but-not-yet-verified user between the password and the TOTP code.
PENDING = "console_pending_login"
PENDING_SECONDS = 300
BACKEND = "django.contrib.auth.backends.ModelBackend"
WRONG_CODE = (
    "That code is not right, or came too soon after a wrong one: wait a few seconds and try "
    "the code your app shows then."
)


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("console:overview")


@sensitive_post_parameters("password")
def login(request: HttpRequest) -> HttpResponse:
    """Email and password; then the TOTP code when the account has a confirmed device."""
    if request.user.is_authenticated and not second_factor_pending(request):
        return redirect(_next_url(request))
    form = LoginForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid() and form.user is not None:
        user = form.user
        if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            request.session[PENDING] = {"user": user.pk, "at": time.time()}
            verify = reverse("console:login_verify")
            return redirect(f"{verify}?{urlencode({'next': _next_url(request)})}")
        auth_login(request, user, backend=BACKEND)
        return redirect(_next_url(request))
    return render(request, "console/login.html", {"form": form, "next": _next_url(request)})


def login_verify(request: HttpRequest) -> HttpResponse:
    """The second step: a code from the account's authenticator app."""
    pending = request.session.get(PENDING)
    if not pending or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        request.session.pop(PENDING, None)
        messages.info(request, "Sign in again.")
        return redirect("console:login")
    user = User.objects.filter(pk=pending["user"], is_active=True).first()
    if user is None:
        request.session.pop(PENDING, None)
        return redirect("console:login")
    form = TokenForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        throttle = LoginThrottle(request, user.get_username(), group=CONSOLE_LOGIN)
        if throttle.locked_for():
            form.add_error(None, "Too many failed sign-ins: try again later.")
        else:
            device = next(
                (
                    d
                    for d in TOTPDevice.objects.filter(user=user, confirmed=True)
                    if d.verify_token(form.cleaned_data["token"])
                ),
                None,
            )
            if device is None:
                throttle.failed()
                form.add_error("token", WRONG_CODE)
            else:
                request.session.pop(PENDING, None)
                auth_login(request, user, backend=BACKEND)
                django_otp.login(request, device)
                return redirect(_next_url(request))
    return render(request, "console/login_verify.html", {"form": form, "next": _next_url(request)})


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    support_session_end(request, why="signed_out")  # an operator's, if one runs
    auth_logout(request)
    messages.info(request, "You are signed out.")
    return redirect("console:login")


# --- Password reset: Django's views with the console's templates, for console members only.


class MemberPasswordResetForm(PasswordResetForm):
    """Django's reset form, sending links only to accounts that belong to a tenant's team."""

    def get_users(self, email: str) -> Any:
        return (user for user in super().get_users(email) if user.console_memberships.exists())


class PasswordResetView(auth_views.PasswordResetView):
    form_class = MemberPasswordResetForm
    template_name = "console/password_reset.html"
    email_template_name = "console/password_reset_email.txt"
    subject_template_name = "console/password_reset_subject.txt"
    success_url = reverse_lazy("console:password_reset_done")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "mail_configured": settings.EMAIL_CONFIGURED}

    def form_valid(self, form: Any) -> HttpResponse:
        # Every request counts, whoever the email names: the answer is the same for all.
        wait = password_reset_limited(self.request, form.cleaned_data["email"])
        if wait:
            form.add_error(
                None,
                "Too many reset requests for this email or from this address. "
                f"Try again in {math.ceil(wait / 60)} minute(s).",
            )
            response = self.form_invalid(form)
            response.status_code = 429
            return response
        return super().form_valid(form)


password_reset = PasswordResetView.as_view()
password_reset_done = auth_views.PasswordResetDoneView.as_view(
    template_name="console/password_reset_done.html"
)
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="console/password_reset_confirm.html",
    success_url=reverse_lazy("console:password_reset_complete"),
)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="console/password_reset_complete.html"
)


# --- Invitations


@sensitive_post_parameters("password", "password_again")
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """Accept an invitation: a new account chooses its password; an existing one signs in."""
    try:
        invited = selectors.invitation_by_token(token)
    except errors.InvitationInvalid:
        return render_status(request, "console/invitation_invalid.html", 404)
    existing = User.objects.filter(username=invited.email).exists()
    signed_in_as = request.user.get_username() if request.user.is_authenticated else None
    form = AcceptForm(request.POST if request.method == "POST" and not existing else None)
    context: dict[str, Any] = {
        "invitation": invited,
        "existing": existing,
        "signed_in_as": signed_in_as,
        "form": form,
        "login_url": f"{reverse('console:login')}?{urlencode({'next': request.path})}",
    }
    if request.method != "POST":
        return render(request, "console/invitation.html", context)
    if existing and signed_in_as != invited.email:
        return render(request, "console/invitation.html", context, status=403)
    if not existing and not form.is_valid():
        return render(request, "console/invitation.html", context)
    try:
        user = services.invitation_accept(
            token=token,
            user=request.user if existing else None,  # type: ignore[arg-type]
            password=form.cleaned_data.get("password", "") if not existing else "",
            ip=client_ip(request),
        )
    except errors.InvitationInvalid:
        return render_status(request, "console/invitation_invalid.html", 404)
    except ValidationFailed as exc:
        show_error(form, exc)
        return render(request, "console/invitation.html", context)
    if not existing:
        auth_login(request, user, backend=BACKEND)
    request.session[CURRENT_TENANT] = invited.tenant_id
    messages.success(request, f"Welcome to {invited.tenant.name}.")
    return redirect("console:overview")


# --- Inside the console


@require_POST
@console_page()
def switch_tenant(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    """Make another of the user's own tenants the current one (any other id: 404)."""
    wanted = request.POST.get("tenant", "")
    for membership in console.memberships:
        if str(membership.tenant_id) == wanted:
            request.session[CURRENT_TENANT] = membership.tenant_id
            return redirect("console:overview")
    return render_status(request, "console/not_found.html", 404, {"console": console})


@console_page()
def security(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    """The account's second factor: set up a TOTP device, confirm it with a code, or remove it."""
    if console.support is not None:  # an operator's account is not managed from a console
        return render_status(request, "console/forbidden.html", 403, {"console": console})
    confirmed = TOTPDevice.objects.filter(user=console.user, confirmed=True).first()
    pending = TOTPDevice.objects.filter(user=console.user, confirmed=False).first()
    form = TokenForm(request.POST if request.method == "POST" else None)
    step = request.POST.get("step", "")
    if request.method == "POST":
        if step == "start" and confirmed is None:
            pending = services.totp_device_start(user=console.user)
            form = TokenForm()
        elif step == "confirm" and pending is not None and form.is_valid():
            if services.totp_device_confirm(device=pending, token=form.cleaned_data["token"]):
                django_otp.login(request, pending)
                messages.success(request, "Two-factor sign-in is on.")
                return redirect("console:security")
            form.add_error("token", WRONG_CODE)
        elif step == "disable" and confirmed is not None and form.is_valid():
            if confirmed.verify_token(form.cleaned_data["token"]):
                services.totp_disable(user=console.user)
                messages.success(request, "Two-factor sign-in is off.")
                return redirect("console:security")
            form.add_error("token", WRONG_CODE)
    qr_svg = secret = ""
    if confirmed is None and pending is not None:
        qr_svg = segno.make(pending.config_url, error="m").svg_inline(scale=5)
        secret = _base32(pending.bin_key)
    return render(
        request,
        "console/security.html",
        {
            "console": console,
            "confirmed": confirmed,
            "pending": pending if confirmed is None else None,
            "form": form,
            "qr_svg": qr_svg,
            "secret": secret,
        },
    )


def _base32(key: bytes) -> str:
    text = base64.b32encode(key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))
