from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants and API keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # In ready(), as Django asks: registering the checks needs the app registry.
        from django.db.models.signals import post_migrate

        from tenants import checks  # noqa: F401  (registers the deployment checks)
        from tenants.cluster import manage_public_tables_after_migrate

        # On a Citus cluster, the public schema's tables become Citus-managed after each
        # migration of it (tenants/cluster.py); on plain PostgreSQL this does nothing.
        post_migrate.connect(
            manage_public_tables_after_migrate, sender=self, dispatch_uid="citus_public_tables"
        )
