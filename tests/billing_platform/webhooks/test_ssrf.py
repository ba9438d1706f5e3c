"""User-supplied URLs: refused at registration and again at every delivery; no redirects."""

from __future__ import annotations

from typing import Any

import pytest

from billing_platform.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from tests.support.api import Api, assert_problem
from tests.support.servers import Reply, running_receiver
from tests.support.tenants import TenantFixture
from tests.support.webhooks import create_endpoint, drain

PRIVATE_URLS = [
    "http://127.0.0.1/hook",
    "http://127.0.0.2:8080/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://10.0.0.1/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://224.0.0.1/hook",
    "http://[fe80::1]/hook",
    "http://[fc00::1]/hook",
    "http://[fec0::1]/hook",  # site-local
    "http://[2002:7f00:1::]/hook",  # 6to4 around 127.0.0.1
    "http://[2002:a9fe:a9fe::]/hook",  # 6to4 around 169.254.169.254
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",  # Teredo around 127.0.0.1
    "https://localhost/hook",
    "http://localhost:5432/",
]
MALFORMED_URLS = [
    "ftp://93.184.216.34/hook",
    "file:///etc/passwd",
    "gopher://93.184.216.34/",
    "http:///no-host",
    "http://user:pass@93.184.216.34/hook",
    "http://token@93.184.216.34/hook",
    "http://93.184.216.34:99999/hook",
    "not a url",
]


@pytest.fixture
def private_off(private_ok: Any) -> Any:
    private_ok.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    return private_ok


@pytest.mark.parametrize("url", PRIVATE_URLS + MALFORMED_URLS)
def test_registration_refuses(
    api: Api, acme: TenantFixture, private_off: Any, url: str
) -> None:
    response = api.post("webhooks/endpoints", json={"url": url}, key=acme.key)
    assert_problem(response, 422, "invalid_webhook_url")
    assert not Endpoint.objects.filter(tenant=acme.tenant).exists()


@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_scheme_and_credentials_are_refused_even_on_private_networks(
    api: Api, acme: TenantFixture, private_ok: Any, url: str
) -> None:
    response = api.post("webhooks/endpoints", json={"url": url}, key=acme.key)
    assert_problem(response, 422, "invalid_webhook_url")


def test_a_public_address_is_accepted_and_a_private_patch_refused(
    api: Api, acme: TenantFixture, private_off: Any
) -> None:
    endpoint = create_endpoint(api, acme.key, "https://93.184.216.34/hook")
    patched = api.patch(
        f"webhooks/endpoints/{endpoint['id']}", json={"url": "http://10.0.0.1/"}, key=acme.key
    )
    assert_problem(patched, 422, "invalid_webhook_url")
    assert Endpoint.objects.get(pk=endpoint["id"]).url == "https://93.184.216.34/hook"


@pytest.mark.parametrize("url", [u for u in PRIVATE_URLS if "localhost" not in u] + ["LOCAL"])
def test_delivery_re_checks_the_address(
    api: Api, acme: TenantFixture, private_ok: Any, url: str
) -> None:
    with running_receiver() as receiver:
        target = {"LOCAL": f"http://localhost:{receiver.port}/hook"}.get(url, url)
        # registered while private networks were allowed (or before the name rebound) ...
        endpoint = create_endpoint(api, acme.key, target)
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        # ... and delivered once they are not
        private_ok.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
        private_ok.WEBHOOK_RETRY_SCHEDULE = []
        drain()
        assert receiver.count() == 0
    (attempt,) = DeliveryAttempt.objects.filter(delivery__endpoint_id=endpoint["id"])
    assert attempt.status_code is None
    assert attempt.error.startswith("refused:") and "not a public address" in attempt.error
    (delivery,) = Delivery.objects.filter(endpoint_id=endpoint["id"])
    assert delivery.status == "failed" and delivery.last_error == attempt.error


def test_the_loopback_receiver_is_reached_when_private_networks_are_allowed(
    api: Api, acme: TenantFixture, private_ok: Any
) -> None:
    with running_receiver() as receiver:
        endpoint = create_endpoint(api, acme.key, f"http://localhost:{receiver.port}/hook")
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        assert receiver.count() == 1


def test_redirects_are_not_followed(api: Api, acme: TenantFixture, private_ok: Any) -> None:
    private_ok.WEBHOOK_RETRY_SCHEDULE = []
    with running_receiver() as receiver, running_receiver() as elsewhere:
        receiver.script = [Reply(302, headers={"Location": elsewhere.url})]
        endpoint = create_endpoint(api, acme.key, receiver.url)
        api.post(f"webhooks/endpoints/{endpoint['id']}/test", key=acme.key)
        drain()
        assert receiver.count() == 1
        assert elsewhere.count() == 0
    (delivery,) = Delivery.objects.filter(endpoint_id=endpoint["id"])
    assert delivery.status == "failed" and delivery.last_status_code == 302
