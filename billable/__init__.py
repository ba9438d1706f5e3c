"""The billing engine: one instance per tenant schema."""
