"""Fixtures of the black-box tests: the production server over the session's test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import Server, production_server


@pytest.fixture(scope="module")
def server(django_db_setup: None) -> Iterator[Server]:
    """gunicorn (deploy/gunicorn.conf.py), 2 sync workers, production settings, plain HTTP.

    One server per module; it reaches the test database by URL, so it needs the database set up
    (`django_db_setup`) but no database access from this process.
    """
    with production_server(workers=2) as running:
        yield running
