from django.apps import AppConfig

# The module, not the class: Django takes a config class found in this module (AdminConfig says
# `default = True`) for `billing_platform.operations`' own config.
from django.contrib.admin import apps as admin_apps


class OperationsConfig(AppConfig):
    """What the operator runs across the apps: onboarding, sweeps, the worker, export, purge."""

    name = "billing_platform.operations"
    label = "operations"
    verbose_name = "Operations"


class PlatformAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the operators' site (failed logins limited) as `admin.site`."""

    default = False  # not a config of `billing_platform.operations`, which lists it by path
    default_site = "billing_platform.operations.admin_site.PlatformAdminSite"
