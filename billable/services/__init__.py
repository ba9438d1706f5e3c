"""Write services of the billing engine: keyword-only, typed, one transaction each."""
