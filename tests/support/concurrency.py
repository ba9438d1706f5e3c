"""Races against the real database: each call in its own thread, client and connection, all
released together by a `threading.Barrier`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.test import Client

from billable.models import Offer
from tenants.models import Tenant
from tests.support.api import Api, Response

# PostgreSQL allows 100 connections; every thread holds one while it runs.
MAX_THREADS = 64
JOIN_TIMEOUT = 120.0


@dataclass
class ConcTenant:
    tenant: Tenant
    key: str
    offers: dict[str, Offer]


Call = Callable[[Api], Response]


def hammer(calls: Sequence[Call]) -> list[Response]:
    """Run each call in its own thread (own client, own connection), released together."""
    assert len(calls) <= MAX_THREADS
    barrier = threading.Barrier(len(calls))
    results: list[Response | None] = [None] * len(calls)
    failures: list[BaseException] = []

    def worker(index: int, call: Call) -> None:
        try:
            api = Api(Client())
            barrier.wait(timeout=30)
            results[index] = call(api)
        except BaseException as exc:  # reported to the test below
            failures.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=worker, args=(i, call), name=f"conc-{i}")
        for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a request thread hung"
    assert not failures, failures
    return [result for result in results if result is not None]


def poster(conc: ConcTenant, path: str, payload: dict[str, Any]) -> Call:
    def call(api: Api) -> Response:
        return api.post(path, json=payload, key=conc.key)

    return call


def statuses(responses: Sequence[Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status] = counts.get(response.status, 0) + 1
    return counts
