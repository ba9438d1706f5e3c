from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants and API keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # In ready(), as Django asks: registering the checks needs the app registry.
        from tenants import checks  # noqa: F401  (registers the deployment checks)
