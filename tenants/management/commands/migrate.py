"""`migrate` is `migrate_schemas` (as in django-tenants), with its skipping of current schemas."""

from tenants.management.commands.migrate_schemas import Command

__all__ = ["Command"]
