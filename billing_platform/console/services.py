"""Every write of the console, each with its audit entry in the same transaction.

Billing actions go through the engine's own services (`billable.services`), the ones the API
calls, so their rules, errors, signals and webhooks are the API's. `submitted` makes a console
form apply once: the form's key is claimed in the action's transaction (`Submission`), and a
second submission of the same form finds the first one's outcome instead of acting again.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import OperationalError, connection, transaction
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from billable import clock
from billable import selectors as billing
from billable.models import Customer
from billable.services import grants as grant_services
from billing_platform.console import errors, selectors
from billing_platform.console.models import AuditEntry, Invitation, Membership, Role, Submission
from billing_platform.core.db import LOCK_NOT_AVAILABLE, services_join, sqlstate
from billing_platform.core.errors import ValidationFailed
from tenants.models import Tenant

logger = logging.getLogger("billable.console")

OPERATOR = "operator"


@dataclass(frozen=True)
class Actor:
    """Who acts in which tenant, from where: what the audit log and the ledger record."""

    tenant: Tenant
    user: User | None  # None: the platform's operator (a management command)
    ip: str | None = None
    # True: `user` is a staff user in a support session (`settings_services.support_start`).
    operator: bool = False

    @property
    def label(self) -> str:
        if self.user is None:
            return OPERATOR
        if self.operator:
            return f"{OPERATOR}:{self.user.pk}"
        return self.user.email or self.user.get_username()

    @property
    def ledger_actor(self) -> str:
        """The `actor` of ledger rows: `console:<user id>` (the API writes `key:<key id>`), or
        `operator:<user id>` in an operator's support session."""
        if self.user is None:
            return OPERATOR
        return self.label if self.operator else f"console:{self.user.pk}"


def audit_record(
    *, actor: Actor, action: str, target: str = "", detail: dict[str, Any] | None = None
) -> AuditEntry:
    """Write one audit entry (in the caller's transaction)."""
    return AuditEntry.objects.create(
        tenant=actor.tenant,
        user=actor.user,
        actor=actor.label,
        action=action,
        target=target[:255],
        detail=detail or {},
        ip=actor.ip or None,
    )


# --- One form, one effect


@dataclass(frozen=True)
class Outcome:
    """What an action did: the message shown, and what the audit log records."""

    message: str
    target: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Submitted:
    outcome: Outcome
    replayed: bool  # True: an earlier submission of the same form did it


_CLAIM_SQL = (
    "INSERT INTO {table} (tenant_id, key, user_id, action, outcome, created_at)"
    " VALUES (%s, %s, %s, %s, '{{}}'::jsonb, now()) ON CONFLICT (tenant_id, key) DO NOTHING"
    " RETURNING id"
)


# How long a form's key is remembered: a copy of the form sent later would apply again.
SUBMISSION_RETENTION = timedelta(days=7)


def new_form_key() -> str:
    """The hidden key a form carries from the moment it is rendered."""
    return secrets.token_urlsafe(24)


def submitted(*, actor: Actor, key: str, action: str, run: Callable[[], Outcome]) -> Submitted:
    """Run `run` once per (tenant, form key), with its audit entry, in one transaction.

    The key is claimed first (`INSERT … ON CONFLICT DO NOTHING`): a concurrent submission of the
    same form waits on the unique index until the first commits, then reads its outcome. An
    error from `run` rolls the claim back with everything else, so the corrected form can be
    sent again. Raises SubmissionInProgress (409) when the first outlasts `lock_timeout`.
    """
    table = connection.ops.quote_name(Submission._meta.db_table)
    try:
        with transaction.atomic(), services_join():
            with connection.cursor() as cursor:
                cursor.execute(
                    _CLAIM_SQL.format(table=table),
                    [actor.tenant.pk, key, actor.user.pk if actor.user else None, action],
                )
                claimed = cursor.fetchone() is not None
            if not claimed:
                first = Submission.objects.filter(tenant=actor.tenant, key=key).first()
                stored = first.outcome if first is not None else {}
                return Submitted(
                    outcome=Outcome(
                        message=str(stored.get("message", "")),
                        target=str(stored.get("target", "")),
                    ),
                    replayed=True,
                )
            outcome = run()
            Submission.objects.filter(tenant=actor.tenant, key=key).update(
                outcome={"message": outcome.message, "target": outcome.target}
            )
            # The tenant's keys past retention go with its next action (no sweep needed).
            Submission.objects.filter(
                tenant=actor.tenant, created_at__lt=clock.now() - SUBMISSION_RETENTION
            ).delete()
            audit_record(actor=actor, action=action, target=outcome.target, detail=outcome.detail)
    except OperationalError as exc:
        if sqlstate(exc) == LOCK_NOT_AVAILABLE:
            raise errors.SubmissionInProgress() from exc
        raise
    return Submitted(outcome=outcome, replayed=False)


# --- Customers


def customer_grant(
    *, actor: Actor, customer: Customer, sku: str, reason: str, expires_at: datetime | None
) -> Outcome:
    """A bonus grant of an offer, through the engine's `offer_grant` (as `POST /billing/grants`
    with `kind: bonus`): the same rules, errors, `grant.created` event and webhooks."""
    offer = billing.offer_for_grant(sku)
    result = grant_services.offer_grant(
        customer=customer,
        offer=offer,
        kind="bonus",
        reason=reason,
        expires_at=expires_at,
        actor=actor.ledger_actor,
    )
    return Outcome(
        message=f"Granted {offer.sku} ({offer.name}).",
        target=f"customer:{customer.pk}",
        detail={
            "grant_id": str(result.grant.pk),
            "sku": offer.sku,
            "reason": reason,
            "batches": [str(batch.pk) for batch in result.batches],
        },
    )


# --- Invitations and the team


def normalise_email(value: str) -> str:
    """An email address as the console stores it (trimmed, lowercased); 422 when malformed."""
    email = value.strip().lower()
    try:
        validate_email(email)
    except DjangoValidationError as exc:
        raise ValidationFailed(
            "That is not an email address.", field="email", msg="invalid email"
        ) from exc
    return email


def _team_locked(tenant: Tenant) -> dict[int, Membership]:
    """The tenant's memberships by id, locked for the transaction: two owners changing each
    other's roles at once still leave one owner."""
    return {
        m.pk: m
        for m in Membership.objects.select_for_update()
        .filter(tenant=tenant)
        .select_related("user")
        .order_by("pk")
    }


def _member_of(team: dict[int, Membership], membership_id: int) -> Membership:
    member = team.get(membership_id)
    if member is None:
        raise errors.MemberNotFound()
    return member


def _owners_left(team: dict[int, Membership], without: Membership) -> int:
    return sum(1 for m in team.values() if m.role == Role.OWNER and m.pk != without.pk)


def member_role_change(*, actor: Actor, membership_id: int, role: str) -> Outcome:
    """Give a member of the actor's tenant another role; 404 `member_not_found` (another
    tenant's member too), 409 `last_owner` when the team would be left without an owner."""
    if role not in Role.values:
        raise ValidationFailed("Choose a role.", field="role", msg="invalid role")
    with transaction.atomic():
        team = _team_locked(actor.tenant)
        member = _member_of(team, membership_id)
        before = member.role
        if before == Role.OWNER and role != Role.OWNER and not _owners_left(team, member):
            raise errors.LastOwner()
        if before != role:
            member.role = role
            member.save(update_fields=["role"])
    email = member.user.email or member.user.get_username()
    return Outcome(
        message=f"{email} is now {Role(role).label.lower()}"
        + ("." if before != role else " (unchanged)."),
        target=f"member:{member.pk}",
        detail={"email": email, "before": before, "role": role},
    )


def member_remove(*, actor: Actor, membership_id: int) -> Outcome:
    """Take a member out of the actor's tenant: their next console page in it is refused.
    404 `member_not_found`, 409 `last_owner`. Their account stays (other teams, history)."""
    with transaction.atomic():
        team = _team_locked(actor.tenant)
        member = _member_of(team, membership_id)
        if member.role == Role.OWNER and not _owners_left(team, member):
            raise errors.LastOwner()
        member.delete()
    email = member.user.email or member.user.get_username()
    return Outcome(
        message=f"{email} is no longer a member of {actor.tenant.name}.",
        target=f"member:{membership_id}",
        detail={"email": email, "role": member.role},
    )


def invitation_revoke(*, actor: Actor, invitation_id: int) -> Outcome:
    """Make a pending invitation of the actor's tenant unusable at once (it expires now); 404
    `member_not_found` for one that is not pending here."""
    now = clock.now()
    revoked = Invitation.objects.filter(
        pk=invitation_id, tenant=actor.tenant, accepted_at__isnull=True, expires_at__gt=now
    ).update(expires_at=now)
    if not revoked:
        raise errors.MemberNotFound("This invitation is not pending in this team.")
    invitation = Invitation.objects.get(pk=invitation_id)
    return Outcome(
        message=f"Revoked the invitation of {invitation.email}: its link no longer works.",
        target=f"invitation:{invitation.pk}",
        detail={"email": invitation.email, "role": invitation.role},
    )


def invitation_link(token: str, *, base_url: str) -> str:
    return base_url.rstrip("/") + reverse("console:invitation", args=[token])


def invitation_create(
    *, actor: Actor, email: str, role: str, base_url: str
) -> tuple[Invitation, str]:
    """Invite someone to the actor's tenant; returns the invitation and its link (shown once).

    The caller writes the audit entry (`submitted` for a console form, `invitation_send` for
    the operator). The link is also mailed when mail is configured (`EMAIL_URL`), after commit.
    Raises ValidationFailed (422) for a bad email or role, AlreadyMember (409) for a member.
    """
    email = normalise_email(email)
    if role not in Role.values:
        raise ValidationFailed("Choose a role.", field="role", msg="invalid role")
    if Membership.objects.filter(tenant=actor.tenant, user__username=email).exists():
        raise errors.AlreadyMember(f"{email} is already a member of {actor.tenant.name}.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        invitation = Invitation.objects.create(
            tenant=actor.tenant,
            email=email,
            role=role,
            token_hash=selectors.token_hash(token),
            expires_at=clock.now() + timedelta(days=settings.CONSOLE_INVITATION_DAYS),
            invited_by=actor.user,
        )
        link = invitation_link(token, base_url=base_url)
        if settings.EMAIL_CONFIGURED:
            transaction.on_commit(lambda: _mail_invitation(invitation, link, actor.label))
    return invitation, link


def invitation_outcome(invitation: Invitation) -> Outcome:
    return Outcome(
        message=f"Invited {invitation.email} as {invitation.role}.",
        target=f"email:{invitation.email}",
        detail={"role": invitation.role, "invitation_id": invitation.pk},
    )


def invitation_send(
    *, actor: Actor, email: str, role: str, base_url: str
) -> tuple[Invitation, str]:
    """`invitation_create` with its audit entry, in one transaction (the operator's path)."""
    with transaction.atomic():
        invitation, link = invitation_create(actor=actor, email=email, role=role, base_url=base_url)
        outcome = invitation_outcome(invitation)
        audit_record(
            actor=actor, action="invitation.created", target=outcome.target, detail=outcome.detail
        )
    return invitation, link


def _mail_invitation(invitation: Invitation, link: str, inviter: str) -> None:
    try:
        send_mail(
            subject=f"You are invited to {invitation.tenant.name} on Billable",
            message=(
                f"{inviter} invited you to join {invitation.tenant.name} as {invitation.role}.\n\n"
                f"Accept the invitation here (the link works once, until "
                f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n{link}\n"
            ),
            from_email=None,
            recipient_list=[invitation.email],
        )
    except Exception:
        # The link was shown to the inviter, who can pass it on; the invitation stands.
        logger.exception("the invitation mail to %s could not be sent", invitation.email)


def invitation_accept(
    *, token: str, user: User | None, password: str = "", ip: str | None = None
) -> User:
    """Accept an invitation: as the signed-in `user` whose email it names, or, with no user,
    as a new account with `password`. The invitation is locked, so it is used once.

    Raises InvitationInvalid (404) for a link unknown, used or expired; ValidationFailed (422)
    for a password the validators refuse, or when an account with that email exists already
    (it must sign in first) or the signed-in user is someone else.
    """
    with transaction.atomic():
        invitation = selectors.invitation_by_token(token)
        invitation = (
            Invitation.objects.select_for_update().select_related("tenant").get(pk=invitation.pk)
        )
        if invitation.accepted_at is not None:
            raise errors.InvitationInvalid()
        if user is None:
            if User.objects.filter(username=invitation.email).exists():
                raise ValidationFailed(
                    "An account with this email exists: sign in to accept.", field="email"
                )
            candidate = User(username=invitation.email, email=invitation.email)
            try:
                validate_password(password, candidate)
            except DjangoValidationError as exc:
                raise ValidationFailed(" ".join(exc.messages), field="password") from exc
            candidate.set_password(password)
            candidate.save()
            user = candidate
        elif user.get_username() != invitation.email:
            raise ValidationFailed(
                f"This invitation is for {invitation.email}; sign out and sign in as them.",
                field="email",
            )
        membership, created = Membership.objects.get_or_create(
            user=user, tenant=invitation.tenant, defaults={"role": invitation.role}
        )
        invitation.accepted_at = clock.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit_record(
            actor=Actor(tenant=invitation.tenant, user=user, ip=ip),
            action="invitation.accepted",
            target=f"email:{invitation.email}",
            detail={"role": membership.role, "invitation_id": invitation.pk, "joined": created},
        )
    return user


# --- TOTP second factor


def totp_device_start(*, user: User) -> TOTPDevice:
    """The user's unconfirmed TOTP device (a new secret), to be confirmed with a first code."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name="console", confirmed=False)


def totp_device_confirm(*, device: TOTPDevice, token: str) -> bool:
    """Confirm a new device with a code it shows; from then on signing in asks for a code."""
    with transaction.atomic():
        if not device.verify_token(token):
            return False
        TOTPDevice.objects.filter(user=device.user, confirmed=True).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return True


def totp_disable(*, user: User) -> None:
    TOTPDevice.objects.filter(user=user).delete()
