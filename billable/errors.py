"""Errors of the billing engine, on the platform's one hierarchy (billing_platform.core.errors)."""

from __future__ import annotations

from billing_platform.core.errors import (
    Conflict,
    NotFound,
    PaymentRequired,
    Unprocessable,
)


class QuotaExhausted(PaymentRequired):
    code = "quota_exhausted"
    title = "Nothing usable covers this feature"


class InsufficientQuota(PaymentRequired):
    code = "insufficient_quota"
    title = "Not enough units left for this amount"


class CustomerNotFound(NotFound):
    code = "customer_not_found"
    title = "No such customer"


class IdentityNotFound(NotFound):
    code = "identity_not_found"
    title = "The customer does not hold this identity"


class ProductNotFound(NotFound):
    code = "product_not_found"
    title = "No such product"


class OfferNotFound(NotFound):
    code = "offer_not_found"
    title = "No such offer"


class PlanNotFound(NotFound):
    code = "plan_not_found"
    title = "No such plan"


class PlanVersionNotFound(NotFound):
    code = "plan_version_not_found"
    title = "No such version of this plan"


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"
    title = "No such subscription"


class BatchNotFound(NotFound):
    code = "batch_not_found"
    title = "No such batch"


class HoldNotFound(NotFound):
    code = "hold_not_found"
    title = "No such hold"


class CurrencyNotFound(NotFound):
    code = "currency_not_found"
    title = "No such declared currency"


class AlertRuleNotFound(NotFound):
    code = "alert_rule_not_found"
    title = "No such alert rule"


class KeyTaken(Conflict):
    code = "key_taken"
    title = "A product, offer, plan or declared currency already uses this key"


class CurrencyInUse(Conflict):
    code = "currency_in_use"
    title = "An offer, plan version or order uses this currency; its digits are fixed"


class ProductInUse(Conflict):
    code = "product_in_use"
    title = "The product has batches or plan entitlements; its type and currency flag are fixed"


class HoldNotActive(Conflict):
    code = "hold_not_active"
    title = "The hold is no longer active"


class BatchNotActive(Conflict):
    code = "batch_not_active"
    title = "The batch is not active"


class CustomerMismatch(Unprocessable):
    code = "customer_mismatch"
    title = "customer_id and external_id name different customers"


class UnknownSku(Unprocessable):
    code = "unknown_sku"
    title = "No offer has this SKU"


class UnknownProduct(Unprocessable):
    code = "unknown_product"
    title = "No product has this key"


class InactiveOffer(Unprocessable):
    code = "inactive_offer"
    title = "The offer is not active"


class InactiveProduct(Unprocessable):
    code = "inactive_product"
    title = "The offer contains an inactive product"


class InvalidCurrency(Unprocessable):
    code = "invalid_currency"
    title = "The currency is neither an ISO 4217 code, a declared currency nor a currency product"


class IsoCurrency(Unprocessable):
    code = "iso_currency"
    title = "ISO 4217 codes are known already and cannot be declared"


class ExpiryOutOfRange(Unprocessable):
    code = "expiry_out_of_range"
    title = "The access would end after 9999-01-01, the latest expiry stored"


class MetadataTooLarge(Unprocessable):
    code = "metadata_too_large"
    title = "The stored metadata would be larger than 16 KiB"


class NotAQuantityProduct(Unprocessable):
    code = "not_a_quantity_product"
    title = "Adjustments apply to quantity products only"


class TrialAlreadyUsed(Conflict):
    code = "trial_already_used"
    title = "One of these identities has already taken a trial"


class OrderNotFound(NotFound):
    code = "order_not_found"
    title = "No such order"


class InvalidOrderState(Conflict):
    code = "invalid_order_state"
    title = "The order cannot make this transition"


class OrderAlreadyPaid(Conflict):
    code = "order_already_paid"
    title = "The order was already paid with another payment_id"


class PaymentIdConflict(Conflict):
    code = "payment_id_conflict"
    title = "This payment_id already paid another order"


class MixedCurrencies(Unprocessable):
    code = "mixed_currencies"
    title = "An order's items must share one currency"


class NotACurrency(Unprocessable):
    code = "not_a_currency"
    title = "The offer is not priced in a currency product"


class SelfReferral(Unprocessable):
    code = "self_referral"
    title = "A customer cannot refer itself"


class AlreadyReferred(Conflict):
    code = "already_referred"
    title = "The referee already has another referrer"


class ReferralCycle(Conflict):
    code = "referral_cycle"
    title = "This referral would make a cycle"


class IdentityConflict(Conflict):
    code = "identity_conflict"
    title = "Both customers hold different external ids for the same provider"


class UnknownReferrer(Unprocessable):
    code = "unknown_referrer"
    title = "No customer holds the referrer's identity, and this tenant requires a known referrer"


class SameCustomer(Unprocessable):
    code = "same_customer"
    title = "Source and target are the same customer"


class CustomerErased(Unprocessable):
    code = "customer_erased"
    title = "An erased customer can neither be merged nor take another's place"


class PlanVersionRetired(Conflict):
    code = "plan_version_retired"
    title = "This version of the plan takes no new subscriptions"


class InactivePlan(Unprocessable):
    code = "inactive_plan"
    title = "The plan is not active"


class SubscriptionExists(Conflict):
    code = "subscription_exists"
    title = "The customer already has a live subscription to this plan"


class PlanChangeNotAllowed(Conflict):
    code = "plan_change_not_allowed"
    title = "This plan change is not possible now"


class PauseNotAllowed(Conflict):
    code = "pause_not_allowed"
    title = "This subscription cannot pause now"


class RenewalOutOfOrder(Conflict):
    code = "renewal_out_of_order"
    title = "This renewal order is not for the next period to pay"


class RenewalNotNeeded(Conflict):
    code = "renewal_not_needed"
    title = "This subscription needs no renewal order now"


class SubscriptionNotActive(Conflict):
    code = "subscription_not_active"
    title = "The subscription is not in a state that allows this"


class UnknownPlan(Unprocessable):
    code = "unknown_plan"
    title = "No plan has this key"


class AlertRuleExists(Conflict):
    code = "alert_rule_exists"
    title = "An alert rule for this feature and plan already exists"


class TooManyAlertRules(Conflict):
    code = "too_many_alert_rules"
    title = "The tenant has as many alert rules as allowed"
