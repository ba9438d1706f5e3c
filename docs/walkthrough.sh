#!/usr/bin/env bash
# The worked example of docs/billing.md, runnable: `KEY=bk_… bash docs/walkthrough.sh`.
#
# KEY is a tenant key with every scope (the demo tenant's, printed by `make run`); B is the API's
# base URL (default: make run's address, on PORT if set). Needs curl and jq. Each answer is
# followed by its status line (`HTTP 201`). tests/e2e/test_api_clients.py runs it against a
# fresh demo tenant and checks that docs/billing.md shows exactly these commands.
set -euo pipefail
: "${KEY:?set KEY to a tenant key: make run prints the demo tenant key}"
for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (Debian: apt-get install $tool)" >&2; exit 1; }
done

# --- docs/billing.md, "Worked example", from here on
export B=${B:-http://127.0.0.1:${PORT:-8000}/api/v1}
api() { curl -sS -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -w '\nHTTP %{http_code}\n' "$@"; }
api -X POST "$B/billing/products" \
  -d '{"key": "analyses", "name": "PDF analyses", "product_type": "quantity", "features": ["pdf_analysis"]}'
api -X POST "$B/billing/offers" \
  -d '{"sku": "analyses_5", "name": "5 analyses", "price": "4.00", "currency": "usd",
       "items": [{"product": "ANALYSES", "quantity": 5, "period_unit": "days", "period_value": 30}]}'
api -X POST "$B/billing/grants" \
  -d '{"external_id": 2001, "provider": "telegram", "sku": "ANALYSES_5", "kind": "bonus", "reason": "welcome gift"}'
api "$B/billing/balance?external_id=2001&provider=telegram&feature=pdf_analysis"
api -X POST "$B/billing/quota/consume" -H 'Idempotency-Key: consume-doc-77' \
  -d '{"external_id": 2001, "provider": "telegram", "feature": "pdf_analysis", "amount": 3, "action_id": "doc-77"}'
api -X POST "$B/billing/quota/consume" -H 'Idempotency-Key: consume-doc-77' \
  -d '{"external_id": 2001, "provider": "telegram", "feature": "pdf_analysis", "amount": 3, "action_id": "doc-77"}' \
  -D - -o /dev/null | grep -iE '^(idempotent-replayed|HTTP )'
api -X POST "$B/billing/quota/consume" -H 'Idempotency-Key: consume-doc-77' \
  -d '{"external_id": 2001, "provider": "telegram", "feature": "pdf_analysis", "amount": 1, "action_id": "doc-78"}'
api -X POST "$B/billing/quota/consume" \
  -d '{"external_id": 2001, "provider": "telegram", "feature": "pdf_analysis", "amount": 5}'
api -X POST "$B/billing/quota/consume" \
  -d '{"external_id": 2001, "provider": "telegram", "feature": "video_render"}'
HOLD=$(curl -sS -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -X POST "$B/billing/holds" \
  -d '{"external_id": 2001, "provider": "telegram", "feature": "pdf_analysis", "amount": 2, "ttl_seconds": 600}' \
  | tee /dev/stderr | jq -r .id)
api "$B/billing/balance?external_id=2001&provider=telegram&feature=pdf_analysis"
api -X POST "$B/billing/holds/$HOLD/commit" -d '{"amount": 1}'
api -X POST "$B/billing/holds/$HOLD/release"
api "$B/billing/balance?external_id=2001&provider=telegram&feature=pdf_analysis"
api "$B/billing/wallet?external_id=2001&provider=telegram"
curl -sS -H "X-API-Key: $KEY" "$B/billing/wallet/transactions?external_id=2001&provider=telegram" \
  | jq -c '.items[] | {direction, amount, action_type, action_id}'
api -X POST "$B/billing/grants" \
  -d '{"external_id": 2001, "provider": "telegram", "sku": "PRO_TRIAL", "kind": "trial",
       "identities": {"email": "Ann.Lee+bot@gmail.com"}}'
api "$B/billing/balance?external_id=2001&provider=telegram&feature=report_generation"
api -X POST "$B/billing/quota/consume" \
  -d '{"external_id": 2001, "provider": "telegram", "feature": "report_generation"}'
api -X POST "$B/billing/grants" \
  -d '{"external_id": 2002, "provider": "telegram", "sku": "PRO_TRIAL", "kind": "trial",
       "identities": {"email": "annlee@googlemail.com"}}'
api -X POST "$B/billing/grants" \
  -d '{"external_id": 2001, "provider": "telegram", "sku": "PRO_MONTH", "kind": "manual",
       "reason": "paid by bank transfer"}'
api "$B/billing/balance?external_id=2001&provider=telegram&feature=report_generation"
