"""What the engine's services and selectors return when it is more than a model.

Read by the presenters, which sit below the services and selectors that produce these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billable.models import Customer


@dataclass(frozen=True)
class IdentifyResult:
    customer: Customer
    created: bool
    trial_eligible: bool


@dataclass(frozen=True)
class MergeResult:
    target: Customer
    moved_identities: int
    moved_batches: int
    moved_orders: int
    moved_holds: int
    moved_usages: int
    moved_referrals: int


@dataclass(frozen=True)
class Balance:
    customer_id: Any
    feature: str
    can_use: bool
    remaining: int | None
    unlimited: bool
    expires_at: datetime | None
    message: str
