from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """What the operator runs across the apps: onboarding, sweeps, the worker, export, purge."""

    name = "billing_platform.operations"
    label = "operations"
    verbose_name = "Operations"
