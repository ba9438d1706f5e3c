"""Usage alerts: rules per feature (and plan) and the crossings they announce.

A spend (consume, a hold's reservation, an exchange) that takes a feature's remaining units from
above a threshold to at or below it sends `quota_threshold_reached`, once per customer, rule,
threshold and allowance period: the crossing is recorded in `AlertFiring` by one
`INSERT … ON CONFLICT` whose answer says whether this spend is the one to announce it, so
concurrent spends announce it once. Without an allowance period a threshold is announced at each
crossing, which needs the balance to have risen above it again (a grant, a refund, a released
hold) since the last one.

Which rules apply to a customer: the rules for their plans (subscriptions in force) override the
general ones, and within each, a rule for the feature overrides one for `*`. The tenant setting
`low_balance_threshold` (the older, tenant-wide level) still sends `quota_low` for the features
no active rule names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, connection, transaction

from billable import clock, errors, signals
from billable.models import AlertRule, Customer, Plan, Usage
from billable.results import ActiveRule, AlertContext, Threshold
from billable.selectors import alert_context, alert_rules_naming
from billable.tenancy import current_settings, current_tenant_row
from billing_platform.core.db import service_atomic
from billing_platform.core.errors import ValidationFailed
from tenants.resolution import invalidate_tenant

MAX_THRESHOLDS = 10
MAX_RULES = 100
EVERY_FEATURE = "*"


# --- The rules


def _check_thresholds(thresholds: Sequence[Threshold]) -> list[dict[str, Any]]:
    """The thresholds as stored; 422 naming the offending item."""
    if not thresholds:
        raise ValidationFailed("Give at least one threshold.", field="thresholds", msg="empty")
    if len(thresholds) > MAX_THRESHOLDS:
        raise ValidationFailed(
            f"A rule has at most {MAX_THRESHOLDS} thresholds.", field="thresholds",
            msg="too many",
        )
    seen: set[tuple[str, int]] = set()
    stored = []
    for index, threshold in enumerate(thresholds):
        where = ("thresholds", index, "value")
        if threshold.type not in ("absolute", "percent"):
            raise ValidationFailed(
                "type is absolute or percent.", field=("thresholds", index, "type")
            )
        if isinstance(threshold.value, bool) or not isinstance(threshold.value, int):
            raise ValidationFailed("value is an integer.", field=where)
        if threshold.type == "percent" and not 1 <= threshold.value <= 100:
            raise ValidationFailed(
                "A percent threshold is between 1 and 100.", field=where, msg="out of range"
            )
        if threshold.type == "absolute" and not 0 <= threshold.value <= 10**12:
            raise ValidationFailed(
                "An absolute threshold is between 0 and 10^12 units.", field=where,
                msg="out of range",
            )
        if (threshold.type, threshold.value) in seen:
            raise ValidationFailed("The threshold is given twice.", field=where, msg="duplicate")
        seen.add((threshold.type, threshold.value))
        stored.append({"type": threshold.type, "value": threshold.value})
    return stored


def _feature(feature: str) -> str:
    folded = feature.strip().lower()
    if not folded or len(folded) > 64:
        raise ValidationFailed("feature is a name of 1–64 characters, or *.", field="feature")
    return folded


def _plan(key: str | None) -> Plan | None:
    if key is None:
        return None
    plan = Plan.objects.filter(key=key.strip().upper()).first()
    if plan is None:
        raise errors.UnknownPlan(f"No plan has the key {key!r}.")
    return plan


def _rules_changed() -> None:
    """Drop the rules cached with the tenant's keys (now, and again when the change commits)."""
    invalidate_tenant(current_tenant_row())


def alert_rule_create(
    *,
    feature: str,
    thresholds: Sequence[Threshold],
    plan: str | None = None,
    is_active: bool = True,
) -> AlertRule:
    """Create the rule of a feature (or `*`) and plan; 409 `alert_rule_exists` if there is one,
    422 `unknown_plan`, 409 `too_many_alert_rules` past `MAX_RULES`."""
    stored = _check_thresholds(thresholds)
    folded = _feature(feature)
    with service_atomic():
        plan_row = _plan(plan)
        if AlertRule.objects.count() >= MAX_RULES:
            raise errors.TooManyAlertRules(f"A tenant has at most {MAX_RULES} alert rules.")
        try:
            with transaction.atomic():
                rule = AlertRule.objects.create(
                    feature=folded, plan=plan_row, thresholds=stored, is_active=is_active
                )
        except IntegrityError as exc:
            raise errors.AlertRuleExists(
                f"The rule of {folded!r}"
                + (f" for plan {plan_row.key}" if plan_row else "")
                + " exists: change it instead."
            ) from exc
        _rules_changed()
    return rule


def alert_rule_update(
    *,
    rule: AlertRule,
    thresholds: Sequence[Threshold] | None = None,
    is_active: bool | None = None,
) -> AlertRule:
    """Change a rule's thresholds or switch it on or off (its feature and plan are fixed).

    Crossings already announced stay recorded for the thresholds kept.
    """
    with service_atomic():
        rule = AlertRule.objects.select_for_update(of=("self",)).select_related("plan").get(
            pk=rule.pk
        )
        fields = []
        if thresholds is not None:
            rule.thresholds = _check_thresholds(thresholds)
            fields.append("thresholds")
        if is_active is not None:
            rule.is_active = is_active
            fields.append("is_active")
        if fields:
            rule.save(update_fields=[*fields, "updated_at"])
            _rules_changed()
    return rule


def alert_rule_delete(*, rule: AlertRule) -> None:
    """Delete a rule and the record of its crossings."""
    with service_atomic():
        AlertRule.objects.filter(pk=rule.pk).delete()
        _rules_changed()


# --- Crossings


def legacy_threshold(feature: str) -> int:
    """The tenant's `low_balance_threshold` where it applies to `feature` (no active rule names
    it); 0 when off."""
    threshold = int(current_settings().get("low_balance_threshold") or 0)
    if threshold <= 0 or alert_rules_naming(feature):
        return 0
    return threshold


def levels_may_act(feature: str) -> bool:
    """Whether a spend of `feature` could send `quota_low` or `quota_threshold_reached`."""
    if signals.may_act(signals.quota_threshold_reached) and alert_rules_naming(feature):
        return True
    return signals.may_act(signals.quota_low) and legacy_threshold(feature) > 0


def _applying(
    rules: Sequence[ActiveRule], folded: str, plan_ids: frozenset[int]
) -> list[ActiveRule]:
    """The rules that apply: the first non-empty of plan+feature, plan+`*`, feature, `*`."""
    for planned in (True, False):
        for name in (folded, EVERY_FEATURE):
            found = [
                rule for rule in rules
                if rule.feature == name
                and ((rule.plan_id in plan_ids) if planned else rule.plan_id is None)
            ]
            if found:
                return found
    return []


def _units(threshold: Threshold, allowance: int | None) -> int | None:
    """The threshold in units; None for a percent threshold without an allowance."""
    if threshold.type == "absolute":
        return threshold.value
    if not allowance:
        return None
    # "remaining <= p% of the allowance" holds for an integer remaining exactly when it is at
    # most the floor of that share.
    return allowance * threshold.value // 100


def _period_key(context: AlertContext) -> str:
    if context.period is None:
        return ""
    start, end = context.period
    return f"{start.isoformat()}/{end.isoformat()}"


def alerts_signal(customer: Customer, feature: str, before: int, after: int) -> None:
    """Send `quota_threshold_reached` for each threshold of the rules that apply which this
    spend (`before` → `after` units of `feature`) crossed and that was not yet announced in
    the period. Costs nothing without a receiver or a rule naming the feature; otherwise at
    most two statements (the customer's context, the record of the crossings)."""
    if after >= before or not signals.may_act(signals.quota_threshold_reached):
        return
    rules = alert_rules_naming(feature)
    if not rules:
        return
    percent = any(t.type == "percent" for rule in rules for t in rule.thresholds)
    if not percent and not any(
        before > t.value >= after for rule in rules for t in rule.thresholds
    ):
        return  # no threshold of any rule that may apply lies in the spent range
    now = clock.now()
    folded = feature.lower()
    context = alert_context(customer_id=customer.pk, feature=feature, now=now)
    crossed: list[tuple[ActiveRule, Threshold, int]] = []
    for rule in _applying(rules, folded, context.plan_ids):
        for threshold in rule.thresholds:
            units = _units(threshold, context.allowance)
            if units is not None and before > units >= after:
                crossed.append((rule, threshold, units))
    if not crossed:
        return
    announced = _record(customer, folded, crossed, context, after, now)
    period = (
        {"start": context.period[0], "end": context.period[1]} if context.period else None
    )
    for rule, threshold, units in crossed:
        if (rule.id, threshold.type, threshold.value) not in announced:
            continue
        signals.quota_threshold_reached.send(
            sender=Usage, customer=customer, feature=feature, remaining=after,
            threshold={"type": threshold.type, "value": threshold.value, "units": units},
            rule_id=rule.id, plan=rule.plan_key,
            allowance=context.allowance, period=period,
        )


_RECORD_SQL = """
INSERT INTO billable_alertfiring AS f
    (rule_id, customer_id, feature, threshold_type, threshold_value, period_key, period_start,
     period_end, remaining, fired_at)
VALUES {rows}
ON CONFLICT (rule_id, customer_id, feature, threshold_type, threshold_value, period_key)
DO UPDATE SET remaining = EXCLUDED.remaining, fired_at = EXCLUDED.fired_at
    WHERE f.period_key = ''
RETURNING rule_id, threshold_type, threshold_value
"""


def _record(
    customer: Customer,
    folded: str,
    crossed: list[tuple[ActiveRule, Threshold, int]],
    context: AlertContext,
    after: int,
    now: Any,
) -> set[tuple[str, str, int]]:
    """Record the crossings; the ones this spend announces (first in their period, or any
    crossing without a period). A concurrent spend's record of the same crossing makes this
    insert wait for its commit and then skip the row."""
    key = _period_key(context)
    start, end = context.period if context.period else (None, None)
    params: list[Any] = []
    for rule, threshold, _units in crossed:
        params += [rule.id, customer.pk, folded, threshold.type, threshold.value, key, start,
                   end, after, now]
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(crossed))
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_SQL.format(rows=rows), params)
        return {(str(rule_id), kind, int(value)) for rule_id, kind, value in cursor.fetchall()}
