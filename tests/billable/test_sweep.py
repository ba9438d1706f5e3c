"""The sweep: expired batches get a debit of what was left; holds and old keys go."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management import call_command
from django.db import connection

from billable import clock, signals
from billable.models import BatchState, Customer, IdempotencyRecord, LedgerEntry
from billable.selectors import balance_get
from billable.services.grants import offer_grant
from billable.services.holds import hold_create
from billable.services.sweep import due_tenants_sweep, tenant_sweep
from tests.support.signals import connected
from tests.support.tenants import TenantFixture


def test_expired_batch_is_debited_and_marked(
    catalog: dict[str, Any], alice: Customer
) -> None:
    start = clock.now()
    with clock.frozen(start):
        result = offer_grant(customer=alice, offer=catalog["REPORTS_10"], kind="bonus")
    (batch,) = result.batches
    received = []

    def receiver(sender: object, **kwargs: Any) -> None:
        received.append(kwargs["batch"])

    with connected(signals.batch_expired, receiver):
        with clock.frozen(start + timedelta(days=29)):
            assert tenant_sweep().batches_expired == 0
        with clock.frozen(start + timedelta(days=30)):
            swept = tenant_sweep()
            assert balance_get(customer=alice, feature="reports").remaining == 0
    assert swept.batches_expired == 1
    batch.refresh_from_db()
    assert batch.state == BatchState.EXPIRED and batch.remaining == 0
    debit = LedgerEntry.objects.get(batch=batch, direction="debit")
    assert debit.action_type == "expiry" and debit.amount == 10
    assert [b.pk for b in received] == [batch.pk]
    with clock.frozen(start + timedelta(days=31)):
        assert tenant_sweep().batches_expired == 0


def test_expired_holds_are_released(catalog: dict[str, Any], alice: Customer) -> None:
    start = clock.now()
    with clock.frozen(start):
        offer_grant(customer=alice, offer=catalog["REPORTS_5_FOREVER"], kind="bonus")
        hold = hold_create(customer=alice, feature="reports", amount=3, ttl_seconds=60)
        assert balance_get(customer=alice, feature="reports").remaining == 2
    with clock.frozen(start + timedelta(seconds=61)):
        assert tenant_sweep().holds_expired == 1
        assert balance_get(customer=alice, feature="reports").remaining == 5
    hold.refresh_from_db()
    assert hold.status == "expired"


def test_idempotency_records_purged_after_retention(in_acme: TenantFixture) -> None:
    IdempotencyRecord.objects.create(key="old", request_hash="x", status_code=200, body=b"{}")
    IdempotencyRecord.objects.create(key="new", request_hash="x", status_code=200, body=b"{}")
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=clock.now() - timedelta(days=8)
    )
    assert tenant_sweep().idempotency_purged == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


def test_billing_sweep_command_covers_every_tenant(
    catalog: dict[str, Any], alice: Customer, capsys: Any
) -> None:
    with clock.frozen(clock.now() - timedelta(days=40)):
        offer_grant(customer=alice, offer=catalog["REPORTS_10"], kind="bonus")
    connection.set_schema_to_public()
    call_command("billing_sweep")
    out = capsys.readouterr().out
    assert "batches_expired=1" in out
    assert "tenants=" in out


def test_sweep_skips_tenants_with_nothing_due(
    catalog: dict[str, Any], alice: Customer, acme: TenantFixture
) -> None:
    from tenants.models import Tenant

    start = clock.now()
    Tenant.objects.filter(pk=acme.tenant.pk).update(sweep_due_at=start + timedelta(days=1))
    with clock.frozen(start):
        offer_grant(customer=alice, offer=catalog["REPORTS_10"], kind="bonus")
    # The grant pulled the due time forward to the batch's expiry.
    due = Tenant.objects.get(pk=acme.tenant.pk).sweep_due_at
    assert due == start + timedelta(days=30) or due <= start + timedelta(days=1)
    connection.set_schema_to_public()
    with clock.frozen(start + timedelta(hours=1)):
        Tenant.objects.filter(pk=acme.tenant.pk).update(sweep_due_at=start + timedelta(hours=2))
        expected = sum(
            1 for t in Tenant.objects.filter(status__in=["active", "suspended"])
            if t.sweep_due_at is None or t.sweep_due_at <= start + timedelta(hours=1)
        )
        assert due_tenants_sweep()["tenants"] == expected
        assert Tenant.objects.get(pk=acme.tenant.pk).sweep_due_at == start + timedelta(hours=2)
    with clock.frozen(start + timedelta(days=30)):
        Tenant.objects.filter(pk=acme.tenant.pk).update(sweep_due_at=start + timedelta(days=30))
        totals = due_tenants_sweep()
        assert totals["batches_expired"] >= 1
        # After the sweep the next due time is recomputed (a day out at most).
        next_due = Tenant.objects.get(pk=acme.tenant.pk).sweep_due_at
        assert next_due is not None
        assert start + timedelta(days=30) < next_due <= start + timedelta(days=31)


def test_hold_pulls_the_due_time_forward(
    catalog: dict[str, Any], alice: Customer, acme: TenantFixture
) -> None:
    from tenants.models import Tenant

    start = clock.now()
    with clock.frozen(start):
        offer_grant(customer=alice, offer=catalog["REPORTS_5_FOREVER"], kind="bonus")
        Tenant.objects.filter(pk=acme.tenant.pk).update(sweep_due_at=start + timedelta(days=1))
        hold = hold_create(customer=alice, feature="reports", amount=1, ttl_seconds=120)
    assert Tenant.objects.get(pk=acme.tenant.pk).sweep_due_at == hold.expires_at
