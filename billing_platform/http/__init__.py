"""The request layer: what every API request goes through around the apps' endpoints.

The POST pipeline (auth → tenant → idempotency → service → answer), the middleware, the
exception handlers, the health checks and `/metrics`.
"""
