"""`manage.py billing_verify`: the ledger invariant of every tenant; non-zero exit on drift."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from billable.models import Customer, Offer, Product, QuotaBatch
from billable.selectors import CustomerRef, ledger_verify
from billable.services.customers import customer_ensure
from billable.services.grants import offer_grant
from billable.services.holds import hold_create, hold_release
from billable.services.quota import quota_consume
from tenants.models import Tenant
from tests.support import ROOT
from tests.support.processes import server_env
from tests.support.tenants import TenantFixture, fresh_tenant


def _history(alice: Customer, catalog: dict[str, Product | Offer]) -> list[QuotaBatch]:
    """Grants, consumes and a released hold: a ledger with credits and debits."""
    ten, five = catalog["REPORTS_10"], catalog["REPORTS_5_FOREVER"]
    assert isinstance(ten, Offer) and isinstance(five, Offer)
    first = offer_grant(customer=alice, offer=ten, kind="bonus").batches[0]
    second = offer_grant(customer=alice, offer=five, kind="manual").batches[0]
    quota_consume(customer=alice, feature="reports", amount=12)
    hold = hold_create(customer=alice, feature="reports", amount=2)
    hold_release(hold=hold)
    return [first, second]


def _run(*args: str) -> str:
    out = StringIO()
    call_command("billing_verify", *args, stdout=out)
    return out.getvalue()


def _corrupt(batch: QuotaBatch) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billable_quotabatch SET remaining = remaining + 1 WHERE id = %s", [batch.pk]
        )


def test_a_clean_ledger_passes(
    alice: Customer, catalog: dict[str, Product | Offer], in_acme: TenantFixture
) -> None:
    # given
    _history(alice, catalog)

    # when
    output = _run()

    # then
    assert "acme (t_acme): 2 batches, 6 ledger entries: ok" in output
    assert "globex (t_globex):" in output
    assert "0 drifting batches" in output


def test_a_drifting_batch_fails_and_is_named(
    alice: Customer, catalog: dict[str, Product | Offer], in_acme: TenantFixture
) -> None:
    # given: one batch's remaining no longer matches its ledger
    drifting, clean = _history(alice, catalog)
    _corrupt(drifting)

    # when
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("billing_verify", stdout=out)

    # then
    message = str(raised.value)
    assert str(drifting.pk) in message
    assert str(clean.pk) not in message
    assert "acme: batch" in message and "remaining=1, credits-debits=10-10=0" in message
    assert "acme (t_acme): 2 batches, 6 ledger entries: DRIFT in 1 batches" in out.getvalue()
    assert "globex (t_globex): 0 batches, 0 ledger entries: ok" in out.getvalue()


def test_only_the_named_tenants_are_checked(
    alice: Customer, catalog: dict[str, Product | Offer], in_acme: TenantFixture
) -> None:
    # given: acme drifts
    drifting, _clean = _history(alice, catalog)
    _corrupt(drifting)

    # when / then: globex alone passes, acme alone fails, an unknown slug is refused
    assert "1 tenants checked, 0 drifting batches" in _run("--tenant", "globex")
    with pytest.raises(CommandError, match=str(drifting.pk)):
        _run("--tenant", "acme")
    with pytest.raises(CommandError, match="no active or suspended tenant: nope"):
        _run("--tenant", "nope")


def test_the_selector_reports_a_batch_whose_entries_disagree(
    alice: Customer, catalog: dict[str, Product | Offer], in_acme: TenantFixture
) -> None:
    # given: units taken from a batch without a debit entry
    drifting, _clean = _history(alice, catalog)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billable_quotabatch SET remaining = remaining - 1 WHERE id = %s",
            [_clean.pk],
        )

    # when
    report = ledger_verify(slug="acme")

    # then
    assert not report.ok
    assert [d.batch_id for d in report.drifts] == [_clean.pk]
    assert report.drifts[0].remaining == 2 and report.drifts[0].ledger_balance == 3
    assert drifting.pk not in {d.batch_id for d in report.drifts}


# --- The real command line: a committed tenant, a separate process, its exit status.


@pytest.fixture
def committed_tenant(committed: None) -> Iterator[Tenant]:
    with fresh_tenant("verify", name="Verify") as fresh:
        yield fresh.tenant


def _manage_verify(slug: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "billing_verify", "--tenant", slug],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_exits_non_zero_on_committed_drift(committed_tenant: Tenant) -> None:
    # given: a committed grant in a fresh tenant
    from billable.services.catalog import ItemSpec, offer_create, product_create

    connection.set_tenant(committed_tenant)
    product_create(key="units", name="Units", product_type="quantity")
    offer = offer_create(
        sku="units_3", name="3 units", price=Decimal("0"), currency="USD",
        items=[ItemSpec("UNITS", 3)],
    )
    customer = customer_ensure(CustomerRef(external_id="verify"))
    batch = offer_grant(customer=customer, offer=offer, kind="bonus").batches[0]
    quota_consume(customer=customer, feature="units", amount=1)
    connection.set_schema_to_public()

    # when / then: clean
    clean = _manage_verify(committed_tenant.slug)
    assert clean.returncode == 0, clean.stderr
    assert f"{committed_tenant.slug} ({committed_tenant.schema_name}): 1 batches" in clean.stdout

    # when / then: one batch drifts
    connection.set_tenant(committed_tenant)
    _corrupt(batch)
    connection.set_schema_to_public()
    drifting = _manage_verify(committed_tenant.slug)
    assert drifting.returncode != 0
    assert str(batch.pk) in drifting.stderr
    assert "remaining=3, credits-debits=3-1=2" in drifting.stderr
