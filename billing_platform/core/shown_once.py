"""Secrets shown once, handed from a POST to the page it redirects to.

A form that creates a secret (in the operators' admin: onboarding's first key, a new tenant key;
in the console: a new key, a webhook endpoint's signing secret) answers with a redirect
(Post/Redirect/Get), so reloading the result page never submits the form again. The secret waits
in the person's session, encrypted (`billing_platform.core.crypto`), under the object it belongs
to; the result page takes it out as it renders, so a reload or a second visit finds nothing.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from django.http import HttpRequest

from billing_platform.core import crypto

_SESSION_KEY = "billable.once"


def keep_once(request: HttpRequest, *, kind: str, object_id: object, secret: str) -> None:
    """Hold `secret` for the next page that asks for this object."""
    pending: dict[str, str] = dict(request.session.get(_SESSION_KEY) or {})
    pending[f"{kind}:{object_id}"] = crypto.encrypt(secret)
    request.session[_SESSION_KEY] = pending


def take_once(request: HttpRequest, *, kind: str, object_id: object) -> str | None:
    """The secret held for this object, removed from the session; None if none is held."""
    pending: dict[str, str] = dict(request.session.get(_SESSION_KEY) or {})
    token = pending.pop(f"{kind}:{object_id}", None)
    if token is None:
        return None
    if pending:
        request.session[_SESSION_KEY] = pending
    else:
        del request.session[_SESSION_KEY]
    try:
        return crypto.decrypt(token)
    except InvalidToken:  # encrypted with a key since retired: as good as gone
        return None
