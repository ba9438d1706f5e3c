"""Reads of the settings pages: the audit log with its filters, and operators' support sessions.

The audit log is paged by keyset, newest first, and each filter reads an index of its own that
is already in that order (`audit_tenant_action`, `audit_tenant_actor`, `audit_tenant_target`,
and `audit_tenant_recent` for the dates alone), so a page never sorts the whole log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import QuerySet

from billable import clock
from billing_platform.console.models import AuditEntry, SupportSession
from billing_platform.core.pagination import Page, paginate
from tenants.models import Tenant, TenantStatus

AUDIT_PAGE = 50


@dataclass(frozen=True)
class AuditQuery:
    """The audit log's filters, each exact: `actor` as the log shows it (an email, or
    `operator:<id>`), `target` as `customer:<id>`; dates as [from, before)."""

    action: str = ""
    actor: str = ""
    target: str = ""
    created_from: datetime | None = None
    created_before: datetime | None = None


def audit_matching(*, tenant: Tenant, query: AuditQuery) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.filter(tenant=tenant)
    if query.action:
        entries = entries.filter(action=query.action)
    if query.actor:
        entries = entries.filter(actor=query.actor)
    if query.target:
        entries = entries.filter(target=query.target)
    if query.created_from is not None:
        entries = entries.filter(created_at__gte=query.created_from)
    if query.created_before is not None:
        entries = entries.filter(created_at__lt=query.created_before)
    return entries


def audit_page(
    *, tenant: Tenant, query: AuditQuery, cursor: str | None = None
) -> Page[AuditEntry]:
    """The tenant's audit entries the filters match, newest first, a page at a time.

    Raises ValidationFailed (422) for a cursor this page did not issue.
    """
    return paginate(
        audit_matching(tenant=tenant, query=query),
        limit=AUDIT_PAGE,
        cursor=cursor,
        order=("-created_at", "-pk"),
    )


# --- Support sessions


def support_session_running(*, session_id: object, operator: User) -> SupportSession | None:
    """The operator's support session with this id, if it has not ended, and its tenant is active
    (expired or not: the gate ends an expired one)."""
    if not isinstance(session_id, int):
        return None
    return (
        SupportSession.objects.filter(
            pk=session_id,
            operator=operator,
            ended_at__isnull=True,
            tenant__status=TenantStatus.ACTIVE,
        )
        .select_related("tenant")
        .first()
    )


def support_sessions_open(*, operator: User) -> QuerySet[SupportSession]:
    """The operator's sessions not ended yet (at most one runs: a new one ends the others)."""
    return SupportSession.objects.filter(operator=operator, ended_at__isnull=True)


def support_expired(session: SupportSession) -> bool:
    return session.expires_at <= clock.now()


def support_minutes() -> int:
    return int(settings.CONSOLE_SUPPORT_SESSION_MINUTES)
