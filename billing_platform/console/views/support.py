"""An operator's support session: opened from the tenant's page in the operators' admin (a staff
user who may change tenants, with a reason), ended with the banner's End button or at expiry.

These two views are outside `console_page`, since the operator is no member: they check the
staff user themselves; the gate then admits the session's browser to that one tenant only.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from billing_platform.console import settings_selectors, settings_services
from billing_platform.console.access import (
    CURRENT_TENANT,
    SUPPORT_SESSION,
    may_open_support,
    render_status,
    support_session_end,
)
from billing_platform.console.services import new_form_key
from billing_platform.console.settings_forms import SupportStartForm
from billing_platform.core.ratelimits import client_ip
from tenants.models import Tenant, TenantStatus


def support_start(request: HttpRequest, tenant_id: int) -> HttpResponse:
    if not request.user.is_authenticated:
        login = reverse("admin:login")
        return redirect(f"{login}?{urlencode({'next': request.get_full_path()})}")
    if not may_open_support(request.user):
        return render_status(request, "console/support_none.html", 403)
    tenant = get_object_or_404(Tenant, pk=tenant_id, status=TenantStatus.ACTIVE)
    form = SupportStartForm(
        request.POST if request.method == "POST" else None,
        initial={"form_key": new_form_key()},
    )
    if request.method == "POST" and form.is_valid():
        session = settings_services.support_start(
            operator=request.user,
            tenant=tenant,
            reason=form.cleaned_data["reason"],
            ip=client_ip(request),
            key=form.cleaned_data["form_key"],
        )
        if session.ended_at is None and not settings_selectors.support_expired(session):
            request.session[SUPPORT_SESSION] = session.pk
            request.session[CURRENT_TENANT] = tenant.pk
            return redirect("console:overview")
        messages.info(request, "This form was already sent, and that support session has ended.")
    return render(
        request,
        "console/support_start.html",
        {
            "form": form,
            "tenant": tenant,
            "minutes": settings_selectors.support_minutes(),
        },
        status=422 if form.errors else 200,
    )


@require_POST
def support_end(request: HttpRequest) -> HttpResponse:
    """End this browser's support session and go back to the tenant in the admin."""
    if not request.user.is_authenticated or not request.user.is_staff:
        return render_status(request, "console/support_none.html", 403)
    session = support_session_end(request)
    if session is None:
        return redirect("admin:tenants_tenant_changelist")
    messages.success(request, f"The support session in {session.tenant.name} has ended.")
    return redirect("admin:tenants_tenant_change", session.tenant_id)
