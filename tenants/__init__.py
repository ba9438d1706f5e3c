"""The public schema: tenants, API keys, platform keys, onboarding and API-key auth."""
