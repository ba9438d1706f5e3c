"""The developers pages: API keys, webhook endpoints and the delivery log, through the same
services as the API, each action once per form with its audit entry; secrets shown once."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from billing_platform.console.models import AuditEntry
from billing_platform.core import crypto
from billing_platform.webhooks import services as webhook_services
from billing_platform.webhooks.models import Delivery, DeliveryAttempt, Endpoint, Event
from tenants.models import ApiKey
from tests.support.api import Api
from tests.support.console import PASSWORD, form_key, make_member, signed_in_client
from tests.support.servers import Receiver, Reply, running_receiver
from tests.support.tenants import TenantFixture, make_key
from tests.support.webhooks import drain

KEYS = "/console/developers/"
WEBHOOKS = "/console/developers/webhooks/"


@pytest.fixture
def private_ok(settings: Any) -> Any:
    """The receiver listens on loopback: allow private networks, compress the retries."""
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0, 0]
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    return settings


@pytest.fixture
def receiver(private_ok: Any) -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def _member(tenant: Any, role: str, email: str | None = None) -> Client:
    email = email or f"{role}@example.com"
    make_member(tenant, email, role)
    return signed_in_client(email)


def _section(html: bytes, section_id: str) -> str:
    return html.decode().split(f'id="{section_id}"', 1)[1]


def _key_of(html: bytes, section_id: str) -> str:
    return form_key(_section(html, section_id))


def _shown_secret(html: bytes, element_id: str) -> str | None:
    found = re.search(rf'id="{element_id}">([^<]+)<', html.decode())
    return found.group(1) if found else None


def _audits(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action))


# --- API keys


def test_a_new_key_works_and_its_secret_is_shown_once(acme: TenantFixture, api: Api) -> None:
    owner = _member(acme.tenant, "owner")
    page = owner.get(KEYS)
    assert page.status_code == 200
    assert acme.key_row.prefix.encode() in page.content  # the session's key is listed

    response = owner.post(
        "/console/developers/keys/new/",
        {
            "form_key": _key_of(page.content, "new-key"),
            "name": "n8n production",
            "scopes": ["billing:read", "billing:grant"],
            "expires_at": "2099-01-01T00:00",
        },
    )
    assert response.status_code == 302
    key = ApiKey.objects.get(tenant=acme.tenant, name="n8n production")
    assert response["Location"] == f"/console/developers/keys/{key.pk}/"
    assert key.scopes == ["billing:read", "billing:grant"]
    assert key.expires_at is not None and key.expires_at.year == 2099

    shown = owner.get(response["Location"])
    secret = _shown_secret(shown.content, "new-key-secret")
    assert secret is not None and secret.startswith(f"{key.prefix}_")
    # The curl example carries the key and a call it may make; n8n gets the API base.
    curl = _shown_secret(shown.content, "try-curl")
    assert curl is not None and secret in curl and "/api/v1/billing/balance" in curl
    assert "http://testserver/api/v1" in shown.content.decode()
    # The key works against the API, with the scopes chosen.
    balance = api.get("billing/balance?provider=n8n&external_id=credential-check", key=secret)
    assert balance.status == 200
    assert api.get("webhooks/endpoints", key=secret).status == 403

    # Shown once: a reload, the list, the audit log never show it again.
    again = owner.get(response["Location"])
    assert secret.encode() not in again.content and b'id="key-secret"' not in again.content
    assert secret.encode() not in owner.get(KEYS).content
    (audit,) = _audits("key.create")
    assert audit.target == f"key:{key.pk}"
    assert audit.detail["scopes"] == ["billing:read", "billing:grant"]
    assert secret not in str(audit.detail)


def test_a_double_submitted_key_form_creates_one_key(acme: TenantFixture) -> None:
    owner = _member(acme.tenant, "admin")
    fields = {
        "form_key": _key_of(owner.get(KEYS).content, "new-key"),
        "name": "twice",
        "scopes": ["billing:read"],
    }
    first = owner.post("/console/developers/keys/new/", fields)
    second = owner.post("/console/developers/keys/new/", fields, follow=True)

    assert ApiKey.objects.filter(tenant=acme.tenant, name="twice").count() == 1
    assert first["Location"] == second.redirect_chain[0][0]
    assert b"This form was already sent; nothing more was done." in second.content
    # A double click: the first answer's page was never shown, so the secret held for it is
    # shown on the page the second leads to, and then never again.
    assert b'id="new-key-secret"' in second.content
    assert b'id="new-key-secret"' not in owner.get(first["Location"]).content
    assert len(_audits("key.create")) == 1


def test_a_refused_key_form_says_why_and_creates_nothing(acme: TenantFixture) -> None:
    owner = _member(acme.tenant, "owner")
    key = _key_of(owner.get(KEYS).content, "new-key")
    response = owner.post(
        "/console/developers/keys/new/",
        {"form_key": key, "name": "", "scopes": [], "expires_at": "2001-01-01T00:00"},
    )
    assert response.status_code == 422
    text = response.content.decode()
    assert "This field is required." in text and "Choose at least one scope." in text
    assert "Choose a time in the future." in text
    malformed = owner.post(
        "/console/developers/keys/new/",
        {"form_key": "x", "name": "a", "scopes": ["root"], "expires_at": "soon"},
    )
    assert malformed.status_code == 422
    assert b"This form is out of date: reload the page." in malformed.content
    assert ApiKey.objects.filter(tenant=acme.tenant).count() == 1
    assert not _audits("key.create")


def test_revoking_asks_first_then_the_api_refuses_the_key(acme: TenantFixture, api: Api) -> None:
    key, raw = make_key(acme.tenant, name="old script")
    owner = _member(acme.tenant, "owner")
    page = owner.get(f"/console/developers/keys/{key.pk}/")
    fields = {"form_key": _key_of(page.content, "revoke-key")}
    url = f"/console/developers/keys/{key.pk}/revoke/"

    asked = owner.post(url, fields)
    assert asked.status_code == 200 and b"This cannot be undone." in asked.content
    key.refresh_from_db()
    assert key.revoked_at is None and not _audits("key.revoke")

    done = owner.post(url, {**fields, "confirmed": "on"})
    assert done.status_code == 302
    repeat = owner.post(url, {**fields, "confirmed": "on"}, follow=True)
    assert b"This form was already sent" in repeat.content
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert api.get("billing/balance?external_id=x", key=raw).status == 401
    (audit,) = _audits("key.revoke")
    assert audit.target == f"key:{key.pk}"
    listed = owner.get(KEYS).content.decode()
    assert 'class="key-revoked">revoked<' in listed
    assert b'id="revoke-key"' not in owner.get(f"/console/developers/keys/{key.pk}/").content


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_viewers_and_support_neither_see_nor_act(
    acme: TenantFixture, role: str, private_ok: Any
) -> None:
    key, _raw = make_key(acme.tenant, name="kept")
    endpoint, _secret = webhook_services.endpoint_create(
        tenant_id=acme.tenant.pk, url="http://127.0.0.1:9/hook"
    )
    client = _member(acme.tenant, role)
    assert b"/console/developers/" not in client.get("/console/").content
    for page in (KEYS, WEBHOOKS, f"/console/developers/keys/{key.pk}/",
                 f"/console/developers/webhooks/{endpoint.pk}/"):
        assert client.get(page).status_code == 403
    fields = {"form_key": "f" * 24, "confirmed": "on"}
    posts = {
        "/console/developers/keys/new/": {"name": "mine", "scopes": ["admin"]},
        f"/console/developers/keys/{key.pk}/revoke/": {},
        "/console/developers/webhooks/new/": {"url": "http://127.0.0.1:9/x"},
        f"/console/developers/webhooks/{endpoint.pk}/active/": {},
        f"/console/developers/webhooks/{endpoint.pk}/rotate/": {},
        f"/console/developers/webhooks/{endpoint.pk}/test/": {},
        f"/console/developers/webhooks/{endpoint.pk}/event-types/": {
            "event_types": ["order.created"]
        },
    }
    for url, extra in posts.items():
        assert client.post(url, {**fields, **extra}).status_code == 403, url
    key.refresh_from_db()
    endpoint.refresh_from_db()
    assert key.revoked_at is None and endpoint.is_active and endpoint.event_types == []
    assert ApiKey.objects.filter(tenant=acme.tenant).count() == 2
    assert Endpoint.objects.filter(tenant=acme.tenant).count() == 1
    assert not Event.objects.filter(tenant=acme.tenant).exists()
    assert not AuditEntry.objects.filter(tenant=acme.tenant).exclude(
        action__startswith="invitation"
    ).exists()


def test_another_tenants_keys_endpoints_and_deliveries_are_not_found(
    acme: TenantFixture, globex: TenantFixture, private_ok: Any
) -> None:
    theirs, _raw = make_key(globex.tenant, name="globex secret name")
    endpoint, _secret = webhook_services.endpoint_create(
        tenant_id=globex.tenant.pk, url="http://127.0.0.1:9/globex-hook"
    )
    event = webhook_services.endpoint_test(endpoint=endpoint)
    delivery = Delivery.objects.get(event=event)
    admin = _member(acme.tenant, "admin")
    fields = {"form_key": "g" * 24, "confirmed": "on"}

    for page in (f"/console/developers/keys/{theirs.pk}/",
                 f"/console/developers/webhooks/{endpoint.pk}/",
                 f"/console/developers/deliveries/{delivery.pk}/",
                 "/console/developers/deliveries/not-a-uuid/",
                 "/console/developers/keys/not-a-uuid/"):
        response = admin.get(page)
        assert response.status_code == 404, page
        assert b"globex" not in response.content
    for url in (f"/console/developers/keys/{theirs.pk}/revoke/",
                f"/console/developers/webhooks/{endpoint.pk}/active/",
                f"/console/developers/webhooks/{endpoint.pk}/rotate/",
                f"/console/developers/webhooks/{endpoint.pk}/test/",
                f"/console/developers/webhooks/{endpoint.pk}/event-types/",
                f"/console/developers/deliveries/{delivery.pk}/redeliver/"):
        assert admin.post(url, fields).status_code == 404, url
    listed = admin.get(KEYS).content + admin.get(WEBHOOKS).content
    assert b"globex" not in listed
    theirs.refresh_from_db()
    endpoint.refresh_from_db()
    assert theirs.revoked_at is None and endpoint.is_active
    assert crypto.decrypt(endpoint.secret_encrypted) == _secret
    assert Delivery.objects.filter(endpoint=endpoint).count() == 1
    assert not AuditEntry.objects.filter(tenant=acme.tenant, action__contains=".").exclude(
        action__startswith="invitation"
    ).exists()


def test_a_form_without_its_csrf_token_is_refused(acme: TenantFixture) -> None:
    make_member(acme.tenant, "csrf@example.com", "owner")
    browser = Client(enforce_csrf_checks=True)
    login = browser.get("/console/login/")
    browser.post(
        "/console/login/",
        {"email": "csrf@example.com", "password": PASSWORD,
         "csrfmiddlewaretoken": login.cookies["csrftoken"].value},
    )
    page = browser.get(KEYS)
    assert page.status_code == 200
    fields = {"form_key": _key_of(page.content, "new-key"), "name": "x", "scopes": ["admin"]}
    assert browser.post("/console/developers/keys/new/", fields).status_code == 403
    assert not ApiKey.objects.filter(tenant=acme.tenant, name="x").exists()


# --- Webhook endpoints


def _create_endpoint(client: Client, url: str, **extra: Any) -> Any:
    page = client.get(WEBHOOKS)
    return client.post(
        "/console/developers/webhooks/new/",
        {"form_key": _key_of(page.content, "new-endpoint"), "url": url, **extra},
    )


def test_an_endpoint_is_registered_with_its_secret_shown_once(
    acme: TenantFixture, receiver: Receiver
) -> None:
    admin = _member(acme.tenant, "admin")
    response = _create_endpoint(
        admin, receiver.url, description="n8n", event_types=["order.created", "quota.depleted"]
    )
    assert response.status_code == 302
    endpoint = Endpoint.objects.get(tenant=acme.tenant)
    assert endpoint.event_types == ["order.created", "quota.depleted"]
    assert endpoint.description == "n8n"
    page = admin.get(response["Location"])
    secret = _shown_secret(page.content, "new-webhook-secret")
    assert secret is not None and crypto.decrypt(endpoint.secret_encrypted) == secret
    assert secret.encode() not in admin.get(response["Location"]).content
    assert b"n8n" in admin.get(WEBHOOKS).content
    (audit,) = _audits("webhook.create")
    assert audit.target == f"webhook:{endpoint.pk}" and secret not in str(audit.detail)


def test_an_endpoint_form_applies_once_and_the_limit_is_said_in_words(
    acme: TenantFixture, private_ok: Any
) -> None:
    private_ok.WEBHOOK_MAX_ENDPOINTS = 1
    admin = _member(acme.tenant, "admin")
    fields = {"form_key": _key_of(admin.get(WEBHOOKS).content, "new-endpoint"),
              "url": "http://127.0.0.1:9/one"}
    first = admin.post("/console/developers/webhooks/new/", fields)
    second = admin.post("/console/developers/webhooks/new/", fields)
    assert first["Location"] == second["Location"]
    assert Endpoint.objects.filter(tenant=acme.tenant).count() == 1
    refused = _create_endpoint(admin, "http://127.0.0.1:9/two")
    assert refused.status_code == 409
    assert b"A tenant may register 1 endpoints." in refused.content
    assert Endpoint.objects.filter(tenant=acme.tenant).count() == 1
    assert len(_audits("webhook.create")) == 1


def test_the_url_check_is_the_apis(acme: TenantFixture, api: Api, settings: Any) -> None:
    """Private networks not allowed: a loopback URL is refused in the API's own words."""
    # `make test` allows them for its local receivers; production does not.
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    admin = _member(acme.tenant, "admin")
    for url in ("http://127.0.0.1:9/hook", "ftp://example.com/x", "http://user:pw@example.com/"):
        refused = _create_endpoint(admin, url)
        assert refused.status_code == 422
        problem = api.post("webhooks/endpoints", json={"url": url}, key=acme.key)
        assert problem.status == 422 and problem.json["code"] == "invalid_webhook_url"
        assert problem.json["detail"] in html.unescape(refused.content.decode())
    unknown = _create_endpoint(admin, "https://example.com/x", event_types=["nope.x"])
    assert unknown.status_code == 422
    assert b"Select a valid choice." in unknown.content
    assert not Endpoint.objects.filter(tenant=acme.tenant).exists()
    assert not _audits("webhook.create")


def test_event_types_disable_enable_rotate_and_test(
    acme: TenantFixture, receiver: Receiver
) -> None:
    admin = _member(acme.tenant, "owner")
    _create_endpoint(admin, receiver.url)
    endpoint = Endpoint.objects.get(tenant=acme.tenant)
    base = f"/console/developers/webhooks/{endpoint.pk}/"
    first_secret = crypto.decrypt(endpoint.secret_encrypted)

    # Event types: chosen from the known ones.
    page = admin.get(base)
    fields = {"form_key": _key_of(page.content, "endpoint-types"),
              "event_types": ["order.refunded", "grant.created"]}
    assert admin.post(base + "event-types/", fields).status_code == 302
    admin.post(base + "event-types/", fields)
    endpoint.refresh_from_db()
    assert endpoint.event_types == ["order.refunded", "grant.created"]
    assert len(_audits("webhook.update")) == 1

    # Disable: confirmed first; enable: at once.
    page = admin.get(base)
    fields = {"form_key": _key_of(page.content, "endpoint-active"), "is_active": ""}
    asked = admin.post(base + "active/", fields)
    assert asked.status_code == 200 and b"Disable the endpoint" in asked.content
    endpoint.refresh_from_db()
    assert endpoint.is_active
    assert admin.post(base + "active/", {**fields, "confirmed": "on"}).status_code == 302
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    # A test event to a disabled endpoint is refused in words.
    page = admin.get(base)
    refused = admin.post(base + "test/", {"form_key": _key_of(page.content, "test-endpoint")})
    assert refused.status_code == 409
    assert b"This endpoint is disabled: enable it before sending a test event." in refused.content
    assert not Event.objects.filter(tenant=acme.tenant).exists()
    fields = {"form_key": _key_of(page.content, "endpoint-active"), "is_active": "on"}
    assert admin.post(base + "active/", fields).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.is_active
    assert len(_audits("webhook.disable")) == 1 and len(_audits("webhook.enable")) == 1

    # Rotate: confirmed first; the new secret shown once; both sign for 24 hours.
    page = admin.get(base)
    fields = {"form_key": _key_of(page.content, "rotate-secret")}
    assert admin.post(base + "rotate/", fields).status_code == 200
    endpoint.refresh_from_db()
    assert crypto.decrypt(endpoint.secret_encrypted) == first_secret
    rotated = admin.post(base + "rotate/", {**fields, "confirmed": "on"}, follow=True)
    new_secret = _shown_secret(rotated.content, "new-webhook-secret")
    endpoint.refresh_from_db()
    assert new_secret and crypto.decrypt(endpoint.secret_encrypted) == new_secret != first_secret
    # Confirmed twice (a resent form): rotated once, the first secret still the previous one.
    again = admin.post(base + "rotate/", {**fields, "confirmed": "on"}, follow=True)
    assert b"This form was already sent" in again.content
    endpoint.refresh_from_db()
    assert crypto.decrypt(endpoint.secret_encrypted) == new_secret
    assert crypto.decrypt(endpoint.previous_secret_encrypted) == first_secret
    assert endpoint.previous_secret_expires_at is not None
    assert len(_audits("webhook.rotate")) == 1

    # Test: one webhook.test event, delivered to the receiver, signed with both secrets.
    page = admin.get(base)
    fields = {"form_key": _key_of(page.content, "test-endpoint")}
    admin.post(base + "test/", fields)
    admin.post(base + "test/", fields)
    (event,) = Event.objects.filter(tenant=acme.tenant, type="webhook.test")
    drain()
    (received,) = receiver.wait_for(1)
    for secret in (new_secret, first_secret):
        Webhook(secret).verify(received.body, received.headers)
    assert received.headers["webhook-id"] == event.pk
    assert len(_audits("webhook.test")) == 1


def test_the_delivery_log_shows_each_attempt_and_redelivers(
    acme: TenantFixture, receiver: Receiver
) -> None:
    endpoint, _secret = webhook_services.endpoint_create(
        tenant_id=acme.tenant.pk, url=receiver.url, headers={"X-Hook-Token": "hush-hush-value"}
    )
    receiver.script = [Reply(status=503, headers={"Retry-After": "0", "X-Receiver": "busy"},
                             body=b"try later")]
    event = webhook_services.endpoint_test(endpoint=endpoint)
    drain()
    receiver.wait_for(2)
    delivery = Delivery.objects.get(event=event)
    assert delivery.status == "succeeded" and delivery.attempts == 2

    admin = _member(acme.tenant, "admin")
    log = admin.get(f"/console/developers/webhooks/{endpoint.pk}/").content.decode()
    assert f"/console/developers/deliveries/{delivery.pk}/" in log
    page = admin.get(f"/console/developers/deliveries/{delivery.pk}/")
    text = html.unescape(page.content.decode())
    failed, succeeded = (
        DeliveryAttempt.objects.filter(delivery=delivery).order_by("attempted_at", "id")
    )
    # The request as sent: URL, the signature headers, the custom header masked; the body.
    assert f"POST {receiver.url}" in text
    assert "webhook-signature" in text and event.pk in text
    assert "X-Hook-Token" in text and "hush-hush-value" not in text
    assert failed.request_headers["X-Hook-Token"] == "••••"
    assert failed.request_headers["Content-Type"] == "application/json"
    assert '"type":"webhook.test"' in text
    # The answers: status, headers, body excerpt.
    assert ["X-Receiver", "busy"] in failed.response_headers
    assert "HTTP 503" in text and "try later" in text and "busy" in text
    assert succeeded.status_code == 200 and "HTTP 200" in text

    # Redeliver: a new delivery of the same event, with the same webhook-id.
    fields = {"form_key": _key_of(page.content, "redeliver")}
    url = f"/console/developers/deliveries/{delivery.pk}/redeliver/"
    assert admin.post(url, fields).status_code == 302
    admin.post(url, fields)
    deliveries = Delivery.objects.filter(event=event).order_by("created_at")
    assert deliveries.count() == 2
    drain()
    received = receiver.wait_for(3)
    assert received[2].headers["webhook-id"] == event.pk
    (audit,) = _audits("delivery.redeliver")
    assert audit.detail["new_delivery_id"] == str(deliveries.exclude(pk=delivery.pk).get().pk)

    # A disabled endpoint: the redelivery is refused in words, nothing queued.
    webhook_services.endpoint_update(endpoint=endpoint, is_active=False)
    page = admin.get(f"/console/developers/deliveries/{delivery.pk}/")
    refused = admin.post(url, {"form_key": _key_of(page.content, "redeliver")})
    assert refused.status_code == 409
    assert b"enable it before sending the event again" in refused.content
    assert Delivery.objects.filter(event=event).count() == 2


def test_the_delivery_log_filters_and_pages_newest_first(
    acme: TenantFixture, private_ok: Any
) -> None:
    endpoint, _secret = webhook_services.endpoint_create(
        tenant_id=acme.tenant.pk, url="http://127.0.0.1:9/hook"
    )
    events = [webhook_services.endpoint_test(endpoint=endpoint) for _ in range(30)]
    deliveries = {d.event_id: d for d in Delivery.objects.filter(endpoint=endpoint)}
    start = timezone.now() - timedelta(hours=1)
    for index, event in enumerate(events):  # one transaction: one now(); spread them out
        Delivery.objects.filter(pk=deliveries[event.pk].pk).update(
            status="failed" if index % 3 == 0 else "succeeded",
            created_at=start + timedelta(seconds=index),
        )
    Event.objects.filter(pk=events[-1].pk).update(type="order.created")
    admin = _member(acme.tenant, "admin")
    base = f"/console/developers/webhooks/{endpoint.pk}/"

    def shown(html: bytes) -> list[str]:
        return re.findall(r"/console/developers/deliveries/([0-9a-f-]{36})/", html.decode())

    first = admin.get(base)
    ids = shown(first.content)
    assert len(ids) == 25 and ids[0] == str(deliveries[events[-1].pk].pk)
    cursor = re.search(r'cursor=([^"&]+)"', first.content.decode())
    assert cursor
    rest = shown(admin.get(f"{base}?cursor={cursor.group(1)}").content)
    assert len(rest) == 5 and not set(rest) & set(ids)
    failed = shown(admin.get(f"{base}?status=failed").content)
    assert len(failed) == 10
    typed = shown(admin.get(f"{base}?event_type=order.created").content)
    assert typed == [str(deliveries[events[-1].pk].pk)]
    # A cursor this list did not issue, an unknown status: the first page, never a 500.
    assert admin.get(f"{base}?cursor=garbage").status_code == 200
    assert admin.get(f"{base}?status=nope").status_code == 200


def test_malformed_posts_answer_in_words_never_a_500(
    acme: TenantFixture, private_ok: Any
) -> None:
    key, _raw = make_key(acme.tenant, name="kept")
    endpoint, _secret = webhook_services.endpoint_create(
        tenant_id=acme.tenant.pk, url="http://127.0.0.1:9/hook"
    )
    delivery = Delivery.objects.get(event=webhook_services.endpoint_test(endpoint=endpoint))
    admin = _member(acme.tenant, "admin")
    urls = [
        "/console/developers/keys/new/",
        f"/console/developers/keys/{key.pk}/revoke/",
        "/console/developers/webhooks/new/",
        f"/console/developers/webhooks/{endpoint.pk}/event-types/",
        f"/console/developers/webhooks/{endpoint.pk}/active/",
        f"/console/developers/webhooks/{endpoint.pk}/rotate/",
        f"/console/developers/webhooks/{endpoint.pk}/test/",
        f"/console/developers/deliveries/{delivery.pk}/redeliver/",
    ]
    garbage = {"form_key": "<script>", "scopes": ["root"], "event_types": ["x" * 300],
               "url": "\x00", "expires_at": "tomorrow", "confirmed": "maybe"}
    for url in urls:
        for fields in ({}, garbage):
            response = admin.post(url, fields)
            assert response.status_code == 422, (url, fields, response.status_code)
            said = b"This form is out of date: reload the page." if fields else (
                b"This field is required."
            )
            assert said in response.content, url
    key.refresh_from_db()
    endpoint.refresh_from_db()
    assert key.revoked_at is None and endpoint.is_active and endpoint.event_types == []
    assert Delivery.objects.filter(endpoint=endpoint).count() == 1
    assert not AuditEntry.objects.filter(tenant=acme.tenant).exists()
    # Get-only pages refuse other methods; unknown ids are a 404 page.
    assert admin.get("/console/developers/keys/new/").status_code == 405
    assert admin.get("/console/developers/webhooks/not-a-uuid/").status_code == 404
