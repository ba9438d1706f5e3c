from django.apps import AppConfig


class BillableConfig(AppConfig):
    name = "billable"
    verbose_name = "Billing engine (tenant schema)"
    default_auto_field = "django.db.models.BigAutoField"
