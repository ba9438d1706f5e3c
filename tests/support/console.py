"""The tenant console in tests: members made as invitations make them, signing in, form keys."""

from __future__ import annotations

import re
import time
from typing import Any

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from billing_platform.console.models import Membership
from tenants.models import Tenant

PASSWORD = "quiet-harbour-lantern-7"


def make_member(tenant: Tenant, email: str, role: str = "owner", password: str = PASSWORD) -> User:
    """An account (email as its username, as accepting an invitation makes it) in `tenant`."""
    user = User.objects.filter(username=email).first()
    if user is None:
        user = User.objects.create_user(email, email, password)
    Membership.objects.create(user=user, tenant=tenant, role=role)
    return user


def sign_in(client: Client, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    return client.post("/console/login/", {"email": email, "password": password}, **extra)


def signed_in_client(email: str, password: str = PASSWORD) -> Client:
    client = Client()
    response = sign_in(client, email, password)
    assert response.status_code == 302, response.content[:500]
    return client


def form_key(html: bytes | str) -> str:
    """The hidden idempotency key of the (first) action form on a page."""
    text = html.decode() if isinstance(html, bytes) else html
    found = re.search(r'name="form_key" value="([^"]+)"', text)
    assert found, "no form_key on the page"
    return found.group(1)


def measured(client: Client, path: str) -> tuple[int, float, int]:
    """(status, the best of five timings in seconds, the queries of one request)."""
    with CaptureQueriesContext(connection) as captured:
        status = client.get(path).status_code
    # Counted now: each request that follows starts a fresh query log.
    queries = len(captured)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        client.get(path)
        timings.append(time.perf_counter() - started)
    return status, min(timings), queries
