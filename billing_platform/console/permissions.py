"""Roles and what each may do in the console: the one table every check reads.

viewer   reads every page of its tenant (customers, balances, ledger, orders, ...)
support  also grants, adjusts and revokes for customers
admin    also the catalog, orders and developers pages (keys, webhooks), and merging or erasing a
         customer (neither can be undone)
owner    also the team (invitations, roles), the tenant's settings and the audit log
"""

from __future__ import annotations

from enum import StrEnum

from billing_platform.console.models import Role


class Action(StrEnum):
    VIEW = "view"
    CUSTOMERS_GRANT = "customers.grant"  # grant, adjust, revoke a batch
    CUSTOMERS_MERGE = "customers.merge"  # merge and erase: neither can be undone
    CATALOG_MANAGE = "catalog.manage"
    ORDERS_MANAGE = "orders.manage"
    DEVELOPERS_MANAGE = "developers.manage"
    TEAM_MANAGE = "team.manage"
    SETTINGS_EDIT = "settings.edit"
    AUDIT_READ = "audit.read"


_VIEWER = frozenset({Action.VIEW})
_SUPPORT = _VIEWER | {Action.CUSTOMERS_GRANT}
_ADMIN = _SUPPORT | {
    Action.CATALOG_MANAGE,
    Action.ORDERS_MANAGE,
    Action.DEVELOPERS_MANAGE,
    Action.CUSTOMERS_MERGE,
}
_OWNER = _ADMIN | {Action.TEAM_MANAGE, Action.SETTINGS_EDIT, Action.AUDIT_READ}

ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.VIEWER: _VIEWER,
    Role.SUPPORT: _SUPPORT,
    Role.ADMIN: _ADMIN,
    Role.OWNER: _OWNER,
}


def allowed(role: str, action: Action) -> bool:
    """Whether a member with `role` may do `action` (an unknown role may do nothing)."""
    return action in ROLE_ACTIONS.get(role, frozenset())


def granted(role: str) -> dict[str, bool]:
    """Every action as `name → allowed`, for templates (`can.customers_grant`)."""
    return {action.name.lower(): allowed(role, action) for action in Action}
