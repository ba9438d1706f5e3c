from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "billing_platform.console"
    label = "console"
    verbose_name = "Tenant console"
    default_auto_field = "django.db.models.BigAutoField"
