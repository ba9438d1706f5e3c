"""The database backend: django-tenants' PostgreSQL backend with a health check that sends nothing.

`ENGINE = "billing_platform.core.postgresql"`; the wrapper is in `base.py`, where Django looks.
"""
