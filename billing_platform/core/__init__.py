"""The foundation: platform-wide primitives that import nothing of Billable's own packages.

Errors and their rendering, the strict JSON reader, database helpers, crypto, the caller's
identity, the typed request state, rate limits, log context, metric definitions, pagination and
shared input types. Every other package may import from here; this package imports only Django,
Ninja and third-party libraries (docs/architecture.md#layers-and-the-dependency-rule).
"""
