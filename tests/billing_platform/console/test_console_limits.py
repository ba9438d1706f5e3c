"""The console's sign-in locks lifted by `manage.py console_unlock`, and password-reset requests
limited per email and per client address."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client

from tests.support.console import PASSWORD, make_member, sign_in
from tests.support.tenants import TenantFixture

RESET = "/console/password-reset/"


def _locked(client: Client, email: str) -> bool:
    return "Too many failed sign-ins" in sign_in(client, email).content.decode()


def test_console_unlock_lifts_an_accounts_lock(acme: TenantFixture) -> None:
    make_member(acme.tenant, "ann@example.com")
    client = Client()
    for _ in range(5):
        sign_in(client, "ann@example.com", "not-it")
    assert _locked(client, "ann@example.com")

    out = StringIO()
    call_command("console_unlock", "ANN@example.com", stdout=out)

    assert out.getvalue().strip() == "Unlocked account ANN@example.com."
    assert sign_in(client, "ann@example.com", PASSWORD).status_code == 302
    # The admin's counters are another group: its command does not unlock the console's.
    for _ in range(5):
        sign_in(Client(), "ann@example.com", "not-it")
    call_command("unlock_admin_login", "--username", "ann@example.com", stdout=StringIO())
    assert _locked(Client(), "ann@example.com")


def test_console_unlock_lifts_an_addresss_lock(acme: TenantFixture, settings: Any) -> None:
    settings.CONSOLE_LOGIN_IP_FAILURE_LIMIT = "3/h"
    make_member(acme.tenant, "ann@example.com")
    client = Client(REMOTE_ADDR="198.51.100.7")
    for n in range(3):
        sign_in(client, f"nobody{n}@example.com", "not-it")
    assert _locked(client, "ann@example.com")

    call_command("console_unlock", "--ip", "198.51.100.7", stdout=StringIO())

    assert sign_in(client, "ann@example.com", PASSWORD).status_code == 302


def test_console_unlock_needs_an_email_or_an_address(db: None) -> None:
    with pytest.raises(CommandError, match="give an EMAIL, --ip or both"):
        call_command("console_unlock", stdout=StringIO())


def test_reset_requests_are_limited_per_email(acme: TenantFixture, settings: Any) -> None:
    settings.EMAIL_CONFIGURED = True
    make_member(acme.tenant, "ann@example.com")
    for n in range(3):
        sent = Client(REMOTE_ADDR=f"198.51.100.{n + 1}").post(RESET, {"email": "ann@example.com"})
        assert sent.status_code == 302
    assert len(mail.outbox) == 3

    # From yet another address, in another case: the email's limit holds.
    refused = Client(REMOTE_ADDR="198.51.100.9").post(RESET, {"email": "Ann@Example.com"})

    assert refused.status_code == 429
    assert "Too many reset requests for this email or from this address" in (
        refused.content.decode()
    )
    assert len(mail.outbox) == 3
    # An email nobody has is counted the same way, and answered alike.
    for _ in range(3):
        Client().post(RESET, {"email": "ghost@example.com"})
    ghost = Client(REMOTE_ADDR="198.51.100.10").post(RESET, {"email": "ghost@example.com"})
    assert ghost.status_code == 429


def test_reset_requests_are_limited_per_address(acme: TenantFixture, settings: Any) -> None:
    settings.EMAIL_CONFIGURED = True
    settings.CONSOLE_PASSWORD_RESET_IP_LIMIT = "2/h"
    make_member(acme.tenant, "ann@example.com")
    client = Client(REMOTE_ADDR="203.0.113.50")
    assert client.post(RESET, {"email": "a@example.com"}).status_code == 302
    assert client.post(RESET, {"email": "b@example.com"}).status_code == 302

    refused = client.post(RESET, {"email": "ann@example.com"})

    assert refused.status_code == 429 and mail.outbox == []
    other = Client(REMOTE_ADDR="203.0.113.51").post(RESET, {"email": "ann@example.com"})
    assert other.status_code == 302 and len(mail.outbox) == 1
