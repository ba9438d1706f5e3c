"""Per-tenant webhooks: the outbox (events, deliveries, attempts) and the delivery worker."""
