"""The overview stays indexed on a big tenant: consumption is summed from `usage_recent_idx`
(never a scan of every usage), each past day once (then from the cache), today on every view;
a fixed number of queries either way."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from billable import clock
from billing_platform.console import overview_selectors
from tests.support.console import make_member, signed_in_client
from tests.support.crowds import insert_customers
from tests.support.tenants import TenantFixture, fresh_tenant

CUSTOMERS = 10_000
USAGES = 200_000
ORDERS = 40_000


@pytest.fixture(scope="module")
def busy(django_db_setup: None, django_db_blocker: Any) -> Iterator[TenantFixture]:
    """A committed tenant with 10,000 customers, 200,000 usages over the last 60 days and
    40,000 orders over a year."""
    with django_db_blocker.unblock(), fresh_tenant("overview-scale") as fresh:
        with tenant_context(fresh.tenant), connection.cursor() as cursor:
            insert_customers(cursor, CUSTOMERS)
            cursor.execute(
                "INSERT INTO billable_usage (id, customer_id, feature, amount, credits,"
                " action_type, action_id, metadata, created_at)"
                " SELECT gen_random_uuid(), c.ids[1 + g %% %s],"
                " (ARRAY['run', 'export', 'search'])[1 + g %% 3], 1 + g %% 4, 0, 'usage', '',"
                " '{}'::jsonb, now() - random() * interval '60 days'"
                " FROM generate_series(1, %s) g,"
                " (SELECT array_agg(id) AS ids FROM billable_customer) c",
                [CUSTOMERS, USAGES],
            )
            cursor.execute(
                "INSERT INTO billable_order (id, customer_id, status, total, currency,"
                " payment_id, payment_method, metadata, reason, created_at)"
                " SELECT gen_random_uuid(), c.ids[1 + g %% %s], 'pending', 5, 'USD', NULL, '',"
                " '{}'::jsonb, '', now() - random() * interval '360 days'"
                " FROM generate_series(1, %s) g,"
                " (SELECT array_agg(id) AS ids FROM billable_customer) c",
                [CUSTOMERS, ORDERS],
            )
            cursor.execute("ANALYZE billable_order")
            # As autovacuum leaves a table that is mostly read: its visibility map set, so the
            # sums can come from the index alone.
            cursor.execute("VACUUM ANALYZE billable_usage")
            cursor.execute("ANALYZE billable_customer")
        make_member(fresh.tenant, "overview-scale@example.com", "viewer")
        try:
            yield fresh
        finally:
            User.objects.filter(username="overview-scale@example.com").delete()


def test_the_daily_sums_and_the_months_orders_read_their_indexes(busy: TenantFixture) -> None:
    today = clock.now().date()
    with tenant_context(busy.tenant):
        month = overview_selectors.usage_sums(today - timedelta(days=29), today).explain()
        one_day = overview_selectors.usage_sums(today, today + timedelta(days=1)).explain()
        orders = overview_selectors.orders_by_currency_query(
            since=clock.now() - timedelta(days=30)
        ).explain()
    for plan in (month, one_day):
        assert "Index Only Scan using usage_recent_idx" in plan, plan
    # A year of orders: the month's are found by the index, not by reading all of them.
    assert "order_recent_idx" in orders and "Seq Scan" not in orders, orders


def _usage_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if '"billable_usage"' in q["sql"]]


def test_past_days_are_summed_once_then_read_from_the_cache(busy: TenantFixture) -> None:
    client = signed_in_client("overview-scale@example.com")
    cache.clear()
    timings = []
    with CaptureQueriesContext(connection) as cold:
        started = time.perf_counter()
        first = client.get("/console/")
        timings.append(time.perf_counter() - started)
    with CaptureQueriesContext(connection) as warm:
        started = time.perf_counter()
        second = client.get("/console/")
        timings.append(time.perf_counter() - started)

    assert first.status_code == second.status_code == 200
    assert first.content.count(b"<rect ") == second.content.count(b"<rect ") > 29 * 3
    # Cold: the 29 settled days in one query (then cached) and today apart; warm: today only.
    assert len(_usage_queries(cold)) == 2 and len(_usage_queries(warm)) == 1
    assert len(warm.captured_queries) <= 16
    # Printed for docs/console.md; the machine is shared, so only the queries are asserted.
    print(f"overview cold {timings[0] * 1000:.1f} ms, warm {timings[1] * 1000:.1f} ms, "
          f"{len(warm.captured_queries)} queries")
