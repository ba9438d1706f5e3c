"""The billing endpoints (`/billing`, `/settings`), one module per aggregate.

Every module decorates the one `router` (or `settings_router`) of `billable.api.routers`; this
package only imports them, in the order the OpenAPI document lists their paths:

    quota      /balance, /quota/consume
    entitlements  /entitlements
    holds      /holds, /holds/{id}/commit, /holds/{id}/release
    grants     /grants, /adjustments, /batches/{id}/revoke
    customers  /identify, /customers/merge, /customers/import, /customers, /customers/{id},
               /customers/{id}/identities
    wallet     /wallet, /wallet/batches, /wallet/transactions
    catalog    /products, /offers, /catalog
    currencies /currencies, /currencies/{code}
    plans      /plans, /plans/{key}/versions, /plans/{key}/versions/{version}/retire
    subscriptions  /subscriptions, /subscriptions/{id}, /subscriptions/{id}/cancel|resume|
               renewal-order
    orders     /orders, /orders/{id}/confirm|cancel|refund, /exchange
    referrals  /referrals, /referrals/stats
    alerts     /alert-rules, /alert-rules/{id}
    settings   /settings

`billing_platform.api` mounts `router` at /billing (wrapping its POSTs in the request pipeline)
and `settings_router` at /settings; `public` (the keyless public catalog) is mounted on its own.
"""

from __future__ import annotations

from billable.api.routers import router, settings_router

# isort: off
# The order of these imports is the order of the paths in the OpenAPI document.
from billable.api import quota, entitlements, holds, grants, customers, wallet, catalog
from billable.api import currencies, plans
from billable.api import orders, subscriptions, referrals, alerts
from billable.api import settings

# isort: on

AGGREGATES = (
    quota, entitlements, holds, grants, customers, wallet, catalog, currencies, plans, orders,
    subscriptions, referrals, alerts, settings,
)

__all__ = ["AGGREGATES", "router", "settings_router"]
