"""Customers and identities: uniqueness, references, merge resolution, identify, erase."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction

from billable.errors import CustomerMismatch, CustomerNotFound
from billable.models import (
    Customer,
    ExternalIdentity,
    LedgerEntry,
    Offer,
    Product,
    QuotaBatch,
    TrialHistory,
    Usage,
)
from billable.selectors import (
    CustomerRef,
    customer_require,
    identity_hash,
    normalise_external_id,
    offer_for_grant,
)
from billable.services.customers import (
    customer_ensure,
    customer_erase,
    customer_identify,
    customer_resolve,
)
from billable.services.quota import quota_consume
from billable.services.trials import trial_grant
from billing_platform.core.errors import ValidationFailed
from tests.support.billing import grant

Catalog = dict[str, Product | Offer]


# --- Identities


def test_ensure_creates_once_per_identity(in_acme: Any) -> None:
    first = customer_ensure(CustomerRef(external_id="alice"))
    again = customer_ensure(CustomerRef(external_id="alice"))

    assert first.pk == again.pk
    assert ExternalIdentity.objects.filter(provider="default", external_id="alice").count() == 1


def test_same_external_id_under_two_providers_is_two_customers(in_acme: Any) -> None:
    default = customer_ensure(CustomerRef(external_id="42"))
    telegram = customer_ensure(CustomerRef(external_id="42", provider="telegram"))

    assert default.pk != telegram.pk


def test_two_identities_never_collapse_into_one_customer(in_acme: Any) -> None:
    alice = customer_ensure(CustomerRef(external_id="alice"))
    bob = customer_ensure(CustomerRef(external_id="bob"))

    assert alice.pk != bob.pk
    assert Customer.objects.count() == 2


def test_database_refuses_a_duplicate_identity(alice: Customer, bob: Customer) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        ExternalIdentity.objects.create(customer=bob, provider="default", external_id="alice")

    assert ExternalIdentity.objects.get(external_id="alice").customer_id == alice.pk


@pytest.mark.parametrize(("raw", "text"), [(42, "42"), ("42", "42"), ("  ab c ", "ab c")])
def test_normalise_external_id(raw: str | int, text: str) -> None:
    assert normalise_external_id(raw) == text


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_blank_external_id_is_refused(raw: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        normalise_external_id(raw)

    assert exc.value.code == "validation_error" and exc.value.status == 422


def test_integer_external_id_is_its_decimal_string(in_acme: Any) -> None:
    by_int = customer_identify(provider="default", external_id=42)  # type: ignore[arg-type]
    by_str = customer_identify(provider="default", external_id="42")
    by_ref = customer_ensure(CustomerRef(external_id=42))  # type: ignore[arg-type]

    assert by_int.created is True and by_str.created is False
    assert by_int.customer.pk == by_str.customer.pk == by_ref.pk
    assert ExternalIdentity.objects.get().external_id == "42"


def test_external_id_is_trimmed(alice: Customer) -> None:
    assert customer_ensure(CustomerRef(external_id="  alice ")).pk == alice.pk
    assert customer_identify(provider="default", external_id=" alice\t").customer.pk == alice.pk
    assert ExternalIdentity.objects.count() == 1


def test_blank_external_id_creates_nobody(in_acme: Any) -> None:
    with pytest.raises(ValidationFailed):
        customer_ensure(CustomerRef(external_id="  "))
    with pytest.raises(ValidationFailed):
        customer_identify(provider="default", external_id="")

    assert not Customer.objects.exists()


# --- References


def test_reference_by_id_and_by_identity(alice: Customer) -> None:
    assert customer_require(CustomerRef(customer_id=str(alice.pk))).pk == alice.pk
    assert customer_require(
        CustomerRef(customer_id=str(alice.pk), external_id="alice")
    ).pk == alice.pk


def test_id_and_identity_of_different_customers_is_a_mismatch(
    alice: Customer, bob: Customer
) -> None:
    with pytest.raises(CustomerMismatch) as exc:
        customer_ensure(CustomerRef(customer_id=str(alice.pk), external_id="bob"))

    assert exc.value.code == "customer_mismatch" and exc.value.status == 422


def test_id_with_unknown_identity_is_a_mismatch_and_creates_nothing(alice: Customer) -> None:
    with pytest.raises(CustomerMismatch):
        customer_ensure(CustomerRef(customer_id=str(alice.pk), external_id="nobody"))

    assert not ExternalIdentity.objects.filter(external_id="nobody").exists()
    assert Customer.objects.count() == 1


@pytest.mark.parametrize("customer_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_unknown_customer_id_is_not_found(in_acme: Any, customer_id: str) -> None:
    with pytest.raises(CustomerNotFound) as exc:
        customer_resolve(CustomerRef(customer_id=customer_id), create=True)

    assert exc.value.code == "customer_not_found" and exc.value.status == 404


def test_unknown_identity_without_create(in_acme: Any) -> None:
    assert customer_resolve(CustomerRef(external_id="ghost"), create=False) is None
    with pytest.raises(CustomerNotFound):
        customer_require(CustomerRef(external_id="ghost"))
    assert not Customer.objects.exists()


def test_merged_customer_id_resolves_to_its_target(alice: Customer, bob: Customer) -> None:
    # given bob merged into alice (the merge service itself is elsewhere)
    Customer.objects.filter(pk=bob.pk).update(merged_into=alice)
    ExternalIdentity.objects.filter(customer=bob).update(customer=alice)

    # when / then
    assert customer_require(CustomerRef(customer_id=str(bob.pk))).pk == alice.pk
    assert customer_require(
        CustomerRef(customer_id=str(bob.pk), external_id="bob")
    ).pk == alice.pk


def test_merge_chain_resolves_to_the_last_target(alice: Customer, bob: Customer) -> None:
    carol = customer_ensure(CustomerRef(external_id="carol"))
    Customer.objects.filter(pk=carol.pk).update(merged_into=bob)
    Customer.objects.filter(pk=bob.pk).update(merged_into=alice)

    assert customer_require(CustomerRef(customer_id=str(carol.pk))).pk == alice.pk


# --- Identify


def test_identify_registers_then_looks_up(in_acme: Any) -> None:
    first = customer_identify(provider="telegram", external_id="777")
    second = customer_identify(provider="telegram", external_id="777")

    assert first.created is True and second.created is False
    assert first.customer.pk == second.customer.pk


def test_identify_shallow_merges_profile(in_acme: Any) -> None:
    customer_identify(
        provider="default", external_id="p",
        profile={"name": "Ann", "plan": {"tier": "a", "seats": 2}},
    )

    result = customer_identify(
        provider="default", external_id="p", profile={"email": "a@x.io", "plan": {"tier": "b"}}
    )

    expected = {"name": "Ann", "email": "a@x.io", "plan": {"tier": "b"}}
    assert result.customer.metadata == expected
    assert Customer.objects.get(pk=result.customer.pk).metadata == expected


def test_identify_without_profile_keeps_metadata(in_acme: Any) -> None:
    customer_identify(provider="default", external_id="p", profile={"k": 1})

    result = customer_identify(provider="default", external_id="p")

    assert result.customer.metadata == {"k": 1}


def test_trial_eligible_until_a_trial_is_taken(
    catalog: Catalog, alice: Customer
) -> None:
    assert customer_identify(provider="default", external_id="alice").trial_eligible is True

    trial_grant(customer=alice, offer=offer_for_grant("pro_month"))

    assert customer_identify(provider="default", external_id="alice").trial_eligible is False


def test_trial_ineligible_when_any_identity_hash_is_in_history(alice: Customer) -> None:
    # given alice also has a telegram identity whose hash another trial recorded
    ExternalIdentity.objects.create(customer=alice, provider="telegram", external_id="555")
    TrialHistory.objects.create(identity_hash=identity_hash("telegram", "555"))

    # then
    assert customer_identify(provider="default", external_id="alice").trial_eligible is False
    assert customer_identify(provider="default", external_id="other").trial_eligible is True


# --- Erase


def test_erase_removes_identities_and_metadata_but_keeps_the_ledger(
    catalog: Catalog, alice: Customer
) -> None:
    customer_identify(provider="default", external_id="alice", profile={"email": "a@x.io"})
    batch = grant(alice, "reports_10").batches[0]
    quota_consume(customer=alice, feature="reports", amount=2)
    entries = LedgerEntry.objects.filter(batch__customer=alice).count()

    customer_erase(customer=alice)

    stored = Customer.objects.get(pk=alice.pk)
    assert stored.metadata == {}
    assert stored.erased_at is not None
    assert not ExternalIdentity.objects.filter(customer=alice).exists()
    assert QuotaBatch.objects.get(pk=batch.pk).remaining == 8
    assert LedgerEntry.objects.filter(batch__customer=alice).count() == entries == 2
    assert Usage.objects.filter(customer=alice).count() == 1


def test_erased_identity_names_a_new_customer(alice: Customer) -> None:
    customer_erase(customer=alice)

    again = customer_identify(provider="default", external_id="alice")

    assert again.created is True and again.customer.pk != alice.pk
