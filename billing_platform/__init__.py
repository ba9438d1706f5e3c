"""Billable: the Django project package (settings, API assembly, errors, platform-wide apps)."""
