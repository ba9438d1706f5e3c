"""Reads of the console: memberships, invitations and the audit log (public schema), and the
customer pages' reads, which run in the current tenant's schema through the engine's selectors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, QuerySet

from billable import clock
from billable import selectors as billing
from billable.models import (
    Customer,
    ExternalIdentity,
    Grant,
    Hold,
    LedgerEntry,
    Offer,
    Order,
    QuotaBatch,
    Referral,
    Subscription,
    Usage,
)
from billable.results import Balance, Explanation
from billable.selectors.ids import uuid_or_none
from billing_platform.console import errors
from billing_platform.console.models import AuditEntry, Invitation, Membership
from billing_platform.core.pagination import Page, paginate
from tenants.models import Tenant, TenantStatus

# Rows of each section of a customer's page; the ledger and the search are paged.
RECENT = 20
LEDGER_PAGE = 25
SEARCH_PAGE = 25


# --- People and tenants (public schema)


def memberships_of(user: User) -> list[Membership]:
    """The user's memberships of active tenants, by tenant name."""
    return list(
        Membership.objects.filter(user=user, tenant__status=TenantStatus.ACTIVE)
        .select_related("tenant")
        .order_by("tenant__name", "tenant_id")
    )


def members_of(tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__email")


def member_get(*, tenant: Tenant, membership_id: int) -> Membership:
    """A member of `tenant` by membership id; 404 `member_not_found` otherwise (another
    tenant's member alike)."""
    member = Membership.objects.filter(tenant=tenant, pk=membership_id).select_related("user")
    found = member.first()
    if found is None:
        raise errors.MemberNotFound()
    return found


def token_hash(token: str) -> str:
    """What is stored of an invitation link's token (the token itself is shown once)."""
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_by_token(token: str) -> Invitation:
    """The pending invitation a link's token names.

    Raises InvitationInvalid (404) for a token unknown, used or expired, all alike.
    """
    invitation = (
        Invitation.objects.select_related("tenant")
        .filter(
            token_hash=token_hash(token),
            accepted_at__isnull=True,
            expires_at__gt=clock.now(),
            tenant__status=TenantStatus.ACTIVE,
        )
        .first()
    )
    if invitation is None:
        raise errors.InvitationInvalid()
    return invitation


def invitations_pending(tenant: Tenant) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        tenant=tenant, accepted_at__isnull=True, expires_at__gt=clock.now()
    ).order_by("-created_at")


def audit_entries(
    *, tenant: Tenant, limit: int = 50, cursor: str | None = None
) -> Page[AuditEntry]:
    """The tenant's audit log, newest first (owners read it)."""
    return paginate(
        AuditEntry.objects.filter(tenant=tenant),
        limit=limit,
        cursor=cursor,
        order=("-created_at", "-pk"),
    )


# --- The current tenant's schema


def active_customer_count() -> int:
    """Customers that are neither merged into another nor erased."""
    return Customer.objects.filter(merged_into__isnull=True, erased_at__isnull=True).count()


def customer_search(*, query: str, cursor: str | None = None) -> Page[Customer]:
    """Customers named by `query`: a customer id (a merged one leads to its target), or the
    beginning of an external id of any provider; every customer, newest first, when empty.

    Raises ValidationFailed (422) for a cursor this page did not issue.
    """
    text = query.strip()
    if text and uuid_or_none(text) is not None:
        found = billing.customer_by_id(text)
        items = (
            []
            if found is None
            else list(Customer.objects.filter(pk=found.pk).prefetch_related("identities"))
        )
        return Page(items=items, next_cursor=None)
    return paginate(
        customers_matching(text).prefetch_related("identities"),
        limit=SEARCH_PAGE,
        cursor=cursor,
        order=("-created_at", "-pk"),
    )


def customers_matching(text: str) -> QuerySet[Customer]:
    """Unmerged customers with an external id that begins with `text` (all when empty)."""
    queryset = Customer.objects.filter(merged_into__isnull=True)
    if text:
        queryset = queryset.filter(
            Exists(
                ExternalIdentity.objects.filter(
                    customer=OuterRef("pk"), external_id__startswith=text
                )
            )
        )
    return queryset


@dataclass(frozen=True)
class CustomerPage:
    """Everything a customer's page shows but its ledger (paged apart)."""

    customer: Customer
    metadata: list[tuple[str, Any]]
    balances: list[Balance]
    explanation: Explanation | None
    batches: list[QuotaBatch]
    usages: list[Usage]
    orders: list[Order]
    holds: list[Hold]
    referrer: Referral | None
    referrals: list[Referral]
    referral_stats: dict[str, int]
    trials: list[Grant]
    subscriptions: list[Subscription]


def customer_get(*, customer_id: str, follow_merge: bool = False) -> Customer:
    """The customer with this id in the current tenant's schema (404 otherwise, another
    tenant's id alike); with `follow_merge`, the one it was merged into, if any."""
    return billing.customer_get(customer_id=customer_id, follow_merge=follow_merge)


def customer_page(*, customer: Customer, feature: str = "") -> CustomerPage:
    """The reads of a customer's page; with `feature`, why that name can or cannot be used."""
    feature = feature.strip()
    return CustomerPage(
        customer=customer,
        metadata=sorted(customer.metadata.items()) if isinstance(customer.metadata, dict) else [],
        balances=billing.balance_list(customer=customer),
        explanation=billing.balance_explain(customer=customer, feature=feature)
        if feature
        else None,
        batches=list(
            QuotaBatch.objects.filter(customer=customer)
            .select_related("product")
            .order_by("-created_at", "-id")[:RECENT]
        ),
        usages=list(billing.usages(customer=customer).order_by("-created_at", "-id")[:RECENT]),
        orders=list(billing.order_list(customer=customer).order_by("-created_at", "-id")[:RECENT]),
        holds=list(Hold.objects.filter(customer=customer).order_by("-created_at", "-id")[:RECENT]),
        referrer=Referral.objects.filter(referee=customer).select_related("referrer").first(),
        referrals=list(
            Referral.objects.filter(referrer=customer)
            .select_related("referee")
            .order_by("-created_at", "-id")[:RECENT]
        ),
        referral_stats=billing.referral_stats(customer=customer),
        trials=list(
            Grant.objects.filter(customer=customer, kind="trial").order_by("-created_at")[:RECENT]
        ),
        subscriptions=list(
            billing.subscription_list(customer=customer).order_by("-created_at")[:RECENT]
        ),
    )


def customer_ledger(*, customer: Customer, cursor: str | None = None) -> Page[LedgerEntry]:
    """A customer's ledger entries, newest first, a page at a time.

    Raises ValidationFailed (422) for a cursor this page did not issue.
    """
    return paginate(
        billing.ledger_entries(customer=customer),
        limit=LEDGER_PAGE,
        cursor=cursor,
        order=("-pk",),
    )


def grantable_offers() -> list[Offer]:
    """Offers a grant can give: active, with active products only."""
    return list(billing.catalog().order_by("sku"))
