"""TOTP as a second factor (django-otp), and password resets by mail."""

from __future__ import annotations

import re
import time
from typing import Any

from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.support.console import PASSWORD, make_member, sign_in, signed_in_client
from tests.support.tenants import TenantFixture


def _code(device: TOTPDevice, *, offset: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + offset
    return f"{totp.token():06d}"


def _turn_on(client: Client) -> TOTPDevice:
    page = client.post("/console/account/security/", {"step": "start"})
    assert b"<svg" in page.content and b'id="totp-secret"' in page.content
    device = TOTPDevice.objects.get(confirmed=False)
    done = client.post("/console/account/security/", {"step": "confirm", "token": _code(device)})
    assert done.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    return device


def test_with_totp_on_signing_in_asks_for_a_code(acme: TenantFixture) -> None:
    make_member(acme.tenant, "ann@example.com")
    device = _turn_on(signed_in_client("ann@example.com"))
    client = Client()

    response = sign_in(client, "ann@example.com")

    assert response.status_code == 302 and response["Location"].startswith("/console/login/verify/")
    # The password alone opens nothing.
    assert client.get("/console/").status_code == 302
    bad = client.post("/console/login/verify/", {"token": "12345"})
    assert "Enter the 6 digits" in bad.content.decode()
    good = client.post("/console/login/verify/", {"token": _code(device, offset=30)})
    assert good.status_code == 302 and good["Location"] == "/console/"
    assert client.get("/console/").status_code == 200


def test_a_session_that_skipped_the_second_factor_is_signed_out(acme: TenantFixture) -> None:
    user = make_member(acme.tenant, "ann@example.com")
    TOTPDevice.objects.create(user=user, name="console", confirmed=True)
    client = Client()
    client.force_login(user)  # a session made without the code

    response = client.get("/console/")

    assert response.status_code == 302 and response["Location"] == "/console/login/"
    assert client.get("/console/").status_code == 302


def test_a_wrong_code_does_not_confirm_a_new_device(acme: TenantFixture) -> None:
    make_member(acme.tenant, "ann@example.com")
    client = signed_in_client("ann@example.com")
    client.post("/console/account/security/", {"step": "start"})
    device = TOTPDevice.objects.get()
    wrong = "000000" if _code(device) != "000000" else "111111"

    response = client.post("/console/account/security/", {"step": "confirm", "token": wrong})

    assert "That code is not right" in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed
    assert sign_in(Client(), "ann@example.com")["Location"] == "/console/"


def test_totp_is_turned_off_with_a_current_code(acme: TenantFixture) -> None:
    make_member(acme.tenant, "ann@example.com")
    client = signed_in_client("ann@example.com")
    device = _turn_on(client)

    refused = client.post("/console/account/security/", {"step": "disable", "token": "99999"})
    assert refused.status_code == 200 and TOTPDevice.objects.filter(confirmed=True).exists()
    device.refresh_from_db()
    off = client.post(
        "/console/account/security/", {"step": "disable", "token": _code(device, offset=30)}
    )
    assert off.status_code == 302
    assert not TOTPDevice.objects.exists()
    assert sign_in(Client(), "ann@example.com")["Location"] == "/console/"


def test_wrong_codes_count_as_failed_logins(acme: TenantFixture) -> None:
    make_member(acme.tenant, "ann@example.com")
    device = _turn_on(signed_in_client("ann@example.com"))
    client = Client()
    sign_in(client, "ann@example.com")
    for _ in range(5):
        client.post("/console/login/verify/", {"token": "000001"})

    response = client.post("/console/login/verify/", {"token": _code(device)})

    assert "Too many failed sign-ins" in response.content.decode()
    assert client.get("/console/").status_code == 302


def test_a_password_is_reset_by_mail_for_console_members_only(
    acme: TenantFixture, settings: Any
) -> None:
    settings.EMAIL_CONFIGURED = True
    make_member(acme.tenant, "ann@example.com")
    User.objects.create_superuser("operator", "ops@example.com", PASSWORD)
    client = Client()

    assert b"sends no mail" not in client.get("/console/password-reset/").content
    client.post("/console/password-reset/", {"email": "ops@example.com"})
    assert mail.outbox == []  # an operator's account is not reset from the console
    done = client.post("/console/password-reset/", {"email": "ANN@example.com"})

    assert done.status_code == 302 and done["Location"] == "/console/password-reset/sent/"
    (message,) = mail.outbox
    link = re.search(r"http://testserver(/console/password-reset/[^\s]+/)", message.body)
    assert link, message.body
    form = client.get(link.group(1), follow=True)
    assert form.status_code == 200 and b"Choose a new password" in form.content
    saved = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "new-lantern-harbour-8", "new_password2": "new-lantern-harbour-8"},
    )
    assert saved.status_code == 302
    assert sign_in(Client(), "ann@example.com", "new-lantern-harbour-8").status_code == 302


def test_without_mail_the_reset_page_says_so(db: None) -> None:
    assert b"sends no mail" in Client().get("/console/password-reset/").content
