"""The operators' admin as a staff user with chosen permissions sees it."""

from __future__ import annotations

from django.contrib.auth.models import Permission, User
from django.test import Client


def staff_client(username: str, *codenames: str) -> Client:
    """A logged-in staff user holding only the given permissions."""
    user = User.objects.create_user(
        username, f"{username}@example.com", "correct-horse-9", is_staff=True
    )
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def offered_actions(client: Client, url: str) -> set[str]:
    """The admin actions a changelist offers this client."""
    response = client.get(url)
    assert response.status_code == 200
    action_form = response.context["action_form"]  # None when no action is offered
    if action_form is None:
        return set()
    return {name for name, _label in action_form.fields["action"].choices if name}
