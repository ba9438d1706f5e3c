"""One benchmark run: the database, the platform key, the server and the shared tenant.

Built lazily, so `make bench NAME=routing` sets up only what routing needs; stopped at the end.
"""

from __future__ import annotations

import contextlib
from typing import Any

from bench import fixtures, harness

CUSTOMERS = 1000


class Context:
    def __init__(self) -> None:
        self.env: dict[str, str] = harness.prepare()
        self.url = harness.bench_database_url()
        self.platform_key = harness.platform_key()
        self._stack = contextlib.ExitStack()
        self._server: harness.Server | None = None
        self._tenant: fixtures.Tenant | None = None

    @property
    def server(self) -> harness.Server:
        """The production server as deploy/ configures it (4 sync workers on 2 cores)."""
        if self._server is None:
            self._server = self._stack.enter_context(harness.production_server(self.env))
            harness.say(f"server: {self._server.describe()} on {self._server.base_url}")
        return self._server

    @property
    def tenant(self) -> fixtures.Tenant:
        """A tenant with one hot customer and CUSTOMERS others, each funded."""
        if self._tenant is None:
            base = self.server.base_url
            tenant = fixtures.onboard(base, self.platform_key, "bench")
            fixtures.catalog(base, tenant)
            fixtures.fund(base, tenant, CUSTOMERS)
            self._tenant = tenant
        return self._tenant

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(query, params or [])
            return list(cursor.fetchall()) if cursor.description else []

    def close(self) -> None:
        self._stack.close()
        harness.stop_all()
