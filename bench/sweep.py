"""sweep: subscriptions crossing one boundary, at scale.

1. **One tenant, many subscriptions** (`BENCH_SWEEP_SUBSCRIPTIONS`, default 100,000) to a free
   monthly plan with an allowance of 100 units and a rollover cap, all started at the same
   instant, so they all cross the same boundary. One is made by the service; the others are
   copies of its rows (customer, subscription, allowance batch, its ledger credit, its grant)
   made by SQL, which is what the service would have written for each. The sweep then runs as
   the `billing_sweep` command runs it (`tenant_sweep`), twice: an hour before the boundary
   (each next period written ahead) and at the boundary (each period renewed, its unused units
   rolled over within the cap, the old batches expired). Measured: the time of each pass and
   subscriptions per second; and the latency of consumes by other customers of the same tenant
   (a process doing them one after the other, `bench.sweep_consumer`) while each pass runs,
   against the same consumes in the 5 seconds before it, with no sweep running.
2. **Many tenants with subscriptions** (`BENCH_SWEEP_TENANTS`, default 1,000, with
   `BENCH_SWEEP_PER_TENANT`, default 10, subscriptions each): copies of one such schema
   (`pg_dump`, replayed under new names, as the onboarding benchmark grows its tenants), then
   `due_tenants_sweep` over all of them at the same two instants. Measured: the time of each
   pass and tenants per second.

Correctness after each scenario: every subscription is in its second period, with one
allowance batch per period and one rollover, and `billing_verify` finds no drift.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bench import harness
from bench.context import Context
from bench.onboarding import _pg_tool

SUBSCRIPTIONS = int(os.environ.get("BENCH_SWEEP_SUBSCRIPTIONS", "100000"))
TENANTS = int(os.environ.get("BENCH_SWEEP_TENANTS", "1000"))
PER_TENANT = int(os.environ.get("BENCH_SWEEP_PER_TENANT", "10"))
CONSUMERS = 200  # customers whose consumes are timed (not swept: they hold no subscription)
COPIES_PER_TRANSACTION = 20
LOOKAHEAD = timedelta(hours=1)


def _columns(cursor: Any, table: str) -> list[str]:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        [table],
    )
    return [row[0] for row in cursor.fetchall()]


def _copy_rows(cursor: Any, table: str, where: str, params: list[Any],
               replace: dict[str, str], skip: tuple[str, ...] = ()) -> None:
    """INSERT one copy of the template row per `bench_map` row, some columns replaced."""
    columns = [c for c in _columns(cursor, table) if c not in skip]
    select = ", ".join(replace.get(c, f"t.{c}") for c in columns)
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"SELECT {select} FROM bench_map m, {table} t WHERE {where}",
        params,
    )


def _populate(count: int, start: datetime) -> Any:
    """In the active schema: a plan and `count` subscriptions to it started at `start`; the
    first made by the service, the rest copies of its rows."""
    from django.db import connection

    from billable import clock
    from billable.models import Customer, QuotaBatch, SubscriptionGrant
    from billable.services.catalog import product_create
    from billable.services.plans import EntitlementSpec, Terms, plan_create
    from billable.services.subscriptions import subscription_create

    product_create(key="reports", name="Reports", product_type="quantity",
                   features=["report_generation"])
    plan = plan_create(key="pro_monthly", name="Pro", terms=Terms(
        interval_unit="months", interval_count=1, price=Decimal("0"), currency="USD",
        trial_days=0, entitlements=(
            EntitlementSpec("allowance", product="reports", amount=100, rollover_cap=20),
        ),
    ))
    with clock.frozen(start):
        template = subscription_create(customer=Customer.objects.create(), plan=plan)
    grant = SubscriptionGrant.objects.get(subscription=template)
    batch = QuotaBatch.objects.get(pk=grant.batch_id)
    copies = count - 1
    if copies <= 0:
        return template
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_map AS SELECT g AS n, gen_random_uuid() AS customer_id, "
            "gen_random_uuid() AS sub_id, gen_random_uuid() AS batch_id "
            "FROM generate_series(1, %s) g",
            [copies],
        )
        _copy_rows(cursor, "billable_customer", "t.id = %s", [template.customer_id],
                   {"id": "m.customer_id"})
        _copy_rows(cursor, "billable_subscription", "t.id = %s", [template.pk],
                   {"id": "m.sub_id", "customer_id": "m.customer_id"})
        _copy_rows(cursor, "billable_quotabatch", "t.id = %s", [batch.pk],
                   {"id": "m.batch_id", "customer_id": "m.customer_id"})
        _copy_rows(cursor, "billable_ledgerentry", "t.batch_id = %s", [batch.pk],
                   {"batch_id": "m.batch_id"}, skip=("id",))
        _copy_rows(cursor, "billable_subscriptiongrant", "t.id = %s", [grant.pk],
                   {"subscription_id": "m.sub_id", "batch_id": "m.batch_id"}, skip=("id",))
        cursor.execute("DROP TABLE bench_map")
        cursor.execute("ANALYZE")
    return template


def _check(expected: int) -> dict[str, Any]:
    """Every subscription in its second period, one rollover each, no ledger drift."""
    from billable.models import Subscription, SubscriptionGrant
    from billable.selectors import ledger_verify

    second = Subscription.objects.filter(period_number=2).count()
    periods = SubscriptionGrant.objects.filter(period_index=1).count()
    rolled = SubscriptionGrant.objects.filter(rollover_batch__isnull=False).count()
    report = ledger_verify()
    return {
        "in_second_period": second, "second_allowances": periods, "rollovers": rolled,
        "ledger_ok": report.ok,
        "correct": second == periods == rolled == expected and report.ok,
    }


class _Consumer:
    """`bench.sweep_consumer` in its own process; its latencies read back by time window."""

    def __init__(self, env: dict[str, str], schema: str, customers: list[Any]) -> None:
        self.log = harness.ROOT / "var" / "bench-sweep-consumer.log"
        self.log.unlink(missing_ok=True)
        self.process = harness.spawn(
            [harness.PYTHON, "-m", "bench.sweep_consumer", schema,
             *[str(customer.pk) for customer in customers]],
            env, self.log,
        )

    def between(self, start: float, end: float) -> list[float]:
        found = []
        for line in self.log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and start <= float(parts[0]) <= end:
                found.append(float(parts[1]))
        return found

    def stop(self) -> None:
        harness.stop(self.process)


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "p50_ms": round(harness.percentile(values, 50), 2),
            "p99_ms": round(harness.percentile(values, 99), 2),
            "max_ms": round(max(values), 2)}


def _one_tenant(env: dict[str, str]) -> dict[str, Any]:
    from django_tenants.utils import schema_context

    from billable import clock
    from billable.models import Customer
    from billable.services.grants import adjustment_create
    from billable.services.sweep import tenant_sweep
    from tenants.services import _build_schema

    tenant = _build_schema(slug="bench-sweep-one", name="sweep", rate_limit="0")
    schema = tenant.schema_name
    start = datetime.now().astimezone().replace(microsecond=0) - timedelta(days=1)
    began = time.monotonic()
    with schema_context(schema):
        clock.set_now(start)
        template = _populate(SUBSCRIPTIONS, start)
        boundary = template.current_period_end
        consumers = [Customer.objects.create() for _ in range(CONSUMERS)]
        for customer in consumers:
            adjustment_create(customer=customer, product_key="reports", amount=1_000_000,
                              reason="bench")
    harness.say(f"{SUBSCRIPTIONS} subscriptions written in {time.monotonic() - began:.0f} s")
    consumer = _Consumer(env, schema, consumers)
    result: dict[str, Any] = {"subscriptions": SUBSCRIPTIONS}
    try:
        time.sleep(5.0)  # the consumer's start-up
        for label, at in (("ahead", boundary - LOOKAHEAD), ("boundary", boundary)):
            clock.set_now(at)
            quiet_from = time.time()
            time.sleep(5.0)
            quiet = consumer.between(quiet_from, time.time())
            with schema_context(schema):
                swept_from = time.time()
                t0 = time.perf_counter()
                swept = tenant_sweep()
                seconds = time.perf_counter() - t0
            during = consumer.between(swept_from, time.time())
            result[label] = {
                "sweep_seconds": round(seconds, 1),
                "subscriptions_per_second": round(swept.subscriptions_advanced / seconds, 1),
                "advanced": swept.subscriptions_advanced,
                "batches_expired": swept.batches_expired,
                "consume_quiet": _summary(quiet), "consume_during_sweep": _summary(during),
            }
            harness.say(f"one tenant, {label}: {result[label]}")
    finally:
        consumer.stop()
        clock.set_now(None)
    with schema_context(schema):
        clock.set_now(boundary)
        try:
            result["check"] = _check(SUBSCRIPTIONS)
        finally:
            clock.set_now(None)
    return result


def _many_tenants(ctx: Context) -> dict[str, Any]:
    from django.db import connection
    from django_tenants.utils import schema_context

    from billable import clock
    from billable.services.sweep import due_tenants_sweep
    from tenants.models import Tenant
    from tenants.services import _build_schema

    source = _build_schema(slug="bench-sweep-source", name="sweep source", rate_limit="0")
    start = datetime.now().astimezone().replace(microsecond=0) - timedelta(days=1)
    with schema_context(source.schema_name):
        clock.set_now(start)
        try:
            template = _populate(PER_TENANT, start)
        finally:
            clock.set_now(None)
    boundary = template.current_period_end
    began = time.monotonic()
    params = harness.pg_params(ctx.url)
    env = dict(os.environ, PGPASSWORD=params["password"])
    connect = ["-h", params["host"], "-p", params["port"], "-U", params["user"]]
    dump = subprocess.run(
        [_pg_tool("pg_dump"), *connect, "--no-owner", "--no-privileges", "-n",
         source.schema_name, params["dbname"]],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    names = [f"t_sweep_{index:05d}" for index in range(TENANTS - 1)]
    for first in range(0, len(names), COPIES_PER_TRANSACTION):
        batch = names[first:first + COPIES_PER_TRANSACTION]
        subprocess.run(
            [_pg_tool("psql"), *connect, "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d",
             params["dbname"]],
            input="\n".join(dump.replace(source.schema_name, name) for name in batch),
            text=True, env=env, check=True, stdout=subprocess.DEVNULL,
        )
    Tenant.objects.bulk_create(
        Tenant(slug=name.replace("_", "-"), name=name, schema_name=name) for name in names
    )
    harness.say(f"{TENANTS} tenants with {PER_TENANT} subscriptions each in "
                f"{time.monotonic() - began:.0f} s")
    swept_schemas = [source.schema_name, *names]
    result: dict[str, Any] = {"tenants": TENANTS, "per_tenant": PER_TENANT}
    try:
        for label, at in (("ahead", boundary - LOOKAHEAD), ("boundary", boundary)):
            clock.set_now(at)
            Tenant.objects.filter(schema_name__in=swept_schemas).update(sweep_due_at=at)
            t0 = time.perf_counter()
            totals = due_tenants_sweep()
            seconds = time.perf_counter() - t0
            result[label] = {
                "sweep_seconds": round(seconds, 1),
                "tenants_swept": totals["tenants"],
                "tenants_failed": totals["tenants_failed"],
                "tenants_per_second": round(totals["tenants"] / seconds, 1),
                "subscriptions_advanced": totals["subscriptions_advanced"],
            }
            harness.say(f"many tenants, {label}: {result[label]}")
        checks = []
        for name in (source.schema_name, names[-1]) if names else (source.schema_name,):
            with schema_context(name):
                checks.append(_check(PER_TENANT))
        result["check"] = {"schemas_checked": len(checks),
                           "correct": all(c["correct"] for c in checks)}
    finally:
        clock.set_now(None)
        connection.set_schema_to_public()
    return result


def run(ctx: Context) -> dict[str, Any]:
    one = _one_tenant(ctx.env)
    many = _many_tenants(ctx)
    result = {
        "machine": harness.machine(),
        "one_tenant": one,
        "many_tenants": many,
        "correct": bool(one["check"]["correct"] and many["check"]["correct"]),
    }
    rows = []
    for label in ("ahead", "boundary"):
        point = one[label]
        rows.append([
            label, point["sweep_seconds"], point["subscriptions_per_second"],
            point["consume_quiet"].get("p50_ms"), point["consume_during_sweep"].get("p50_ms"),
            point["consume_quiet"].get("p99_ms"), point["consume_during_sweep"].get("p99_ms"),
        ])
    harness.say(harness.table(
        f"sweep: {SUBSCRIPTIONS} subscriptions in one tenant",
        ["pass", "s", "subs/s", "consume p50 quiet", "p50 during", "p99 quiet", "p99 during"],
        rows,
    ))
    harness.say(harness.table(
        f"sweep: {TENANTS} tenants x {PER_TENANT} subscriptions",
        ["pass", "s", "tenants/s", "advanced"],
        [[label, many[label]["sweep_seconds"], many[label]["tenants_per_second"],
          many[label]["subscriptions_advanced"]] for label in ("ahead", "boundary")],
    ))
    return result
