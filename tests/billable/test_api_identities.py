"""HTTP tests of `POST /billing/customers/{id}/identities`: another identity for a customer."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection

from billable.models import Customer, ExternalIdentity, IdempotencyRecord
from billable.selectors import CustomerRef
from billable.services.customers import customer_ensure
from billable.services.identities import identity_attach
from billable.services.merge import customer_merge
from tests.support.api import Api, Response, assert_problem
from tests.support.tenants import TenantFixture, make_key

CUSTOMER_KEYS = {"id", "identities", "metadata", "created_at", "merged_into"}


def _identify(api: Api, key: str, external_id: Any, provider: str = "default") -> str:
    response = api.post("billing/identify", json={"provider": provider,
                                                  "external_id": external_id}, key=key)
    assert response.status == 200, response.body
    return response.json["customer_id"]  # type: ignore[no-any-return]


def _attach(api: Api, key: str, customer_id: str, **body: Any) -> Response:
    return api.post(f"billing/customers/{customer_id}/identities", json=body, key=key)


def _identities(acme: TenantFixture) -> list[tuple[str, str, str]]:
    connection.set_schema(acme.tenant.schema_name)
    return sorted(
        (str(c), p, e)
        for c, p, e in ExternalIdentity.objects.values_list("customer_id", "provider",
                                                             "external_id")
    )


def test_attach_then_again_changes_nothing(api: Api, acme: TenantFixture) -> None:
    # given
    ann = _identify(api, acme.key, 1001, "telegram")
    # when
    first = _attach(api, acme.key, ann, provider="email", external_id="ann@example.com")
    # then
    assert first.status == 201, first.body
    body = first.json
    assert set(body) == CUSTOMER_KEYS and body["id"] == ann
    assert body["identities"] == [
        {"provider": "telegram", "external_id": "1001"},
        {"provider": "email", "external_id": "ann@example.com"},
    ]
    assert api.get(f"billing/customers/{ann}", key=acme.key).json == body
    # The same again: 200, the same customer, no second row.
    again = _attach(api, acme.key, ann, provider="email", external_id="ann@example.com")
    assert again.status == 200 and again.json == body
    assert len(_identities(acme)) == 2


def test_the_attached_identity_names_the_customer(api: Api, acme: TenantFixture) -> None:
    ann = _identify(api, acme.key, "a-1")
    assert _attach(api, acme.key, ann, provider="email", external_id="x@y.io").status == 201
    assert _identify(api, acme.key, "x@y.io", "email") == ann
    listed = api.get("billing/customers", key=acme.key,
                     query={"provider": "email", "external_id": "x@y.io"}).json["items"]
    assert [c["id"] for c in listed] == [ann]


def test_external_id_is_normalised_as_identify_does(api: Api, acme: TenantFixture) -> None:
    ann = _identify(api, acme.key, "n-1")
    # An integer is its decimal string; outer spaces go.
    assert _attach(api, acme.key, ann, provider="telegram", external_id=42).status == 201
    assert _attach(api, acme.key, ann, provider="telegram", external_id="  42 ").status == 200
    assert _identify(api, acme.key, " 42", "telegram") == ann
    # The provider defaults to `default`, as identify's does.
    bob = _identify(api, acme.key, "n-2", "email")
    assert _attach(api, acme.key, bob, external_id=" bob-default ").status == 201
    assert _identify(api, acme.key, "bob-default") == bob


def test_identity_of_another_customer_is_409_and_nothing_changes(
    api: Api, acme: TenantFixture
) -> None:
    ann = _identify(api, acme.key, "c-ann")
    bob = _identify(api, acme.key, "c-bob")
    before = _identities(acme)
    assert_problem(_attach(api, acme.key, bob, provider="default", external_id="c-ann"),
                   409, "identity_conflict")
    assert _identities(acme) == before
    assert _identify(api, acme.key, "c-ann") == ann


def test_a_second_external_id_for_a_provider_is_409(api: Api, acme: TenantFixture) -> None:
    # One identity per provider, the rule merge keeps.
    ann = _identify(api, acme.key, "p-1", "telegram")
    before = _identities(acme)
    problem = assert_problem(_attach(api, acme.key, ann, provider="telegram",
                                     external_id="p-2"), 409, "identity_conflict")
    assert "telegram" in problem["detail"]
    assert _identities(acme) == before


def test_unknown_malformed_and_erased_customers_are_404(api: Api, acme: TenantFixture) -> None:
    for customer_id in (str(uuid.uuid4()), "not-a-uuid"):
        assert_problem(_attach(api, acme.key, customer_id, external_id="u-1"), 404,
                       "customer_not_found")
    gone = _identify(api, acme.key, "u-erased")
    assert api.delete(f"billing/customers/{gone}", key=acme.key).status == 204
    assert_problem(_attach(api, acme.key, gone, external_id="u-2"), 404, "customer_not_found")
    assert _identities(acme) == []


def test_a_merged_id_attaches_to_the_customer_it_went_into(
    api: Api, acme: TenantFixture
) -> None:
    target = _identify(api, acme.key, "m-target", "telegram")
    source = _identify(api, acme.key, "m-source", "email")
    merged = api.post("billing/customers/merge", json={"target_customer_id": target,
                                                       "source_customer_id": source},
                      key=acme.key)
    assert merged.status == 200, merged.body
    response = _attach(api, acme.key, source, provider="phone", external_id="4790000000")
    assert response.status == 201 and response.json["id"] == target
    assert {"provider": "phone", "external_id": "4790000000"} in response.json["identities"]


@pytest.mark.parametrize("body", [
    {}, {"external_id": "  "}, {"external_id": None}, {"external_id": "x" * 256},
    {"external_id": "a", "provider": ""}, {"external_id": "a", "provider": "p" * 65},
])
def test_validation(api: Api, acme: TenantFixture, body: dict[str, Any]) -> None:
    ann = _identify(api, acme.key, "v-1")
    assert_problem(_attach(api, acme.key, ann, **body), 422, "validation_error")


def test_needs_write_scope(api: Api, acme: TenantFixture) -> None:
    ann = _identify(api, acme.key, "s-1")
    _row, reader = make_key(acme.tenant, scopes=["billing:read"])
    assert_problem(_attach(api, reader, ann, external_id="s-2"), 403, "insufficient_scope")


def test_idempotent_replay_and_erasure_redacts_it(api: Api, acme: TenantFixture) -> None:
    ann = _identify(api, acme.key, "i-1")
    body = {"provider": "email", "external_id": "i@example.com"}
    headers = {"Idempotency-Key": "attach-i-1"}
    first = api.post(f"billing/customers/{ann}/identities", json=body, key=acme.key,
                     headers=headers)
    second = api.post(f"billing/customers/{ann}/identities", json=body, key=acme.key,
                      headers=headers)
    assert first.status == second.status == 201
    assert second.body == first.body and second.headers.get("Idempotent-Replayed") == "true"
    connection.set_schema(acme.tenant.schema_name)
    assert IdempotencyRecord.objects.get(key="attach-i-1").customer_ids == [ann]
    # Erasing the customer empties the identities of the stored answer.
    assert api.delete(f"billing/customers/{ann}", key=acme.key).status == 204
    replay = api.post(f"billing/customers/{ann}/identities", json=body, key=acme.key,
                      headers=headers)
    assert replay.status == 201 and replay.json["identities"] == []


# --- The service


def test_attach_follows_a_merge_that_happened_meanwhile(in_acme: TenantFixture) -> None:
    target = customer_ensure(CustomerRef(external_id="mm-target"))
    source = customer_ensure(CustomerRef(external_id="mm-source", provider="email"))
    stale = Customer.objects.get(pk=source.pk)
    customer_merge(target=target, source=source)
    result = identity_attach(customer=stale, provider="telegram", external_id="77")
    assert result.created and result.customer.pk == target.pk


# --- DELETE /billing/customers/{id}/identities/{provider}/{external_id}


def test_detach_an_identity(api: Api, acme: TenantFixture) -> None:
    ann = _identify(api, acme.key, "d-1", "telegram")
    assert _attach(api, acme.key, ann, provider="web", external_id="a/b c").status == 201
    path = f"billing/customers/{ann}/identities/web/a/b%20c"
    assert api.delete(path, key=acme.key).status == 204
    assert api.get(f"billing/customers/{ann}", key=acme.key).json["identities"] == [
        {"provider": "telegram", "external_id": "d-1"}
    ]
    assert_problem(api.delete(path, key=acme.key), 404, "identity_not_found")
    # Another customer's identity is not this one's to take.
    bob = _identify(api, acme.key, "d-bob")
    assert_problem(api.delete(f"billing/customers/{ann}/identities/default/d-bob",
                              key=acme.key), 404, "identity_not_found")
    assert _identify(api, acme.key, "d-bob") == bob
    assert_problem(api.delete(f"billing/customers/{uuid.uuid4()}/identities/default/d-bob",
                              key=acme.key), 404, "customer_not_found")


def test_a_detached_identity_cannot_take_a_second_trial(
    api: Api, acme: TenantFixture, catalog: Any
) -> None:
    ann = _identify(api, acme.key, "dt-1", "telegram")
    assert api.post("billing/grants", json={"customer_id": ann, "sku": "reports_10",
                                            "kind": "trial"}, key=acme.key).status == 201
    assert api.delete(f"billing/customers/{ann}/identities/telegram/dt-1",
                      key=acme.key).status == 204
    # A new customer under the identity is still refused.
    assert_problem(api.post("billing/grants", json={
        "provider": "telegram", "external_id": "dt-1", "sku": "reports_10", "kind": "trial",
    }, key=acme.key), 409, "trial_already_used")


def test_an_identity_attached_after_a_trial_carries_it(
    api: Api, acme: TenantFixture, catalog: Any
) -> None:
    ann = _identify(api, acme.key, "ca-1", "telegram")
    assert api.post("billing/grants", json={"customer_id": ann, "sku": "reports_10",
                                            "kind": "trial"}, key=acme.key).status == 201
    assert _attach(api, acme.key, ann, provider="email", external_id="ann@x.io").status == 201
    assert api.delete(f"billing/customers/{ann}/identities/email/ann@x.io",
                      key=acme.key).status == 204
    # the e-mail, attached only after the trial, is refused a trial under a new customer
    assert_problem(api.post("billing/grants", json={
        "provider": "email", "external_id": "ann@x.io", "sku": "reports_10", "kind": "trial",
    }, key=acme.key), 409, "trial_already_used")
    # and so is one the import adds to her
    imported = api.post("billing/customers/import", json={"customers": [{"identities": [
        {"provider": "telegram", "external_id": "ca-1"},
        {"provider": "phone", "external_id": "+15550009"}]}]}, key=acme.key)
    assert imported.status == 200 and imported.json["updated"] == 1, imported.body
    assert api.delete(f"billing/customers/{ann}/identities/phone/+15550009",
                      key=acme.key).status == 204
    assert_problem(api.post("billing/grants", json={
        "provider": "phone", "external_id": "+15550009", "sku": "reports_10", "kind": "trial",
    }, key=acme.key), 409, "trial_already_used")
    # a customer without a trial passes nothing on
    bob = _identify(api, acme.key, "ca-bob")
    assert _attach(api, acme.key, bob, provider="email", external_id="bob@x.io").status == 201
    assert api.delete(f"billing/customers/{bob}/identities/email/bob@x.io",
                      key=acme.key).status == 204
    assert api.post("billing/grants", json={
        "provider": "email", "external_id": "bob@x.io", "sku": "reports_10", "kind": "trial",
    }, key=acme.key).status == 201


def test_detach_needs_admin(api: Api, acme: TenantFixture) -> None:
    ann = _identify(api, acme.key, "da-1")
    _row, writer = make_key(acme.tenant, scopes=["billing:write"])
    assert_problem(api.delete(f"billing/customers/{ann}/identities/default/da-1", key=writer),
                   403, "insufficient_scope")
