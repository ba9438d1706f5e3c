"""One walk through every operation of the API, as a new tenant with the demo catalog would make
it; the requests and answers it records are the examples of the OpenAPI document.

The customer is `telegram` user `1001` and the features, products and SKUs are those of the demo
catalog that `make run` installs, so a request example tried in the Swagger UI against the demo
tenant names things that exist there. `tests/billing_platform/test_openapi_docs.py` runs the walk
on every test run and checks that the recorded examples still match what the API answers;
`RECORD_OPENAPI_EXAMPLES=1` writes them anew to `billing_platform/openapi_examples.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support.api import Api, Response

CUSTOMER = {"provider": "telegram", "external_id": 1001}
CUSTOMER_QUERY = {"provider": "telegram", "external_id": "1001"}


@dataclass
class Call:
    operation_id: str
    method: str
    path: str  # as requested, ids filled in
    query: dict[str, Any]
    body: Any
    status: int
    answer: Any


@dataclass
class Walk:
    api: Api
    key: str
    platform_key: str
    tenant_slug: str
    calls: list[Call] = field(default_factory=list)

    def call(
        self,
        operation_id: str,
        method: str,
        path: str,
        *,
        expect: int,
        body: Any = None,
        query: dict[str, Any] | None = None,
        platform: bool = False,
        public: bool = False,
    ) -> Any:
        key = None if public else (self.platform_key if platform else self.key)
        response: Response = self.api.request(
            method, path, key=key, json_body=body, query=query
        )
        answer = response.json if response.body else None
        assert response.status == expect, (operation_id, response.status, answer)
        self.calls.append(
            Call(operation_id, method, "/api/v1/" + path, query or {}, body, expect, answer)
        )
        return answer


def walk_tenant(w: Walk) -> None:
    """Call every tenant and public operation (a few twice: a 402); assert each status."""
    # The tenant's settings and catalog
    w.call("settings_get", "GET", "settings", expect=200)
    w.call("settings_update", "PATCH", "settings", expect=200,
           body={"low_balance_threshold": 2, "public_catalog": True})
    w.call("billing_product_list", "GET", "billing/products", expect=200, query={"limit": 2})
    w.call("billing_product_get", "GET", "billing/products/REPORTS", expect=200)
    w.call("billing_product_create", "POST", "billing/products", expect=201, body={
        "key": "EXPORTS", "name": "CSV exports", "product_type": "quantity",
        "description": "One export of a report as CSV", "features": ["csv_export"],
    })
    w.call("billing_product_update", "PATCH", "billing/products/EXPORTS", expect=200,
           body={"description": "One CSV export of a report"})
    w.call("billing_offer_list", "GET", "billing/offers", expect=200, query={"limit": 2})
    w.call("billing_offer_create", "POST", "billing/offers", expect=201, body={
        "sku": "EXPORTS_20", "name": "20 exports", "price": "4.00", "currency": "USD",
        "items": [{"product": "EXPORTS", "quantity": 20, "period_unit": "days",
                   "period_value": 30}],
    })
    w.call("billing_offer_get", "GET", "billing/offers/REPORTS_10", expect=200)
    w.call("billing_offer_update", "PATCH", "billing/offers/EXPORTS_20", expect=200,
           body={"price": "3.50"})
    w.call("billing_catalog", "GET", "billing/catalog", expect=200,
           query={"sku": ["REPORTS_10", "PRO_MONTH"]})
    w.call("billing_currency_create", "POST", "billing/currencies", expect=201,
           body={"code": "GEMS", "name": "Gems", "minor_digits": 0})
    w.call("billing_currency_list", "GET", "billing/currencies", expect=200)
    w.call("billing_currency_get", "GET", "billing/currencies/GEMS", expect=200)
    w.call("billing_currency_update", "PATCH", "billing/currencies/GEMS", expect=200,
           body={"name": "Shiny gems"})
    w.call("billing_currency_delete", "DELETE", "billing/currencies/GEMS", expect=204)

    # A customer: identify, grant, check, consume, replay, run out
    w.call("billing_identify", "POST", "billing/identify", expect=200, body={
        **CUSTOMER, "profile": {"username": "ada", "language": "en"},
    })
    w.call("billing_grant_create", "POST", "billing/grants", expect=201, body={
        **CUSTOMER, "sku": "REPORTS_10", "kind": "bonus", "reason": "Welcome bonus",
    })
    w.call("billing_balance", "GET", "billing/balance", expect=200,
           query={**CUSTOMER_QUERY, "feature": "report_generation", "explain": "true"})
    w.call("billing_entitlements", "GET", "billing/entitlements", expect=200,
           query=CUSTOMER_QUERY)
    consume = {**CUSTOMER, "feature": "report_generation", "amount": 1,
               "action_id": "report-2026-12-04-0001", "metadata": {"report": "monthly-sales"}}
    w.call("billing_quota_consume", "POST", "billing/quota/consume", expect=200, body=consume)
    w.call("billing_quota_consume", "POST", "billing/quota/consume", expect=402,
           body={**consume, "amount": 50, "action_id": "report-2026-12-04-0002"})
    w.call("billing_usages", "GET", "billing/usages", expect=200, query=CUSTOMER_QUERY)
    w.call("billing_grant_create", "POST", "billing/grants", expect=201, body={
        **CUSTOMER, "sku": "PRO_TRIAL", "kind": "trial",
        "identities": {"telegram": 1001, "email": "ada@example.com"},
    })
    hold = w.call("billing_hold_create", "POST", "billing/holds", expect=201, body={
        **CUSTOMER, "feature": "report_generation", "amount": 2, "ttl_seconds": 600,
    })
    w.call("billing_hold_commit", "POST", f"billing/holds/{hold['id']}/commit", expect=200,
           body={"amount": 1})
    hold = w.call("billing_hold_create", "POST", "billing/holds", expect=201, body={
        **CUSTOMER, "feature": "report_generation", "amount": 1,
    })
    w.call("billing_hold_release", "POST", f"billing/holds/{hold['id']}/release", expect=200)
    adjustment = w.call("billing_adjustment_create", "POST", "billing/adjustments",
                        expect=201, body={**CUSTOMER, "product": "REPORTS", "amount": 5,
                                          "reason": "Support ticket #4312"})
    w.call("billing_wallet", "GET", "billing/wallet", expect=200, query=CUSTOMER_QUERY)
    w.call("billing_wallet_batches", "GET", "billing/wallet/batches", expect=200,
           query={**CUSTOMER_QUERY, "product": "REPORTS"})
    w.call("billing_wallet_transactions", "GET", "billing/wallet/transactions", expect=200,
           query={**CUSTOMER_QUERY, "limit": 3})
    w.call("billing_batch_revoke", "POST",
           f"billing/batches/{adjustment['batches'][0]['id']}/revoke", expect=200,
           body={"reason": "Granted by mistake"})

    # Orders: buy, pay, cancel, refund; coins for reports
    order = w.call("billing_order_create", "POST", "billing/orders", expect=201, body={
        **CUSTOMER, "items": [{"sku": "REPORTS_10", "quantity": 1}],
        "metadata": {"invoice": "INV-2026-0042"},
    })
    w.call("billing_order_list", "GET", "billing/orders", expect=200,
           query={**CUSTOMER_QUERY, "status": "pending"})
    w.call("billing_order_get", "GET", f"billing/orders/{order['id']}", expect=200)
    w.call("billing_order_confirm", "POST", f"billing/orders/{order['id']}/confirm",
           expect=200, body={"payment_id": "pi_3QxY2b", "payment_method": "card"})
    w.call("billing_order_refund", "POST", f"billing/orders/{order['id']}/refund",
           expect=200, body={"reason": "Customer asked for a refund"})
    other = w.call("billing_order_create", "POST", "billing/orders", expect=201,
                   body={**CUSTOMER, "items": [{"sku": "PRO_MONTH"}]})
    w.call("billing_order_cancel", "POST", f"billing/orders/{other['id']}/cancel", expect=200,
           body={"reason": "Abandoned checkout"})
    coins = w.call("billing_order_create", "POST", "billing/orders", expect=201,
                   body={**CUSTOMER, "items": [{"sku": "COINS_100"}]})
    w.call("billing_order_confirm", "POST", f"billing/orders/{coins['id']}/confirm",
           expect=200, body={"payment_id": "pi_3QxY9k"})
    w.call("billing_exchange", "POST", "billing/exchange", expect=200,
           body={**CUSTOMER, "sku": "REPORTS_5_FOR_COINS"})

    # Customers: find, attach an identity, import, merge, refer, erase
    ada = w.call("billing_customer_list", "GET", "billing/customers", expect=200,
                 query=CUSTOMER_QUERY)["items"][0]
    w.call("billing_customer_get", "GET", f"billing/customers/{ada['id']}", expect=200)
    w.call("billing_customer_identity_attach", "POST",
           f"billing/customers/{ada['id']}/identities", expect=201,
           body={"provider": "email", "external_id": "ada@example.com"})
    w.call("billing_customer_identity_detach", "DELETE",
           f"billing/customers/{ada['id']}/identities/email/ada@example.com", expect=204)
    imported = w.call("billing_customer_import", "POST", "billing/customers/import",
                      expect=200, body={"customers": [
                          {"identities": [{"provider": "telegram", "external_id": 1002}],
                           "metadata": {"username": "grace"}},
                          {"identities": [{"provider": "email",
                                           "external_id": "grace@example.com"}]},
                      ]})
    w.call("billing_customer_merge", "POST", "billing/customers/merge", expect=200, body={
        "target_customer_id": imported["customers"][0]["customer_id"],
        "source_customer_id": imported["customers"][1]["customer_id"],
    })
    w.call("billing_referral_attach", "POST", "billing/referrals", expect=201, body={
        "referrer": CUSTOMER, "referee": {"provider": "telegram", "external_id": 1002},
    })
    w.call("billing_referral_stats", "GET", "billing/referrals/stats", expect=200,
           query=CUSTOMER_QUERY)
    gone = w.call("billing_identify", "POST", "billing/identify", expect=200,
                  body={"provider": "telegram", "external_id": 1003})
    w.call("billing_customer_erase", "DELETE", f"billing/customers/{gone['customer_id']}",
           expect=204)

    # Plans and subscriptions
    w.call("billing_plan_create", "POST", "billing/plans", expect=201, body={
        "key": "PRO_PLAN", "name": "Pro", "price": "19.00", "currency": "USD",
        "interval_unit": "months", "interval_count": 1, "trial_days": 7,
        "entitlements": [
            {"type": "access", "product": "PRO_ACCESS"},
            {"type": "allowance", "product": "REPORTS", "amount": 100, "reset_unit": "months",
             "reset_count": 1},
            {"type": "value", "name": "max_projects", "value": 10},
        ],
    })
    w.call("billing_plan_list", "GET", "billing/plans", expect=200)
    w.call("billing_plan_update", "PATCH", "billing/plans/PRO_PLAN", expect=200,
           body={"price": "24.00"})
    w.call("billing_plan_get", "GET", "billing/plans/PRO_PLAN", expect=200)
    w.call("billing_plan_versions", "GET", "billing/plans/PRO_PLAN/versions", expect=200)
    w.call("billing_plan_version_get", "GET", "billing/plans/PRO_PLAN/versions/1", expect=200)
    sub = w.call("billing_subscription_create", "POST", "billing/subscriptions", expect=201,
                 body={**CUSTOMER, "plan": "PRO_PLAN", "trial": False})
    sub_path = f"billing/subscriptions/{sub['id']}"
    w.call("billing_subscription_list", "GET", "billing/subscriptions", expect=200,
           query=CUSTOMER_QUERY)
    w.call("billing_subscription_get", "GET", sub_path, expect=200)
    w.call("billing_subscription_pause", "POST", f"{sub_path}/pause", expect=200)
    w.call("billing_subscription_unpause", "POST", f"{sub_path}/unpause", expect=200)
    w.call("billing_subscription_change", "POST", f"{sub_path}/change", expect=200,
           body={"plan": "PRO_PLAN", "version": 1, "at": "period_end"})
    w.call("billing_subscription_renewal_order", "POST", f"{sub_path}/renewal-order",
           expect=201)
    w.call("billing_subscription_cancel", "POST", f"{sub_path}/cancel", expect=200)
    w.call("billing_subscription_resume", "POST", f"{sub_path}/resume", expect=200)
    w.call("billing_plan_version_retire", "POST", "billing/plans/PRO_PLAN/versions/1/retire",
           expect=200)

    # Alerts
    rule = w.call("billing_alert_rule_create", "POST", "billing/alert-rules", expect=201, body={
        "feature": "report_generation",
        "thresholds": [{"type": "percent", "value": 80}, {"type": "absolute", "value": 2}],
    })
    w.call("billing_alert_rule_list", "GET", "billing/alert-rules", expect=200)
    w.call("billing_alert_rule_get", "GET", f"billing/alert-rules/{rule['id']}", expect=200)
    w.call("billing_alert_rule_update", "PATCH", f"billing/alert-rules/{rule['id']}",
           expect=200, body={"thresholds": [{"type": "percent", "value": 90}]})
    w.call("billing_alert_rule_delete", "DELETE", f"billing/alert-rules/{rule['id']}",
           expect=204)

    # Keys
    created = w.call("keys_create", "POST", "keys", expect=201, body={
        "name": "n8n production", "scopes": ["billing:read", "billing:write"],
    })
    w.call("keys_list", "GET", "keys", expect=200, query={"limit": 2})
    w.call("keys_revoke", "DELETE", f"keys/{created['id']}", expect=204)

    # Webhooks
    endpoint = w.call("webhooks_endpoint_create", "POST", "webhooks/endpoints", expect=201,
                      body={"url": "http://127.0.0.1:5678/webhook/billable",
                            "event_types": ["quota.consumed", "order.confirmed"],
                            "description": "n8n: notify the team"})
    endpoint_path = f"webhooks/endpoints/{endpoint['id']}"
    w.call("webhooks_endpoint_list", "GET", "webhooks/endpoints", expect=200)
    w.call("webhooks_endpoint_get", "GET", endpoint_path, expect=200)
    w.call("webhooks_endpoint_update", "PATCH", endpoint_path, expect=200,
           body={"event_types": ["quota.consumed", "quota.low", "order.confirmed"]})
    w.call("webhooks_endpoint_rotate_secret", "POST", f"{endpoint_path}/rotate-secret",
           expect=200)
    w.call("webhooks_endpoint_test", "POST", f"{endpoint_path}/test", expect=202)
    event = w.call("webhooks_event_list", "GET", "webhooks/events", expect=200,
                   query={"type": "webhook.test"})["items"][0]
    w.call("webhooks_delivery_list", "GET", "webhooks/deliveries", expect=200,
           query={"endpoint_id": endpoint["id"]})
    w.call("webhooks_event_redeliver", "POST", f"webhooks/events/{event['id']}/redeliver",
           expect=202, body={"endpoint_id": endpoint["id"]})
    w.call("webhooks_endpoint_delete", "DELETE", endpoint_path, expect=204)

    # The public catalog
    w.call("public_catalog", "GET", f"public/{w.tenant_slug}/catalog", expect=200,
           query={"limit": 2}, public=True)


def walk_platform(w: Walk) -> None:
    """Call every platform operation: onboard a tenant, change it, delete it."""
    w.call("platform_tenant_create", "POST", "platform/tenants", expect=201, platform=True,
           body={"name": "Acme Bots", "slug": "acme-bots", "rate_limit": "600/m",
                 "demo_catalog": True})
    w.call("platform_tenant_list", "GET", "platform/tenants", expect=200, platform=True,
           query={"limit": 2})
    w.call("platform_tenant_get", "GET", "platform/tenants/acme-bots", expect=200,
           platform=True)
    w.call("platform_tenant_update", "PATCH", "platform/tenants/acme-bots", expect=200,
           platform=True, body={"rate_limit": "1200/m"})
    w.call("platform_tenant_key_create", "POST", "platform/tenants/acme-bots/keys", expect=201,
           platform=True, body={"name": "zapier", "scopes": ["billing:read"]})
    w.call("platform_tenant_delete", "DELETE", "platform/tenants/acme-bots", expect=202,
           platform=True, query={"confirm": "acme-bots"})
