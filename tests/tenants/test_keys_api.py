"""Tenant key self-service (`/keys`) and how keys are stored."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from tenants import keys
from tenants.models import ApiKey
from tenants.services import MAX_KEYS_PER_TENANT
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture, make_key


def test_create_shows_the_secret_once(api: Api, acme: TenantFixture) -> None:
    response = api.post("keys", json={"name": "ci"}, key=acme.key)
    assert response.status == 201
    created = response.json
    assert created["key"].startswith(created["prefix"] + "_")
    assert set(created["scopes"]) == {"billing:read", "billing:write", "billing:grant", "admin"}
    listed = api.get("keys", key=acme.key).json["items"]
    row = next(item for item in listed if item["id"] == created["id"])
    assert "key" not in row
    assert api.get("keys", key=created["key"]).status == 200


def test_keys_are_stored_as_keyed_hashes(acme: TenantFixture) -> None:
    key, raw = make_key(acme.tenant)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM public.tenants_apikey WHERE id = %s", [key.pk])
        row = cursor.fetchone()
    assert all(raw not in str(value) for value in row)
    secret_part = raw.rsplit("_", 1)[1]
    assert all(secret_part not in str(value) for value in row)
    assert key.key_hash == keys.hash_key(raw, key.hash_version)
    assert len(key.key_hash) == 64


def test_scopes_default_and_validation(api: Api, acme: TenantFixture) -> None:
    response = api.post(
        "keys", json={"name": "w", "scopes": ["billing:write", "billing:read"]}, key=acme.key
    )
    assert response.json["scopes"] == ["billing:read", "billing:write"]
    assert_problem(
        api.post("keys", json={"name": "w", "scopes": ["root"]}, key=acme.key),
        422, "validation_error",
    )
    assert_problem(
        api.post("keys", json={"name": "w", "scopes": []}, key=acme.key), 422, "validation_error"
    )


def test_revoke_answers_204_and_the_key_stops(api: Api, acme: TenantFixture) -> None:
    key, raw = make_key(acme.tenant)
    assert api.get("keys", key=raw).status == 200
    response = api.delete(f"keys/{key.pk}", key=acme.key)
    assert response.status == 204 and response.body == b""
    assert_problem(api.get("keys", key=raw), 401, "api_key_revoked")
    key.refresh_from_db()
    assert key.revoked_at is not None
    # Revoking again is harmless and keeps the first time.
    first = key.revoked_at
    assert api.delete(f"keys/{key.pk}", key=acme.key).status == 204
    key.refresh_from_db()
    assert key.revoked_at == first


def test_at_most_fifty_active_keys(api: Api, acme: TenantFixture) -> None:
    active = ApiKey.objects.filter(tenant=acme.tenant, revoked_at__isnull=True).count()
    for i in range(MAX_KEYS_PER_TENANT - active):
        make_key(acme.tenant, name=f"k{i}")
    assert_problem(api.post("keys", json={"name": "one too many"}, key=acme.key), 409,
                   "too_many_keys")
    # A key past its expiry no longer counts: it can never work again.
    spent = ApiKey.objects.filter(tenant=acme.tenant, name="k0").get()
    spent.expires_at = timezone.now() - timedelta(seconds=1)
    spent.save(update_fields=["expires_at"])
    assert api.post("keys", json={"name": "replaces an expired one"}, key=acme.key).status == 201
    assert_problem(api.post("keys", json={"name": "one too many"}, key=acme.key), 409,
                   "too_many_keys")


def test_key_format(acme: TenantFixture) -> None:
    _key, raw = make_key(acme.tenant)
    prefix, lookup, secret = raw.split("_")
    assert prefix == "bk" and len(lookup) == 8 and len(secret) >= 32
    assert all(c in keys.BASE62 for c in lookup + secret)


def test_a_key_hands_out_only_the_scopes_it_holds(api: Api, acme: TenantFixture) -> None:
    # given a key with only the `admin` scope (scopes are independent: admin is not a superset)
    _row, admin_only = make_key(acme.tenant, name="admin only", scopes=["admin"])
    before = ApiKey.objects.filter(tenant=acme.tenant).count()

    # when it asks for a scope it lacks, alone, beside one it holds, or by the all-four default
    refused = [
        api.post("keys", json={"name": "escalated"} | body, key=admin_only)
        for body in ({"scopes": ["billing:grant"]}, {"scopes": ["admin", "billing:read"]}, {})
    ]

    # then each is 403 insufficient_scope naming what it lacks, and no key is made
    missing = [assert_problem(r, 403, "insufficient_scope")["missing_scopes"] for r in refused]
    assert missing == [
        ["billing:grant"],
        ["billing:read"],
        ["billing:read", "billing:write", "billing:grant"],
    ]
    assert ApiKey.objects.filter(tenant=acme.tenant).count() == before
    # What it holds it may hand out; a key with all four scopes hands out any of them.
    peer = api.post("keys", json={"name": "peer", "scopes": ["admin"]}, key=admin_only)
    assert peer.status == 201 and peer.json["scopes"] == ["admin"]
    grant = api.post("keys", json={"name": "g", "scopes": ["billing:grant"]}, key=acme.key)
    assert grant.status == 201


def test_a_stored_key_answer_is_replayed_only_to_the_key_that_made_it(
    api: Api, acme: TenantFixture
) -> None:
    # The idempotency key is the tenant's, and the stored answer holds the new key's secret: a
    # weaker key sending the same request must not be handed a stronger key by the replay.
    _row, admin_only = make_key(acme.tenant, name="admin only", scopes=["admin"])
    body = {"name": "granter", "scopes": ["billing:grant"]}
    retry = {"Idempotency-Key": "mint-granter"}
    first = api.post("keys", json=body, key=acme.key, headers=retry)
    assert first.status == 201

    replayed = api.post("keys", json=body, key=acme.key, headers=retry)
    other = api.post("keys", json=body, key=admin_only, headers=retry)

    assert replayed.status == 201 and replayed.json["key"] == first.json["key"]
    assert other.status != 201 and first.json["key"] not in other.body.decode()
    assert_problem(other, 422, "idempotency_key_reused")
    assert ApiKey.objects.filter(tenant=acme.tenant, name="granter").count() == 1


def test_a_key_made_by_an_expiring_key_does_not_outlive_it(api: Api, acme: TenantFixture) -> None:
    # given an admin key that expires in a day
    ends = timezone.now() + timedelta(days=1)
    _row, expiring = make_key(acme.tenant, name="temporary", scopes=["admin"], expires_at=ends)
    before = ApiKey.objects.filter(tenant=acme.tenant).count()

    # when it makes a key without an expiry, with a later one, and with an earlier one
    plain = api.post("keys", json={"name": "plain", "scopes": ["admin"]}, key=expiring)
    later = api.post(
        "keys",
        json={"name": "later", "scopes": ["admin"],
              "expires_at": (ends + timedelta(days=365)).isoformat()},
        key=expiring,
    )
    sooner_at = ends - timedelta(hours=1)
    sooner = api.post(
        "keys",
        json={"name": "sooner", "scopes": ["admin"], "expires_at": sooner_at.isoformat()},
        key=expiring,
    )

    # then the first expires with its maker, the second is refused, the third keeps its own
    assert plain.status == 201, plain.body
    assert ApiKey.objects.get(pk=plain.json["id"]).expires_at == ends
    assert_problem(later, 422, "validation_error")
    assert sooner.status == 201
    assert ApiKey.objects.get(pk=sooner.json["id"]).expires_at == sooner_at
    assert ApiKey.objects.filter(tenant=acme.tenant).count() == before + 2
    # A key that does not expire still makes keys that do not.
    lasting = api.post("keys", json={"name": "lasting"}, key=acme.key)
    assert ApiKey.objects.get(pk=lasting.json["id"]).expires_at is None
