"""Scripted calls through the Python client that openapi-python-client generates from the API's
OpenAPI document: consume, a replay of it, balance, and a 402.

Run by tests/e2e/test_api_clients.py with the generated package (`billable_client`) on
PYTHONPATH; BILLABLE_URL and BILLABLE_KEY name the server and a tenant key. Prints one JSON
object of what it saw.
"""

from __future__ import annotations

import json
import os

from billable_client import AuthenticatedClient
from billable_client.api.billing import billing_balance, billing_quota_consume
from billable_client.models import BalanceOut, ConsumeIn, QuotaProblem, UsageOut


def main() -> None:
    client = AuthenticatedClient(
        base_url=os.environ["BILLABLE_URL"], token=os.environ["BILLABLE_KEY"]
    )
    with client:
        # The simplest consume: who and what; every defaulted field (amount 1, ...) left out.
        body = ConsumeIn(provider="telegram", external_id=1001, feature="report_generation")
        first = billing_quota_consume.sync_detailed(
            client=client, body=body, idempotency_key="client-py-consume-1"
        )
        replay = billing_quota_consume.sync_detailed(
            client=client, body=body, idempotency_key="client-py-consume-1"
        )
        balance = billing_balance.sync_detailed(
            client=client, provider="telegram", external_id="1001", feature="report_generation"
        )
        short = billing_quota_consume.sync_detailed(
            client=client,
            body=ConsumeIn(
                provider="telegram", external_id=1001, feature="report_generation",
                amount=1000, action_id="client-py-too-many",
            ),
        )
    used, again, left, problem = first.parsed, replay.parsed, balance.parsed, short.parsed
    print(json.dumps({
        "consume": {
            "status": first.status_code.value,
            "type": type(used).__name__,
            "usage_id": used.usage_id if isinstance(used, UsageOut) else None,
            "remaining": used.remaining if isinstance(used, UsageOut) else None,
        },
        "replay": {
            "status": replay.status_code.value,
            "replayed": replay.headers.get("Idempotent-Replayed"),
            "usage_id": again.usage_id if isinstance(again, UsageOut) else None,
        },
        "balance": {
            "status": balance.status_code.value,
            "type": type(left).__name__,
            "can_use": left.can_use if isinstance(left, BalanceOut) else None,
            "remaining": left.remaining if isinstance(left, BalanceOut) else None,
        },
        "short": {
            "status": short.status_code.value,
            "type": type(problem).__name__,
            "code": problem.code if isinstance(problem, QuotaProblem) else None,
            "remaining": problem.remaining if isinstance(problem, QuotaProblem) else None,
        },
    }))


if __name__ == "__main__":
    main()
