"""One benchmark run: the database, the platform key, the server and the shared tenant.

Built lazily, so `make bench NAME=routing` sets up only what routing needs; stopped at the end.
A run with a baseline (BENCH_BASELINE) has two sides, each with its own tree, database, cache
key prefix, server and tenant: the baseline commit (A) and the current code (B).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from bench import baseline, fixtures, harness

CUSTOMERS = 1000


class Side:
    """One version of the code in a run: its tree, database, server and funded tenant."""

    def __init__(self, *, name: str, root: Path, url: str, env: dict[str, str],
                 platform_key: str, commit: str | None = None, ref: str | None = None) -> None:
        self.name = name
        self.root = root
        self.url = url
        self.database = harness.pg_params(url)["dbname"]
        self.env = env
        self.platform_key = platform_key
        self.commit = commit
        self.ref = ref
        self._stack = contextlib.ExitStack()
        self._server: harness.Server | None = None
        self._tenant: fixtures.Tenant | None = None
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    @classmethod
    def current(cls) -> Side:
        """This checkout, with Django set up in this process against its database."""
        env = harness.prepare()
        return cls(name="current", root=harness.ROOT, url=harness.bench_database_url(), env=env,
                   platform_key=harness.platform_key())

    @classmethod
    def baseline(cls, ref: str) -> Side:
        """The commit `ref` in its worktree, against its own database, migrated by its code."""
        checkout = baseline.checkout(ref)
        database = f"{harness.DB_NAME}_base"
        url = harness.bench_database_url(database)
        harness.say(f"baseline {ref} = {checkout.commit[:10]} in "
                    f"{checkout.root.relative_to(harness.ROOT)}; recreating database {database}")
        harness.recreate_database(url)
        env = harness.server_env(url, root=checkout.root,
                                 cache_prefix=f"{harness.CACHE_PREFIX}-base")
        harness.check_imports(checkout.root, env)
        harness.migrate(checkout.root, env)
        harness.clear_cache_prefix(env["CACHE_KEY_PREFIX"])
        made = subprocess.run(
            [harness.PYTHON, str(checkout.root / "manage.py"), "create_platform_key",
             "--name", f"bench-{time.time_ns()}"],
            env=env, cwd=checkout.root, capture_output=True, text=True, check=False,
        )
        if made.returncode != 0 or not made.stdout.strip():
            raise SystemExit(f"the baseline made no platform key:\n{made.stderr[-2000:]}")
        return cls(name="baseline", root=checkout.root, url=url, env=env,
                   platform_key=made.stdout.strip().splitlines()[-1], commit=checkout.commit,
                   ref=ref)

    @property
    def label(self) -> str:
        return "current" if self.commit is None else f"baseline {self.commit[:7]}"

    @property
    def server(self) -> harness.Server:
        """The production server as deploy/ configures it (4 sync workers on 2 cores)."""
        if self._server is None:
            self._server = self._stack.enter_context(
                harness.production_server(self.env, root=self.root)
            )
            harness.say(f"{self.name} server: {self._server.describe()} on "
                        f"{self._server.base_url}")
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
        """Run one statement on this side's database (autocommit) and return its rows."""
        if self._conn is None or self._conn.closed:
            self._conn = harness.connect(self.url)
        with self._conn.cursor() as cursor:
            cursor.execute(query, params or None)
            return list(cursor.fetchall()) if cursor.description else []

    def close(self) -> None:
        self._stack.close()
        if self._conn is not None:
            self._conn.close()


class Context:
    def __init__(self, baseline_ref: str | None = None) -> None:
        self.current = Side.current()
        self.baseline = Side.baseline(baseline_ref) if baseline_ref else None
        self.env = self.current.env
        self.url = self.current.url
        self.platform_key = self.current.platform_key

    @property
    def sides(self) -> list[Side]:
        """The sides of the run, baseline (A) first."""
        return [self.current] if self.baseline is None else [self.baseline, self.current]

    @property
    def server(self) -> harness.Server:
        return self.current.server

    @property
    def tenant(self) -> fixtures.Tenant:
        return self.current.tenant

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.current.sql(query, params)

    def baseline_info(self) -> dict[str, Any] | None:
        """What the results record about the baseline side."""
        if self.baseline is None:
            return None
        return {"ref": self.baseline.ref, "commit": self.baseline.commit,
                "worktree": str(self.baseline.root.relative_to(harness.ROOT)),
                "database": self.baseline.database,
                "cache_key_prefix": self.baseline.env["CACHE_KEY_PREFIX"]}

    def close(self) -> None:
        for side in self.sides:
            side.close()
        harness.stop_all()
