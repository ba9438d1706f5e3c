"""The settings pages' writes: a tenant's settings, and an operator's support session.

Settings change through `tenants.services.tenant_settings_update`, the service behind
`PATCH /api/v1/settings` (and the operators' admin), inside `services.submitted`, so a form
applies once and its audit entry (`settings.update`, each changed setting's old and new value)
is written in the same transaction.

A support session is opened by a staff user from the operators' admin: it lets that browser
session use one tenant's console as a `support` member for `CONSOLE_SUPPORT_SESSION_MINUTES`,
and the tenant's audit log records it (`support.started`, `support.ended`) and everything done
in it, with `operator:<user id>` as the actor.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from billable import clock
from billing_platform.console import settings_selectors
from billing_platform.console.models import SupportSession
from billing_platform.console.services import Actor, Outcome, audit_record, submitted
from tenants import services as tenant_services
from tenants.models import Tenant

SETTINGS_TARGET = "settings"


def settings_update(*, actor: Actor, changes: dict[str, Any]) -> Outcome:
    """Apply `changes` (already checked by the API's schema) to the actor's tenant; the outcome's
    detail holds each setting that really changed, with its old and new value."""
    current = Tenant.objects.select_for_update().get(pk=actor.tenant.pk).merged_settings
    changed = {
        name: {"old": current.get(name), "new": value}
        for name, value in changes.items()
        if current.get(name) != value
    }
    if changed:
        tenant_services.tenant_settings_update(
            tenant_id=actor.tenant.pk,
            changes={name: values["new"] for name, values in changed.items()},
        )
    names = ", ".join(name.replace("_", " ") for name in changed)
    return Outcome(
        message=f"Settings saved: {names}." if changed else "Nothing changed.",
        target=SETTINGS_TARGET,
        detail={"changes": changed},
    )


# --- Support sessions


def operator_actor(*, operator: User, tenant: Tenant, ip: str | None) -> Actor:
    return Actor(tenant=tenant, user=operator, ip=ip, operator=True)


def support_start(
    *, operator: User, tenant: Tenant, reason: str, ip: str | None, key: str
) -> SupportSession:
    """Open a support session in `tenant` for `operator`, once per form (`key`), ending any
    other of the operator's still open (one runs at a time), each with its audit entry."""

    def start() -> Outcome:
        now = clock.now()
        running = settings_selectors.support_sessions_open(operator=operator)
        for other in running.select_related("tenant").select_for_update(of=("self",)):
            support_end(session=other, ip=ip, why="replaced")
        session = SupportSession.objects.create(
            operator=operator,
            operator_name=operator.get_username(),
            tenant=tenant,
            reason=reason,
            started_at=now,
            expires_at=now + timedelta(minutes=settings.CONSOLE_SUPPORT_SESSION_MINUTES),
        )
        return Outcome(
            message=f"Support session in {tenant.name} until {session.expires_at:%H:%M} UTC.",
            target=f"support:{session.pk}",
            detail={
                "operator": session.operator_name,
                "reason": reason,
                "expires_at": session.expires_at.isoformat(),
            },
        )

    done = submitted(
        actor=operator_actor(operator=operator, tenant=tenant, ip=ip),
        key=key,
        action="support.started",
        run=start,
    )
    # A form sent twice opens one session: the second finds the first's id in its outcome.
    return SupportSession.objects.select_related("tenant").get(
        pk=int(done.outcome.target.removeprefix("support:"))
    )


def support_end(*, session: SupportSession, ip: str | None, why: str = "ended") -> bool:
    """End a support session (`why`: ended by the operator, expired, replaced by another), once:
    False when it had already ended. An expired session ends at its expiry."""
    now = clock.now()
    ended_at = min(now, session.expires_at)
    with transaction.atomic():
        ended = SupportSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(
            ended_at=ended_at
        )
        if not ended:
            return False
        session.ended_at = ended_at
        audit_record(
            actor=Actor(tenant=session.tenant, user=session.operator, ip=ip, operator=True),
            action="support.ended",
            target=f"support:{session.pk}",
            detail={"operator": session.operator_name, "why": why},
        )
    return True
