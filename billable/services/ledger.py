"""Ledger primitives: locking in a fixed order, debits, credits, closing a batch.

The fixed lock order, the one a merge takes: the customer's row first (`lock_customer`), then
the order or hold being changed, then the customer's batches in spend order (`lock_batches`,
and the database function `billable_spend`, which `billable.services.quota.debit` calls).
Foreign keys are checked at commit, so an insert takes no lock on the customer before then; a
service that creates or changes a customer's batches or orders therefore locks the customer's
row explicitly, first.

Usability and the products covering a name are defined with the reads (`billable.selectors`);
the locks here use the same definition. Every change of units is a ledger entry; `remaining`
always equals credits minus debits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import F, QuerySet
from django.utils import timezone

from billable import signals
from billable.models import (
    BatchState,
    Customer,
    Direction,
    Hold,
    LedgerEntry,
    ProductType,
    QuotaBatch,
    Usage,
)
from billable.tenancy import note_sweep_due


@dataclass
class Take:
    batch_id: Any
    amount: int


def lock_customer_row(customer_id: Any, *, exclusive: bool = False) -> Any:
    """Lock a customer's row and those it was merged into; the id of the customer to act for.

    FOR KEY SHARE by default: spenders do not wait for each other, and a merge waits for them
    all. With `exclusive`, FOR UPDATE, as order transitions and period grants take it. A merge
    that committed after the caller resolved the customer has moved everything to the customer
    in `merged_into`, so the work goes on there.
    """
    mode = "UPDATE" if exclusive else "KEY SHARE"
    current, seen = customer_id, {customer_id}
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT merged_into_id FROM billable_customer WHERE id = %s FOR {mode}",
                [current],
            )
            row = cursor.fetchone()
        if row is None or row[0] is None or row[0] in seen:
            return current
        current = row[0]
        seen.add(current)


def lock_customer(customer: Customer, *, exclusive: bool = False) -> Customer:
    """`lock_customer_row` for a resolved customer: it, or the customer it was merged into."""
    acting = lock_customer_row(customer.pk, exclusive=exclusive)
    return customer if acting == customer.pk else Customer.objects.get(pk=acting)


def lock_batches(batches: QuerySet[QuotaBatch]) -> list[QuotaBatch]:
    """Lock these batches in spend order, the order every spender locks a customer's batches."""
    return list(
        batches.select_for_update().order_by(
            F("expires_at").asc(nulls_last=True), "created_at", "id"
        )
    )


_ENTRY_ROW = (
    "(%s::uuid, %s, %s::bigint, %s, %s, %s, %s::uuid, %s::uuid, %s::jsonb, %s::timestamptz)"
)


def write_entries(
    takes: Sequence[Take],
    *,
    direction: str,
    action_type: str,
    action_id: str = "",
    actor: str = "",
    usage: Usage | None = None,
    hold: Hold | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[LedgerEntry]:
    """Apply and record credits or debits, one entry per batch touched.

    The batches' `remaining` and the entries change in one statement (a data-modifying CTE):
    a spender holds its batch locks for one round trip fewer.
    """
    if not takes:
        return []
    now = timezone.now()
    entries = [
        LedgerEntry(
            batch_id=take.batch_id,
            direction=direction,
            amount=take.amount,
            action_type=action_type,
            action_id=action_id or "",
            actor=actor or "",
            usage=usage,
            hold=hold,
            metadata=metadata or {},
            created_at=now,
        )
        for take in takes
    ]
    delta = "- v.amount" if direction == Direction.DEBIT else "+ v.amount"
    batch_params: list[Any] = []
    for take in takes:
        batch_params.extend([str(take.batch_id), take.amount])
    entry_params: list[Any] = []
    metadata_field = LedgerEntry._meta.get_field("metadata")
    for entry in entries:
        entry_params.extend([
            str(entry.batch_id), entry.direction, entry.amount, entry.action_type,
            entry.action_id, entry.actor,
            str(entry.usage_id) if entry.usage_id else None,
            str(entry.hold_id) if entry.hold_id else None,
            metadata_field.get_db_prep_value(entry.metadata, connection),
            entry.created_at,
        ])
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH applied AS (
                UPDATE billable_quotabatch AS b
                SET remaining = b.remaining {delta},
                    state = CASE
                        WHEN b.state IN ('active', 'exhausted') AND b.remaining {delta} = 0
                            THEN 'exhausted'
                        WHEN b.state = 'exhausted' AND b.remaining {delta} > 0 THEN 'active'
                        ELSE b.state END
                FROM (VALUES {", ".join(["(%s::uuid, %s::bigint)"] * len(takes))})
                    AS v(id, amount)
                WHERE b.id = v.id
                RETURNING b.id
            )
            INSERT INTO billable_ledgerentry
                (batch_id, direction, amount, action_type, action_id, actor, usage_id, hold_id,
                 metadata, created_at)
            VALUES {", ".join([_ENTRY_ROW] * len(entries))}
            RETURNING id
            """,
            [*batch_params, *entry_params],
        )
        for entry, (pk,) in zip(entries, cursor.fetchall(), strict=True):
            entry.pk = pk
            entry._state.adding = False
            entry._state.db = connection.alias
    for entry in entries:
        signals.transaction_created.send(sender=LedgerEntry, entry=entry)
    return entries


def batch_create(
    *,
    customer_id: Any,
    product_id: Any,
    product_type: str,
    units: int,
    valid_from: datetime,
    expires_at: datetime | None,
    source: str,
    actor: str = "",
    action_type: str,
    action_id: str = "",
    grant_id: Any = None,
    adjustment_id: Any = None,
    order_item_id: Any = None,
) -> QuotaBatch:
    """A new batch and the credit entry that brings its units in."""
    initial = units if product_type == ProductType.QUANTITY else 1
    batch = QuotaBatch.objects.create(
        customer_id=customer_id,
        product_id=product_id,
        initial=initial,
        remaining=0,
        valid_from=valid_from,
        expires_at=expires_at,
        state=BatchState.ACTIVE,
        source=source,
        grant_id=grant_id,
        adjustment_id=adjustment_id,
        order_item_id=order_item_id,
    )
    write_entries(
        [Take(batch_id=batch.pk, amount=initial)],
        direction=Direction.CREDIT,
        action_type=action_type,
        action_id=action_id,
        actor=actor,
    )
    batch.remaining = initial
    if expires_at is not None:
        note_sweep_due(expires_at)
    return batch


def batch_close(
    *,
    batch: QuotaBatch,
    state: str,
    action_type: str,
    action_id: str,
    actor: str = "",
    metadata: dict[str, Any] | None = None,
) -> None:
    """Debit what remains of a locked batch and move it to `state` (expired, revoked).

    The caller holds the batch's row lock and reads it again afterwards if it needs the result.
    """
    if batch.remaining > 0:
        write_entries(
            [Take(batch_id=batch.pk, amount=batch.remaining)],
            direction=Direction.DEBIT,
            action_type=action_type,
            action_id=action_id,
            actor=actor,
            metadata=metadata,
        )
    QuotaBatch.objects.filter(pk=batch.pk).update(state=state)
    if state == BatchState.REVOKED and signals.may_act(signals.batch_revoked):
        closed = QuotaBatch.objects.select_related("product", "customer").get(pk=batch.pk)
        signals.batch_revoked.send(
            sender=QuotaBatch, batch=closed, customer=closed.customer, action_type=action_type,
            action_id=action_id, reason=(metadata or {}).get("reason") or "",
        )
