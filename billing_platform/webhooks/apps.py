from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "billing_platform.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: apps.py is imported before the models may be.
        from billing_platform.webhooks import fanout, selectors
        from tenants.resolution import register_tenant_entry_field

        fanout.connect()
        # A key's cached entry carries its tenant's active subscriptions: fan-out needs no SQL.
        register_tenant_entry_field(
            "webhooks", lambda tenant: selectors.active_subscriptions(tenant.pk)
        )
