"""Fixtures of the service tests (helpers live in helpers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from billable.models import Customer
from billable.selectors import CustomerRef
from billable.services.customers import customer_ensure


@pytest.fixture
def bob(in_acme: Any) -> Customer:
    return customer_ensure(CustomerRef(external_id="bob"))
