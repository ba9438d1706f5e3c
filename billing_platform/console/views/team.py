"""The team: members, pending invitations, inviting someone, and the latest audit entries."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from billing_platform.console import selectors, services
from billing_platform.console.access import ConsoleContext, console_page
from billing_platform.console.forms import InviteForm, show_error
from billing_platform.console.permissions import Action
from billing_platform.core.errors import BillingError

AUDIT_SHOWN = 20


@console_page(Action.TEAM_MANAGE)
def team(request: HttpRequest, console: ConsoleContext) -> HttpResponse:
    form = InviteForm(
        request.POST if request.method == "POST" else None,
        initial={"form_key": services.new_form_key()},
    )
    link = ""
    status = 200
    if request.method == "POST":
        if form.is_valid():
            created: list[str] = []

            def invite() -> services.Outcome:
                invitation, new_link = services.invitation_create(
                    actor=console.actor,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    base_url=request.build_absolute_uri("/"),
                )
                created.append(new_link)
                return services.invitation_outcome(invitation)

            try:
                done = services.submitted(
                    actor=console.actor,
                    key=form.cleaned_data["form_key"],
                    action="invitation.created",
                    run=invite,
                )
            except BillingError as exc:
                show_error(form, exc)
                status = exc.status
            else:
                if done.replayed:
                    messages.info(
                        request,
                        "This invitation was already sent; its link was shown then. "
                        f"{done.outcome.message}",
                    )
                    return redirect("console:team")
                link = created[0]
                messages.success(request, done.outcome.message)
                form = InviteForm(initial={"form_key": services.new_form_key()})
        else:
            status = 422
    return render(
        request,
        "console/team.html",
        {
            "console": console,
            "members": selectors.members_of(console.tenant),
            "invitations": selectors.invitations_pending(console.tenant),
            "form": form,
            "link": link,
            "mail_configured": settings.EMAIL_CONFIGURED,
            "audit": selectors.audit_entries(tenant=console.tenant, limit=AUDIT_SHOWN).items,
        },
        status=status,
    )
