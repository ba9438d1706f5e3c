"""Webhook endpoints through the API, and the outbox delivered in this process."""

from __future__ import annotations

from typing import Any

from billing_platform.webhooks.delivery import new_client
from billing_platform.webhooks.worker import deliver_due
from tests.support.api import Api


def create_endpoint(api: Api, key: str, url: str, **fields: Any) -> dict[str, Any]:
    response = api.post("webhooks/endpoints", json={"url": url, **fields}, key=key)
    assert response.status == 201, response.body
    return response.json  # type: ignore[no-any-return]


def drain(rounds: int = 20) -> int:
    """Post whatever is due, in this process, until nothing is; returns attempts made.

    Counts are of the whole test database (committed leftovers of other modules included), so
    tests assert on what their receiver got, not on this number.
    """
    total = 0
    with new_client() as client:
        for _ in range(rounds):
            made = deliver_due(client)
            if not made:
                break
            total += made
    return total


def grant_and_consume(api: Api, key: str, external_id: str = "w1", **consume: Any) -> Any:
    granted = api.post(
        "billing/grants",
        json={"external_id": external_id, "sku": "reports_10", "kind": "bonus"},
        key=key,
    )
    assert granted.status == 201, granted.body
    response = api.post(
        "billing/quota/consume",
        json={"external_id": external_id, "feature": "reports", **consume},
        key=key,
    )
    return response
