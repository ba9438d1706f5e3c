"""Plans and their versions, with the entitlements and products their presenters read."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from billable import errors
from billable.catalog_keys import normalise_key
from billable.models import Plan, PlanEntitlement, PlanVersion

_ENTITLEMENTS = Prefetch(
    "entitlements", queryset=PlanEntitlement.objects.select_related("product")
)


def plan_list() -> QuerySet[Plan]:
    """Every plan, each with its versions and their entitlements (pages list the newest first)."""
    return Plan.objects.prefetch_related(
        Prefetch("versions", queryset=PlanVersion.objects.prefetch_related(_ENTITLEMENTS))
    )


def plan_get(*, key: str) -> Plan:
    """The plan with this key (any spelling of it); 404 `plan_not_found`."""
    try:
        normalised = normalise_key(key)
    except Exception as exc:
        raise errors.PlanNotFound() from exc
    plan = plan_list().filter(key=normalised).first()
    if plan is None:
        raise errors.PlanNotFound()
    return plan


def plan_version(plan: Plan, number: int | None = None) -> PlanVersion:
    """Version `number` of a plan (its current one by default); 404 `plan_version_not_found`."""
    wanted = plan.current_version if number is None else number
    for version in plan.versions.all():  # prefetched by plan_list
        if version.version == wanted:
            return version
    raise errors.PlanVersionNotFound()
