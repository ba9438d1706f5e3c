"""Helpers shared by the tests; the fixtures built on them live in tests/conftest.py.

No test module imports another test module or a conftest: what several of them use lives here.

- api: the HTTP helper over Django's test client, and `assert_problem`
- tenants: committed tenants made and dropped by tests, API keys
- billing: grants and credits through the real services, the ledger invariant
- signals: capturing the billing signals a service sends
- concurrency: requests released together from real threads
- processes: the production server, the webhook worker and other child processes
- servers: HTTP servers in threads of the test process (the project, a webhook receiver)
- webhooks: endpoints, draining the outbox in-process
- deploy: readers of the deployment files (compose, systemd units, env.example)
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout
