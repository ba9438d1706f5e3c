"""Trials: normalised identities, HMAC keyed per tenant, one trial per identity per tenant."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from django.db import connection

from billable import signals
from billable.errors import TrialAlreadyUsed
from billable.models import (
    Customer,
    ExternalIdentity,
    Grant,
    Offer,
    Product,
    QuotaBatch,
    TrialHistory,
)
from billable.selectors import (
    CustomerRef,
    customer_identity_hashes,
    identity_hash,
    normalise_identity,
    offer_for_grant,
)
from billable.services.customers import customer_ensure, customer_erase
from billable.services.trials import trial_grant
from tenants.models import Tenant
from tests.support.signals import captured, connected
from tests.support.tenants import TenantFixture

Catalog = dict[str, Product | Offer]


# --- Normalisation


@pytest.mark.parametrize(
    ("kind", "value", "normal"),
    [
        ("email", "  Ann@Example.COM ", "email:ann@example.com"),
        (" EMAIL ", "ann@example.com", "email:ann@example.com"),
        ("email", "ann+news@example.com", "email:ann@example.com"),
        ("email", "a.n.n+x+y@example.com", "email:a.n.n@example.com"),
        ("email", "J.Doe+promo@Gmail.com", "email:jdoe@gmail.com"),
        ("email", "j.doe@googlemail.com", "email:jdoe@gmail.com"),
        ("email", "JDOE@GOOGLEMAIL.COM", "email:jdoe@gmail.com"),
        ("phone", " +1 555 0100 ", "phone:15550100"),
        ("Tel", "+1 (555) 010-0100", "phone:15550100100"),
        ("phone", "0044 (0)20 7946 0958", "phone:442079460958"),
        ("email", "Ann@Example.COM.", "email:ann@example.com"),
        ("email", "ann@B\u00fccher.de", "email:ann@xn--bcher-kva.de"),
        ("email", "\uff21nn\uff20example.com", "email:ann@example.com"),
        ("email", "Rene\u0301@example.com", "email:ren\u00e9@example.com"),
        ("telegram", 123456, "telegram:123456"),
        ("Default", " Alice ", "default:alice"),
        ("phone", "a.b+c@gmail.com", "phone:a.b+c@gmail.com"),
    ],
)
def test_normalise_identity(kind: str, value: str | int, normal: str) -> None:
    assert normalise_identity(kind, value) == normal


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("email", "jdoe@gmail.com"), ("email", " J.Doe+trial@GoogleMail.com ")),
        (("telegram", 42), ("telegram", "42")),
        (("email", "ann@x.io"), ("Email", "ANN+1@X.IO")),
    ],
)
def test_spellings_of_one_identity_hash_alike(
    in_acme: TenantFixture, a: tuple[str, Any], b: tuple[str, Any]
) -> None:
    assert identity_hash(*a) == identity_hash(*b)


def test_different_identities_hash_differently(in_acme: TenantFixture) -> None:
    assert identity_hash("email", "ann@x.io") != identity_hash("email", "anne@x.io")
    assert identity_hash("email", "a.nn@x.io") != identity_hash("email", "ann@x.io")
    assert identity_hash("phone", "1") != identity_hash("telegram", "1")


# --- HMAC keyed per tenant


def test_hash_is_hmac_sha256_with_the_tenant_secret(in_acme: TenantFixture) -> None:
    secret = Tenant.objects.get(pk=in_acme.tenant.pk).identity_secret

    value = identity_hash("email", "Ann@X.io")

    expected = hmac.new(secret.encode(), b"email:ann@x.io", hashlib.sha256).hexdigest()
    assert value == expected
    assert value != hashlib.sha256(b"email:ann@x.io").hexdigest()


def test_same_identity_hashes_differently_per_tenant(
    in_acme: TenantFixture, globex: TenantFixture
) -> None:
    in_acme_hash = identity_hash("phone", "+15550100")

    connection.set_schema(globex.tenant.schema_name)
    in_globex_hash = identity_hash("phone", "+15550100")
    connection.set_schema(in_acme.tenant.schema_name)

    assert in_acme_hash != in_globex_hash
    assert identity_hash("phone", "+15550100") == in_acme_hash


def test_customer_identity_hashes_cover_own_and_given_identities(alice: Customer) -> None:
    ExternalIdentity.objects.create(customer=alice, provider="telegram", external_id="77")

    hashes = customer_identity_hashes(alice, {"email": "a@x.io"})

    assert hashes.current == sorted({
        identity_hash("customer", str(alice.pk)),
        identity_hash("default", "alice"),
        identity_hash("telegram", "77"),
        identity_hash("email", "a@x.io"),
    })
    assert set(hashes.current) <= set(hashes.lookup)


# --- One trial per identity


def test_trial_grants_and_records_every_identity_hash(catalog: Catalog, alice: Customer) -> None:
    result = trial_grant(customer=alice, offer=offer_for_grant("pro_month"),
                         identities={"email": "Alice+x@Example.com", "phone": "+1 555"})

    assert result.grant.kind == "trial"
    assert [b.source for b in result.batches] == ["trial"]
    stored = set(TrialHistory.objects.values_list("identity_hash", flat=True))
    assert stored == {
        identity_hash("customer", str(alice.pk)),
        identity_hash("default", "alice"),
        identity_hash("email", "alice@example.com"),
        identity_hash("phone", "+1 555"),
    }
    assert set(TrialHistory.objects.values_list("grant_id", flat=True)) == {result.grant.pk}


def test_history_stores_only_hashes(catalog: Catalog, alice: Customer) -> None:
    trial_grant(customer=alice, offer=offer_for_grant("pro_month"),
                identities={"email": "secret.person@example.com"})

    for value in TrialHistory.objects.values_list("identity_hash", flat=True):
        assert len(value) == 64 and int(value, 16) >= 0
        assert "secret" not in value and "alice" not in value


def test_second_trial_for_the_same_customer_is_refused(
    catalog: Catalog, alice: Customer
) -> None:
    trial_grant(customer=alice, offer=offer_for_grant("pro_month"))

    with pytest.raises(TrialAlreadyUsed) as exc:
        trial_grant(customer=alice, offer=offer_for_grant("reports_10"))

    assert exc.value.code == "trial_already_used" and exc.value.status == 409
    assert Grant.objects.count() == 1
    assert QuotaBatch.objects.count() == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"email": "jdoe@gmail.com"}, {"email": "J.Doe+again@googlemail.com"}),
        ({"phone": "+15550100"}, {"email": "new@x.io", "phone": " +15550100 "}),
        ({"telegram": 99}, {"telegram": "99"}),
    ],
)
def test_trial_refused_when_any_identity_was_used(
    catalog: Catalog, alice: Customer, bob: Customer,
    first: dict[str, str | int], second: dict[str, str | int],
) -> None:
    trial_grant(customer=alice, offer=offer_for_grant("pro_month"), identities=first)
    history = TrialHistory.objects.count()

    with pytest.raises(TrialAlreadyUsed):
        trial_grant(customer=bob, offer=offer_for_grant("pro_month"), identities=second)

    assert TrialHistory.objects.count() == history
    assert not Grant.objects.filter(customer=bob).exists()
    assert not QuotaBatch.objects.filter(customer=bob).exists()


def test_customers_own_identities_are_checked(catalog: Catalog, alice: Customer) -> None:
    # given another customer took a trial naming alice's telegram id
    other = customer_ensure(CustomerRef(external_id="other"))
    trial_grant(customer=other, offer=offer_for_grant("pro_month"), identities={"telegram": 5})
    ExternalIdentity.objects.create(customer=alice, provider="telegram", external_id="5")

    # then alice cannot take one
    with pytest.raises(TrialAlreadyUsed):
        trial_grant(customer=alice, offer=offer_for_grant("pro_month"))


def test_unrelated_customers_each_get_a_trial(
    catalog: Catalog, alice: Customer, bob: Customer
) -> None:
    trial_grant(customer=alice, offer=offer_for_grant("pro_month"), identities={"email": "a@x"})
    trial_grant(customer=bob, offer=offer_for_grant("pro_month"), identities={"email": "b@x"})

    assert Grant.objects.filter(kind="trial").count() == 2


def test_trial_in_one_tenant_does_not_block_another(
    catalog: Catalog, alice: Customer, globex: TenantFixture, in_acme: TenantFixture
) -> None:
    trial_grant(customer=alice, offer=offer_for_grant("pro_month"), identities={"email": "a@x"})
    acme_hash = identity_hash("email", "a@x")

    connection.set_schema(globex.tenant.schema_name)
    assert not TrialHistory.objects.filter(identity_hash=acme_hash).exists()
    assert not TrialHistory.objects.filter(
        identity_hash=identity_hash("email", "a@x")
    ).exists()
    connection.set_schema(in_acme.tenant.schema_name)


def test_customer_without_identities_is_keyed_by_its_id(
    catalog: Catalog, alice: Customer
) -> None:
    customer_erase(customer=alice)
    erased = Customer.objects.get(pk=alice.pk)

    trial_grant(customer=erased, offer=offer_for_grant("pro_month"))

    assert list(TrialHistory.objects.values_list("identity_hash", flat=True)) == [
        identity_hash("customer", str(alice.pk))
    ]
    with pytest.raises(TrialAlreadyUsed):
        trial_grant(customer=erased, offer=offer_for_grant("pro_month"))


def test_history_rows_and_grant_commit_together(catalog: Catalog, alice: Customer) -> None:
    # given a concurrent trial that records one of these hashes after our check
    def concurrent(sender: Any, grant: Grant, **kwargs: Any) -> None:
        TrialHistory.objects.create(identity_hash=identity_hash("email", "race@x.io"))

    # when
    with connected(signals.grant_created, concurrent), pytest.raises(TrialAlreadyUsed):
        trial_grant(customer=alice, offer=offer_for_grant("pro_month"),
                    identities={"email": "race@x.io"})

    # then the grant rolled back with the history rows
    assert not Grant.objects.exists()
    assert not QuotaBatch.objects.exists()
    assert not TrialHistory.objects.exists()


# --- Signals


def test_trial_activated_and_grant_created_once(catalog: Catalog, alice: Customer) -> None:
    with captured(signals.trial_activated) as activated, captured(
        signals.grant_created
    ) as created:
        result = trial_grant(customer=alice, offer=offer_for_grant("pro_month"))

    assert len(activated) == 1 and len(created) == 1
    assert activated[0]["grant"].pk == result.grant.pk
    assert activated[0]["customer"].pk == alice.pk
    assert [b.pk for b in activated[0]["batches"]] == [b.pk for b in result.batches]


def test_refused_trial_sends_nothing(catalog: Catalog, alice: Customer) -> None:
    trial_grant(customer=alice, offer=offer_for_grant("pro_month"))

    with captured(signals.trial_activated) as activated, captured(
        signals.grant_created
    ) as created, pytest.raises(TrialAlreadyUsed):
        trial_grant(customer=alice, offer=offer_for_grant("pro_month"))

    assert activated == [] and created == []


# --- Spellings of one identity, erased customers, hashes of earlier rules

DECOMPOSED_E = "e\u0301"  # "e" + COMBINING ACUTE ACCENT: renders as "é"
FULL_WIDTH_PHONE = "\uff0b\uff11\uff15\uff15\uff15\uff10\uff11\uff10\uff10\uff11\uff10\uff10"
FULL_WIDTH_EMAIL = "\uff41\uff4e\uff4e\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"phone": "+1 555 010 0100"}, {"phone": "+1 (555) 010-0100"}),
        ({"phone": "+15550100100"}, {"phone": "+1.555.010.0100"}),
        ({"phone": "+44 20 7946 0958"}, {"phone": "0044 (0) 20-7946-0958"}),
        ({"phone": "+15550100100"}, {"phone": FULL_WIDTH_PHONE}),
        ({"email": "ren\u00e9@example.com"}, {"email": f"ren{DECOMPOSED_E}@example.com"}),
        ({"email": "ann@example.com"}, {"email": FULL_WIDTH_EMAIL}),
        ({"email": "ann@example.com"}, {"email": "ann@example.com."}),
        ({"email": "jdoe@gmail.com"}, {"email": "J.Doe+x@GMAIL.COM."}),
        ({"email": "ann@example.com"}, {"email": "an\u200bn@example.com"}),
        ({"email": "stra\u00dfe@example.com"}, {"email": "STRASSE@example.com"}),
        ({"email": "ann@b\u00fccher.de"}, {"email": "ann@xn--bcher-kva.de"}),
        ({"tel": "+1 555 010 0100"}, {"phone": "+15550100100"}),
        ({"E-Mail": "ann@example.com"}, {"email": "ANN@example.com"}),
        ({"telegram": "\uff11\uff12\uff13"}, {"telegram": 123}),
    ],
)
def test_spellings_of_one_person_get_one_trial(
    catalog: Catalog, alice: Customer, bob: Customer,
    first: dict[str, str | int], second: dict[str, str | int],
) -> None:
    trial_grant(customer=alice, offer=offer_for_grant("pro_month"), identities=first)

    with pytest.raises(TrialAlreadyUsed):
        trial_grant(customer=bob, offer=offer_for_grant("pro_month"), identities=second)

    assert not Grant.objects.filter(customer=bob).exists()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("phone", "+1 555 010 0100"), ("phone", "+1 555 010 0101")),
        (("phone", "12345"), ("phone", "12-34-5 ext")),  # not a phone spelling: kept as text
        (("email", "ann@example.com"), ("email", "ann@example.co")),
        (("email", "a.nn@example.com"), ("email", "ann@example.com")),
        (("phone", "+15550100100"), ("telegram", "15550100100")),
    ],
)
def test_different_identities_still_differ(
    in_acme: TenantFixture, a: tuple[str, Any], b: tuple[str, Any]
) -> None:
    assert identity_hash(*a) != identity_hash(*b)


def _legacy_hash(normalised: str) -> str:
    secret = Tenant.objects.get(schema_name=connection.schema_name).identity_secret
    return hmac.new(secret.encode(), normalised.encode(), hashlib.sha256).hexdigest()


def test_hashes_stored_under_earlier_rules_still_match(catalog: Catalog, bob: Customer) -> None:
    # given trials taken before the rules changed, stored under the old normalisation
    # (trimmed and lower-cased, nothing more)
    TrialHistory.objects.create(identity_hash=_legacy_hash("phone:+1 (555) 010-0100"))
    TrialHistory.objects.create(identity_hash=_legacy_hash("email:ann@example.com."))

    # then the same spellings are still refused, though their hash under the new rules differs
    assert identity_hash("phone", "+1 (555) 010-0100") != _legacy_hash("phone:+1 (555) 010-0100")
    for identities in ({"phone": "+1 (555) 010-0100"}, {"email": "Ann@Example.com."}):
        with pytest.raises(TrialAlreadyUsed):
            trial_grant(customer=bob, offer=offer_for_grant("pro_month"), identities=identities)
    # and a customer's own identity stored under the old rules counts too
    TrialHistory.objects.create(identity_hash=_legacy_hash("phone:+44 20 7946 0958"))
    carol = customer_ensure(CustomerRef(provider="phone", external_id="+44 20 7946 0958"))
    with pytest.raises(TrialAlreadyUsed):
        trial_grant(customer=carol, offer=offer_for_grant("pro_month"))
    assert not Grant.objects.exists()


def test_new_trials_record_the_hash_under_the_current_rules(
    catalog: Catalog, alice: Customer
) -> None:
    trial_grant(customer=alice, offer=offer_for_grant("pro_month"),
                identities={"phone": "+1 (555) 010-0100"})

    stored = set(TrialHistory.objects.values_list("identity_hash", flat=True))
    assert identity_hash("phone", "15550100100") in stored
    assert _legacy_hash("phone:+1 (555) 010-0100") not in stored


def test_erased_customer_cannot_take_a_second_trial(catalog: Catalog, alice: Customer) -> None:
    # given alice took a trial, then was erased (her identities are gone)
    trial_grant(customer=alice, offer=offer_for_grant("pro_month"))
    customer_erase(customer=alice)
    erased = Customer.objects.get(pk=alice.pk)

    # then her customer id cannot take another
    with pytest.raises(TrialAlreadyUsed):
        trial_grant(customer=erased, offer=offer_for_grant("reports_10"))
    assert Grant.objects.filter(kind="trial").count() == 1


def test_erased_customer_whose_trial_predates_the_id_hash_is_refused(
    catalog: Catalog, alice: Customer
) -> None:
    # given a trial recorded before trials recorded the customer's own id
    trial_grant(customer=alice, offer=offer_for_grant("pro_month"))
    TrialHistory.objects.filter(
        identity_hash=identity_hash("customer", str(alice.pk))
    ).delete()
    customer_erase(customer=alice)

    with pytest.raises(TrialAlreadyUsed):
        trial_grant(customer=Customer.objects.get(pk=alice.pk),
                    offer=offer_for_grant("pro_month"))
