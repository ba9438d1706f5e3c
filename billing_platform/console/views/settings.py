"""The settings pages: the tenant's settings and the whole audit log (the Team page is the third).

Every member reads the settings; owners (`settings.edit`) see the form and may send it, applied
through the service behind `PATCH /api/v1/settings`. Owners (`audit.read`) read the audit log,
filtered by action, person, target and dates, newest first, 50 a page.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from billable.setting_forms import setting_label
from billing_platform.console import selectors, services, settings_selectors, settings_services
from billing_platform.console.access import ConsoleContext, console_page, render_status
from billing_platform.console.permissions import Action
from billing_platform.console.settings_forms import AuditFilterForm, SettingsForm
from billing_platform.console.views.acting import act
from billing_platform.console.views.paging import day_bounds, filters_query, page_at_cursor


@console_page()
def tenant_settings(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    editable = console.may(Action.SETTINGS_EDIT)
    if request.method == "POST" and not editable:
        return render_status(request, "console/forbidden.html", 403, {"console": console})
    current = console.tenant.merged_settings
    form = SettingsForm(
        request.POST if request.method == "POST" else None,
        current=current,
        initial={"form_key": services.new_form_key()},
    )
    status = 200
    if request.method == "POST":
        if not form.is_valid():
            status = 422
        elif not form.changes:
            messages.info(request, "Nothing to change: every setting is as it was.")
            return redirect("console:settings")
        else:
            changes = form.changes
            done = act(
                request,
                console,
                form,
                action="settings.update",
                run=lambda: settings_services.settings_update(actor=console.actor, changes=changes),
            )
            if done.submitted is not None:
                return redirect("console:settings")
            status = done.status
    return render(
        request,
        "console/settings.html",
        {
            "console": console,
            "form": form if editable else None,
            "current": [(setting_label(name), value) for name, value in current.items()],
        },
        status=status,
    )


@console_page(Action.AUDIT_READ)
def audit_log(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {}
    created_from, created_before = day_bounds(data)
    query = settings_selectors.AuditQuery(
        action=data.get("action") or "",
        actor=data.get("actor") or "",
        target=data.get("target") or "",
        created_from=created_from,
        created_before=created_before,
    )
    page = page_at_cursor(
        request,
        lambda cursor: settings_selectors.audit_page(
            tenant=console.tenant, query=query, cursor=cursor
        ),
    )
    return render(
        request,
        "console/audit.html",
        {
            "console": console,
            "form": form,
            "page": page,
            "filters": filters_query(request),
            "filtered": any(data.values()),
            "people": [m.user.email for m in selectors.members_of(console.tenant)],
        },
    )
