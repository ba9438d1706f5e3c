"""`/billing/plans`: subscription offers and the versions of their terms."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Status

from billable import presenters, selectors
from billable.api.inputs import decimal_amount, patch_changes
from billable.api.routers import ADMIN, READ, router
from billable.schemas import (
    AllowanceIn,
    PlanIn,
    PlanOut,
    PlanPage,
    PlanPatch,
    PlanVersionList,
    PlanVersionOut,
    ValueIn,
)
from billable.services import plans as plan_services
from billable.services.plans import EntitlementSpec, Terms
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import error_responses


def _entitlements(items: list[Any]) -> tuple[EntitlementSpec, ...]:
    specs = []
    for item in items:
        if isinstance(item, AllowanceIn):
            specs.append(EntitlementSpec(
                entitlement_type="allowance", product=item.product, amount=item.amount,
                reset_unit=item.reset_unit, reset_count=item.reset_count,
                rollover_cap=item.rollover_cap,
            ))
        elif isinstance(item, ValueIn):
            specs.append(EntitlementSpec(entitlement_type="value", name=item.name,
                                         value=item.value))
        else:
            specs.append(EntitlementSpec(entitlement_type="access", product=item.product))
    return tuple(specs)


def _plan_out(plan: Any) -> dict[str, Any]:
    return presenters.plan_data(plan, selectors.plan_version(plan))


@router.get(
    "/plans",
    auth=READ,
    response={200: PlanPage, **error_responses()},
    operation_id="billing_plan_list",
    summary="List plans, each with its current terms",
)
def plan_list(request: HttpRequest, page: Query[PageParams]) -> dict[str, Any]:
    """Every plan with its current terms (price, interval, trial days, entitlements). Paginated with
    `limit` and `cursor`."""
    result = paginate(selectors.plan_list(), limit=page.limit, cursor=page.cursor)
    return page_data(result, _plan_out)


@router.post(
    "/plans",
    auth=ADMIN,
    response={201: PlanOut, **error_responses(409)},
    operation_id="billing_plan_create",
    summary="Create a plan (its terms are version 1)",
)
def plan_create(request: HttpRequest, payload: PlanIn) -> Status:
    """Create a subscription plan: a price per interval and entitlements (`access` to a product, a
    periodic `allowance` of a product's units, or a configuration `value`). Its terms are version 1.
    409 `key_taken`."""
    plan = plan_services.plan_create(
        key=payload.key,
        name=payload.name,
        description=payload.description,
        is_active=payload.is_active,
        metadata=payload.metadata,
        upgrade_allowance=payload.upgrade_allowance,
        terms=Terms(
            interval_unit=payload.interval_unit,
            interval_count=payload.interval_count,
            price=decimal_amount(payload.price, "price"),
            currency=payload.currency,
            trial_days=payload.trial_days,
            entitlements=_entitlements(payload.entitlements),
        ),
    )
    return Status(201, _plan_out(selectors.plan_get(key=plan.key)))


@router.get(
    "/plans/{key}",
    auth=READ,
    response={200: PlanOut, **error_responses(404)},
    operation_id="billing_plan_get",
    summary="Get a plan with its current terms",
)
def plan_get(request: HttpRequest, key: str) -> dict[str, Any]:
    """One plan by key (any case) with its current terms; 404 `plan_not_found`."""
    return _plan_out(selectors.plan_get(key=key))


@router.patch(
    "/plans/{key}",
    auth=ADMIN,
    response={200: PlanOut, **error_responses(404, 409)},
    operation_id="billing_plan_update",
    summary="Change a plan (new terms make a new version; subscribers keep theirs)",
)
def plan_update(request: HttpRequest, key: str, payload: PlanPatch) -> dict[str, Any]:
    """Change a plan. Changing its terms (price, interval, trial, entitlements) makes a new version
    that new subscriptions take; existing subscribers keep theirs. Name, description and metadata
    change in place."""
    plan = selectors.plan_get(key=key)
    changes = patch_changes(payload)
    if "price" in changes:
        changes["price"] = decimal_amount(changes["price"], "price")
    if "entitlements" in changes:
        changes["entitlements"] = _entitlements(payload.entitlements or [])
    plan_services.plan_update(plan=plan, **changes)
    return _plan_out(selectors.plan_get(key=plan.key))


@router.get(
    "/plans/{key}/versions",
    auth=READ,
    response={200: PlanVersionList, **error_responses(404)},
    operation_id="billing_plan_versions",
    summary="Every version of a plan's terms, oldest first",
)
def plan_versions(request: HttpRequest, key: str) -> dict[str, Any]:
    """Every version of a plan's terms, oldest first, each with `retired_at` once retired."""
    plan = selectors.plan_get(key=key)
    return {"items": [presenters.plan_version_data(plan, v) for v in plan.versions.all()]}


@router.get(
    "/plans/{key}/versions/{version}",
    auth=READ,
    response={200: PlanVersionOut, **error_responses(404)},
    operation_id="billing_plan_version_get",
    summary="One version of a plan's terms",
)
def plan_version_get(request: HttpRequest, key: str, version: int) -> dict[str, Any]:
    """One version of a plan's terms; 404 `plan_version_not_found`."""
    plan = selectors.plan_get(key=key)
    return presenters.plan_version_data(plan, selectors.plan_version(plan, version))


@router.post(
    "/plans/{key}/versions/{version}/retire",
    auth=ADMIN,
    response={200: PlanVersionOut, **error_responses(404)},
    operation_id="billing_plan_version_retire",
    summary="Retire a version: no new subscriptions take it; its subscribers keep it",
)
def plan_version_retire(request: HttpRequest, key: str, version: int) -> dict[str, Any]:
    """Retire a version: no new subscription or plan change takes it (409 `plan_version_retired`);
    its subscribers keep it."""
    plan = selectors.plan_get(key=key)
    plan_services.plan_version_retire(version=selectors.plan_version(plan, version))
    plan = selectors.plan_get(key=key)
    return presenters.plan_version_data(plan, selectors.plan_version(plan, version))
