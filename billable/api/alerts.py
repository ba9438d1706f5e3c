"""`/billing/alert-rules`: usage alerts per feature (and plan), sent as
`quota.threshold_reached`."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Status

from billable import presenters, selectors
from billable.api.routers import ADMIN, READ, router
from billable.results import Threshold
from billable.schemas import AlertRuleIn, AlertRuleOut, AlertRulePage, AlertRulePatch, ThresholdIn
from billable.services import alerts as alert_services
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import error_responses

_SEMANTICS = (
    "A spend (consume, a hold's reservation, an exchange) that takes a customer's remaining "
    "units of the feature from above a threshold to at or below it sends "
    "`quota.threshold_reached`, once per customer, rule, threshold and allowance period (without "
    "a period: at each crossing). A percent threshold is a share of the allowance per period "
    "that the customer's subscriptions in force give for the feature; without one it is "
    "ignored. A rule with a plan applies to that plan's subscribers and overrides the general "
    "rules for them; within each, a rule for the feature overrides one for `*`."
)


def _thresholds(items: list[ThresholdIn]) -> list[Threshold]:
    return [Threshold(type=item.type, value=item.value) for item in items]


@router.get(
    "/alert-rules",
    auth=READ,
    response={200: AlertRulePage, **error_responses()},
    operation_id="billing_alert_rule_list",
    summary="List alert rules",
)
def alert_rule_list(request: HttpRequest, page: Query[PageParams]) -> dict[str, Any]:
    """The tenant's alert rules, newest first, each with its feature, optional plan and
    thresholds. Paginated with `limit` and `cursor`."""
    result = paginate(selectors.alert_rule_list(), limit=page.limit, cursor=page.cursor)
    return page_data(result, presenters.alert_rule_data)


@router.post(
    "/alert-rules",
    auth=ADMIN,
    response={201: AlertRuleOut, **error_responses(409)},
    operation_id="billing_alert_rule_create",
    summary="Create the alert rule of a feature (or `*`), optionally for one plan",
    description=_SEMANTICS + " 409 `alert_rule_exists` when the feature and plan have a rule; "
    "422 `unknown_plan`; 422 `validation_error` for an empty list, more than 10 thresholds, a "
    "percent outside 1–100 or a negative absolute value.",
)
def alert_rule_create(request: HttpRequest, payload: AlertRuleIn) -> Status:
    rule = alert_services.alert_rule_create(
        feature=payload.feature,
        plan=payload.plan,
        thresholds=_thresholds(payload.thresholds),
        is_active=payload.is_active,
    )
    return Status(201, presenters.alert_rule_data(rule))


@router.get(
    "/alert-rules/{rule_id}",
    auth=READ,
    response={200: AlertRuleOut, **error_responses(404)},
    operation_id="billing_alert_rule_get",
    summary="Get an alert rule",
)
def alert_rule_get(request: HttpRequest, rule_id: str) -> dict[str, Any]:
    """One alert rule by id; 404 `alert_rule_not_found` when it does not exist in this tenant."""
    return presenters.alert_rule_data(selectors.alert_rule_get(rule_id=rule_id))


@router.patch(
    "/alert-rules/{rule_id}",
    auth=ADMIN,
    response={200: AlertRuleOut, **error_responses(404)},
    operation_id="billing_alert_rule_update",
    summary="Change an alert rule's thresholds, or switch it on or off",
    description="The feature and plan of a rule are fixed: delete it and create another. "
    "Crossings already announced in the current period stay announced for the thresholds "
    "kept.",
)
def alert_rule_update(
    request: HttpRequest, rule_id: str, payload: AlertRulePatch
) -> dict[str, Any]:
    rule = selectors.alert_rule_get(rule_id=rule_id)
    rule = alert_services.alert_rule_update(
        rule=rule,
        thresholds=_thresholds(payload.thresholds) if payload.thresholds is not None else None,
        is_active=payload.is_active,
    )
    return presenters.alert_rule_data(rule)


@router.delete(
    "/alert-rules/{rule_id}",
    auth=ADMIN,
    response={204: None, **error_responses(404)},
    operation_id="billing_alert_rule_delete",
    summary="Delete an alert rule (and the record of its crossings)",
)
def alert_rule_delete(request: HttpRequest, rule_id: str) -> HttpResponse:
    """Delete an alert rule and the record of the crossings it announced; answers 204. 404
    `alert_rule_not_found`."""
    alert_services.alert_rule_delete(rule=selectors.alert_rule_get(rule_id=rule_id))
    return HttpResponse(status=204)
