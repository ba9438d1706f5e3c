"""The sweep: expired batches get a debit of what was left; holds and old keys go."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management import call_command
from django.db import connection

from billable import clock, signals
from billable.models import BatchState, Customer, IdempotencyRecord, LedgerEntry
from billable.services.grants import offer_grant
from billable.services.holds import hold_create
from billable.services.quota import balance_get
from billable.services.sweep import tenant_sweep
from tests.conftest import TenantFixture


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

    signals.batch_expired.connect(receiver)
    try:
        with clock.frozen(start + timedelta(days=29)):
            assert tenant_sweep().batches_expired == 0
        with clock.frozen(start + timedelta(days=30)):
            swept = tenant_sweep()
            assert balance_get(customer=alice, feature="reports").remaining == 0
    finally:
        signals.batch_expired.disconnect(receiver)
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
