"""Tenant-schema models of the billing engine."""
