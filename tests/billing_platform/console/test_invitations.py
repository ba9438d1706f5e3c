"""Invitations: from the operator's command and from an owner's team page; accepting them."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from billing_platform.console import selectors
from billing_platform.console.models import AuditEntry, Invitation, Membership
from tests.support.console import PASSWORD, form_key, make_member, sign_in, signed_in_client
from tests.support.tenants import TenantFixture, fresh_tenant

NEW_PASSWORD = "amber-violin-orchard-3"


def _link(text: str) -> str:
    found = re.search(r"https?://[^\s<\"]+/console/invitations/[A-Za-z0-9_-]+/", text)
    assert found, text
    return found.group(0)


def _path(link: str) -> str:
    return link[link.index("/console/") :]


def _operator_invites(slug: str, email: str, *args: str) -> str:
    out = StringIO()
    call_command("console_invite", slug, email, *args, stdout=out)
    return out.getvalue()


def test_the_operator_invites_the_first_owner_who_joins_with_a_password(
    acme: TenantFixture,
) -> None:
    printed = _operator_invites("acme", " First@Example.com ")
    link = _link(printed)
    assert "shown only now" in printed and link.startswith("http://127.0.0.1:8000/console/")
    invitation = Invitation.objects.get()
    assert (invitation.email, invitation.role, invitation.invited_by) == (
        "first@example.com",
        "owner",
        None,
    )
    # Only a hash of the token is kept.
    assert link.rstrip("/").rsplit("/", 1)[1] not in invitation.token_hash
    client = Client()

    page = client.get(_path(link))
    assert page.status_code == 200 and b"Join Acme" in page.content
    response = client.post(_path(link), {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD})

    assert response.status_code == 302 and response["Location"] == "/console/"
    user = User.objects.get(username="first@example.com")
    assert user.email == "first@example.com" and user.check_password(NEW_PASSWORD)
    assert not user.is_staff  # the console's people never reach the operators' admin
    assert Membership.objects.get(user=user).role == "owner"
    assert client.get("/console/team/").status_code == 200  # signed in, as owner
    actions = [e.action for e in AuditEntry.objects.order_by("id")]
    assert actions == ["invitation.created", "invitation.accepted"]
    assert AuditEntry.objects.get(action="invitation.created").actor == "operator"
    # The link works once.
    again = Client().get(_path(link))
    assert again.status_code == 404 and b"This link does not work" in again.content


def test_the_command_refuses_an_unknown_tenant_or_a_bad_email(acme: TenantFixture) -> None:
    with pytest.raises(CommandError, match="No tenant has the slug"):
        _operator_invites("nobody", "a@example.com")
    with pytest.raises(CommandError, match=r"validation_error: That is not an email address\."):
        _operator_invites("acme", "not-an-email")
    assert not Invitation.objects.exists()


def test_a_weak_or_mismatched_password_is_refused_and_the_link_still_works(
    acme: TenantFixture,
) -> None:
    path = _path(_link(_operator_invites("acme", "new@example.com", "--role", "viewer")))
    client = Client()

    weak = client.post(path, {"password": "12345678", "password_again": "12345678"})
    mismatched = client.post(path, {"password": NEW_PASSWORD, "password_again": "other-1"})

    assert weak.status_code == mismatched.status_code == 200
    assert "This password is too common." in weak.content.decode()
    assert "The two passwords differ." in mismatched.content.decode()
    assert not User.objects.filter(username="new@example.com").exists()
    ok = client.post(path, {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert ok.status_code == 302
    assert Membership.objects.get(user__username="new@example.com").role == "viewer"


def test_an_expired_invitation_does_not_work(acme: TenantFixture) -> None:
    path = _path(_link(_operator_invites("acme", "late@example.com")))
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = Client().post(path, {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD})

    assert response.status_code == 404
    assert not User.objects.filter(username="late@example.com").exists()


def test_an_owner_invites_from_the_team_page_and_the_mail_carries_the_link(
    acme: TenantFixture, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.EMAIL_CONFIGURED = True
    make_member(acme.tenant, "owner@example.com", "owner")
    owner = signed_in_client("owner@example.com")
    key = form_key(owner.get("/console/team/").content)

    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post(
            "/console/team/", {"form_key": key, "email": "Sup@Example.com", "role": "support"}
        )
    replay = owner.post(
        "/console/team/", {"form_key": key, "email": "sup@example.com", "role": "support"}
    )

    assert response.status_code == 200
    shown = _link(response.content.decode())
    assert "Shown only this once, and sent by mail" in response.content.decode()
    (message,) = mail.outbox
    assert message.to == ["sup@example.com"] and _link(message.body) == shown
    # Sent twice (a reload), the form invites once and does not show the link again.
    assert replay.status_code == 302
    assert Invitation.objects.count() == 1
    assert AuditEntry.objects.filter(action="invitation.created").count() == 1
    page = owner.get(replay["Location"]).content.decode()
    assert "already sent" in page and "/console/invitations/" not in page
    # The invited person has an account by now (another team's): they sign in to accept.
    User.objects.create_user("sup@example.com", "sup@example.com", PASSWORD)
    visitor = Client()
    page = visitor.get(_path(shown))
    assert b"An account with this email exists" in page.content
    refused = visitor.post(_path(shown))
    assert refused.status_code == 403
    assert sign_in(visitor, "sup@example.com", PASSWORD).status_code == 302
    assert visitor.post(_path(shown)).status_code == 302
    assert Membership.objects.get(user__username="sup@example.com").role == "support"


def test_inviting_a_member_again_is_refused_in_plain_words(acme: TenantFixture) -> None:
    make_member(acme.tenant, "owner@example.com", "owner")
    make_member(acme.tenant, "ann@example.com", "viewer")
    owner = signed_in_client("owner@example.com")
    key = form_key(owner.get("/console/team/").content)

    response = owner.post(
        "/console/team/", {"form_key": key, "email": "ann@example.com", "role": "admin"}
    )

    assert response.status_code == 409
    assert "ann@example.com is already a member of Acme." in response.content.decode()
    assert not Invitation.objects.exists()


def test_owners_read_the_audit_log_newest_first(acme: TenantFixture, globex: TenantFixture) -> None:
    _operator_invites("acme", "a@example.com")
    _operator_invites("globex", "b@example.com")
    _operator_invites("acme", "c@example.com")

    page = selectors.audit_entries(tenant=acme.tenant, limit=1)
    rest = selectors.audit_entries(tenant=acme.tenant, limit=5, cursor=page.next_cursor)

    assert [e.target for e in page.items + rest.items] == [
        "email:c@example.com",
        "email:a@example.com",
    ]
    assert rest.next_cursor is None
    make_member(acme.tenant, "owner@example.com", "owner")
    team = signed_in_client("owner@example.com").get("/console/team/").content.decode()
    assert "email:c@example.com" in team and "email:b@example.com" not in team


def test_deleting_a_tenant_deletes_its_team_and_audit_log_but_not_the_accounts(
    committed: None,
) -> None:
    with fresh_tenant("console-gone") as fresh:
        slug = fresh.tenant.slug
        _operator_invites(slug, "gone@example.com")
        user = make_member(fresh.tenant, "gone@example.com", "owner")
        try:
            call_command("delete_tenant", slug, "--confirm", slug, stdout=StringIO())

            assert not Membership.objects.filter(user=user).exists()
            assert not Invitation.objects.filter(email="gone@example.com").exists()
            assert not AuditEntry.objects.filter(target="email:gone@example.com").exists()
            assert User.objects.filter(pk=user.pk).exists()
        finally:
            user.delete()
