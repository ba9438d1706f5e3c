"""A tenant's limit holds across two separate server processes sharing Redis.

An hourly limit, so the fixed window is most unlikely to roll during the ten requests.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.processes import production_server
from tests.support.tenants import fresh_tenant


@pytest.mark.e2e
def test_limit_shared_by_two_servers(committed: None) -> None:
    with (
        fresh_tenant("e2e-two-servers", name="Two servers", rate_limit="6/h") as tenant,
        production_server(workers=1) as first,
        production_server(workers=1) as second,
    ):
        statuses = []
        for i in range(10):
            base = (first if i % 2 == 0 else second).base_url
            response = httpx.get(f"{base}/api/v1/keys", headers={"X-API-Key": tenant.key},
                                 timeout=10)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["content-type"].startswith("application/problem+json")
                assert int(response.headers["Retry-After"]) >= 1
                assert response.headers["RateLimit-Remaining"] == "0"
        assert statuses.count(200) == 6
        assert statuses.count(429) == 4
        assert statuses[:6] == [200] * 6
