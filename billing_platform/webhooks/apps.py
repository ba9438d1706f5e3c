from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "billing_platform.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billing_platform.webhooks import fanout

        fanout.connect()
