from django.apps import AppConfig


class BillableConfig(AppConfig):
    name = "billable"
    verbose_name = "Billing engine (tenant schema)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: apps.py is imported before the models may be.
        from billable.selectors.alerts import alert_rule_entries
        from tenants.resolution import register_tenant_entry_field

        # A key's cached entry carries its tenant's active alert rules: a spend reads them
        # without a query.
        register_tenant_entry_field("alert_rules", alert_rule_entries)
