"""The team: members and their roles, pending invitations, inviting someone, and the latest
audit entries; changing a role, removing a member (confirmed first), revoking an invitation."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing_platform.console import selectors, services
from billing_platform.console.access import ConsoleContext, console_page
from billing_platform.console.billing_forms import ConfirmedForm
from billing_platform.console.errors import MemberNotFound
from billing_platform.console.forms import ActionForm, InviteForm, RoleForm, show_error
from billing_platform.console.permissions import Action
from billing_platform.console.views.acting import act, confirmation
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
            "members": [
                (member, RoleForm(initial={"form_key": key, "role": member.role}))
                for member, key in (
                    (m, services.new_form_key()) for m in selectors.members_of(console.tenant)
                )
            ],
            "action_key": services.new_form_key(),
            "invitations": selectors.invitations_pending(console.tenant),
            "form": form,
            "link": link,
            "mail_configured": settings.EMAIL_CONFIGURED,
            "audit": selectors.audit_entries(tenant=console.tenant, limit=AUDIT_SHOWN).items,
        },
        status=status,
    )


def _refused(request: HttpRequest, form: forms.Form) -> None:
    """A refusal `act` put on the form, told on the Team page it leads back to."""
    for errors in form.errors.values():
        for error in errors:
            messages.error(request, str(error))


def _out_of_date(request: HttpRequest) -> HttpResponse:
    messages.error(request, "This form is out of date: reload the page.")
    return redirect("console:team")


@require_POST
@console_page(Action.TEAM_MANAGE)
def member_role(request: HttpRequest, console: ConsoleContext, membership_id: int) -> HttpResponse:
    """Give a member another role (the last owner keeps theirs: 409 `last_owner`, in words)."""
    selectors.member_get(tenant=console.tenant, membership_id=membership_id)  # or 404
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _out_of_date(request)
    done = act(
        request,
        console,
        form,
        action="member.role",
        run=lambda: services.member_role_change(
            actor=console.actor, membership_id=membership_id, role=form.cleaned_data["role"]
        ),
    )
    if done.submitted is None:
        _refused(request, form)
    return redirect("console:team")


@require_POST
@console_page(Action.TEAM_MANAGE)
def member_remove(
    request: HttpRequest, console: ConsoleContext, membership_id: int
) -> HttpResponse:
    """Take a member out of the team, after a confirmation."""
    member = selectors.member_get(tenant=console.tenant, membership_id=membership_id)
    form = ConfirmedForm(request.POST)
    if not form.is_valid():
        return _out_of_date(request)
    email = member.user.email or member.user.get_username()
    if not form.cleaned_data["confirmed"]:
        return confirmation(
            request,
            console,
            form,
            title=f"Remove {email} from {console.tenant.name}?",
            consequences=[
                "Their next page in this team's console is refused; their account and their "
                "other teams stay.",
                "What they did stays in the audit log under their email.",
                "To bring them back, invite them again.",
            ],
            button=f"Remove {email}",
            back=reverse("console:team"),
        )
    done = act(
        request,
        console,
        form,
        action="member.remove",
        run=lambda: services.member_remove(actor=console.actor, membership_id=member.pk),
    )
    if done.submitted is None:
        _refused(request, form)
    return redirect("console:team")


@require_POST
@console_page(Action.TEAM_MANAGE)
def invitation_revoke(
    request: HttpRequest, console: ConsoleContext, invitation_id: int
) -> HttpResponse:
    """Make a pending invitation's link stop working at once."""
    if not selectors.invitations_pending(console.tenant).filter(pk=invitation_id).exists():
        raise MemberNotFound("This invitation is not pending in this team.")
    form = ActionForm(request.POST)
    if not form.is_valid():
        return _out_of_date(request)
    done = act(
        request,
        console,
        form,
        action="invitation.revoke",
        run=lambda: services.invitation_revoke(
            actor=console.actor, invitation_id=invitation_id
        ),
    )
    if done.submitted is None:
        _refused(request, form)
    return redirect("console:team")
