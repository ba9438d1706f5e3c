"""The consumer beside the sweep benchmark, in its own process (no shared interpreter lock):
`python -m bench.sweep_consumer SCHEMA CUSTOMER_ID ...` consumes one unit per call, round
robin over the customers, and prints `<epoch seconds> <milliseconds>` per consume until stopped.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> None:
    import django

    django.setup()
    from django_tenants.utils import schema_context

    from billable.models import Customer
    from billable.services.quota import quota_consume

    schema, ids = argv[0], argv[1:]
    with schema_context(schema):
        customers = list(Customer.objects.filter(pk__in=ids))
        index = 0
        while True:
            customer = customers[index % len(customers)]
            index += 1
            began = time.perf_counter()
            quota_consume(customer=customer, feature="report_generation")
            took = (time.perf_counter() - began) * 1000
            print(f"{time.time():.6f} {took:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
