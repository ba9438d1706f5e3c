"""The billing fixtures (acme schema, small catalog) for the platform tests."""

from tests.billable.conftest import alice, catalog, in_acme

__all__ = ["alice", "catalog", "in_acme"]
