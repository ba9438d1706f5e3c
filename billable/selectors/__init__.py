"""Reads of the billing engine: querysets with what they need prefetched, and plain data.

One module per concern; every public name is importable from here (`selectors.product_get`):

- `products`: the catalog (products, offers, what can be sold or granted);
- `currencies`: the tenant's declared currencies;
- `customers`: customer references, identities, referrals;
- `identities`: the hashes of trial identities;
- `ledger`: usable batches, balances, holds, ledger entries;
- `balance`: the one-statement can-use check of one name (`balance_check`);
- `plans`: plans, their versions and entitlements; `subscriptions`;
- `entitlements`: everything a customer is entitled to, in one answer;
- `alerts`: alert rules, the active ones the spending paths check, a customer's context;
- `orders`; `sweep` (when upkeep is next due); `verify` (the ledger invariant).

Selectors never import services; services call them for what they read.
"""

from __future__ import annotations

from billable.selectors.alerts import (
    alert_context,
    alert_rule_get,
    alert_rule_list,
    alert_rules_active,
    alert_rules_naming,
)
from billable.selectors.balance import balance_check
from billable.selectors.currencies import currency_get, currency_list
from billable.selectors.customers import (
    DEFAULT_PROVIDER,
    CustomerRef,
    customer_by_id,
    customer_by_identity,
    customer_find,
    customer_get,
    customer_list,
    customer_require,
    normalise_external_id,
    referral_stats,
    referrer_chain,
    referrer_chain_contains,
)
from billable.selectors.entitlements import entitlements_get
from billable.selectors.explain import REASONS, balance_as_of, balance_explain
from billable.selectors.identities import (
    IdentityHashes,
    customer_identity_hashes,
    identity_hash,
    identity_secret,
    normalise_identity,
    trial_taken,
)
from billable.selectors.ledger import (
    FAR_FUTURE_AWARE,
    Balance,
    balance_get,
    balance_list,
    batch_get,
    contiguous_end,
    has_usable_access,
    hold_get,
    ledger_entries,
    period_access_end,
    usable_batches,
    usages,
    wallet,
)
from billable.selectors.orders import order_get, order_list
from billable.selectors.plans import plan_get, plan_list, plan_version
from billable.selectors.products import (
    catalog,
    catalog_by_skus,
    catalog_key_like,
    offer_for_grant,
    offer_get,
    offer_list,
    product_get,
    product_list,
)
from billable.selectors.subscriptions import subscription_get, subscription_list
from billable.selectors.sweep import sweep_next_due
from billable.selectors.verify import (
    BatchDrift,
    LedgerReport,
    ledger_verify,
    tenants_verify,
    verified_tenants,
)

__all__ = [
    "DEFAULT_PROVIDER",
    "FAR_FUTURE_AWARE",
    "REASONS",
    "Balance",
    "BatchDrift",
    "CustomerRef",
    "IdentityHashes",
    "LedgerReport",
    "alert_context",
    "alert_rule_get",
    "alert_rule_list",
    "alert_rules_active",
    "alert_rules_naming",
    "balance_as_of",
    "balance_check",
    "balance_explain",
    "balance_get",
    "balance_list",
    "batch_get",
    "catalog",
    "catalog_by_skus",
    "catalog_key_like",
    "contiguous_end",
    "currency_get",
    "currency_list",
    "customer_by_id",
    "customer_by_identity",
    "customer_find",
    "customer_get",
    "customer_identity_hashes",
    "customer_list",
    "customer_require",
    "entitlements_get",
    "has_usable_access",
    "hold_get",
    "identity_hash",
    "identity_secret",
    "ledger_entries",
    "ledger_verify",
    "normalise_external_id",
    "normalise_identity",
    "offer_for_grant",
    "offer_get",
    "offer_list",
    "order_get",
    "order_list",
    "period_access_end",
    "plan_get",
    "plan_list",
    "plan_version",
    "product_get",
    "product_list",
    "referral_stats",
    "referrer_chain",
    "referrer_chain_contains",
    "subscription_get",
    "subscription_list",
    "sweep_next_due",
    "tenants_verify",
    "trial_taken",
    "usable_batches",
    "usages",
    "verified_tenants",
    "wallet",
]
