"""Django signals of the billing engine (docs/signals.md lists each with its arguments).

They are sent inside the service's transaction: a receiver that writes to the database (the
webhook outbox) commits or rolls back with the change; a receiver that talks to the outside world
must wait for `transaction.on_commit`.

A receiver that can tell beforehand whether it would act for the schema in use (the webhook
fan-out: only when an endpoint subscribes to the event) connects with `connect_conditional`;
`may_act` then lets a service skip what sending would need (a transaction, the data to send)
when no receiver would act. Any other receiver always counts as acting.
"""

from collections.abc import Callable

from django.dispatch import Signal

order_created = Signal()
order_confirmed = Signal()
order_cancelled = Signal()
order_refunded = Signal()
quota_consumed = Signal()
quota_low = Signal()
quota_depleted = Signal()
quota_threshold_reached = Signal()
trial_activated = Signal()
grant_created = Signal()
product_deactivated = Signal()
transaction_created = Signal()
referral_attached = Signal()
referral_rewarded = Signal()
customer_created = Signal()
customer_merged = Signal()
customer_erased = Signal()
batch_expired = Signal()
batch_revoked = Signal()
adjustment_created = Signal()
hold_created = Signal()
hold_committed = Signal()
hold_released = Signal()
subscription_created = Signal()
subscription_renewal_due = Signal()
subscription_renewed = Signal()
subscription_plan_changed = Signal()
subscription_paused = Signal()
subscription_resumed = Signal()
subscription_past_due = Signal()
subscription_cancelled = Signal()
subscription_expired = Signal()
allowance_reset = Signal()


_conditions: dict[tuple[int, str], Callable[[], bool]] = {}


def connect_conditional(
    signal: Signal, receiver: Callable[..., None], *, dispatch_uid: str, acts: Callable[[], bool]
) -> None:
    """Connect `receiver`, which acts only when `acts()` is true at the time of sending."""
    signal.connect(receiver, dispatch_uid=dispatch_uid, weak=False)
    _conditions[(id(signal), dispatch_uid)] = acts


def may_act(*sent: Signal) -> bool:
    """Whether sending any of these signals now could make a receiver act."""
    for signal in sent:
        if not signal.has_listeners():
            continue
        for lookup_key, _receiver, _is_async in signal.receivers:
            uid = lookup_key[0]
            acts = _conditions.get((id(signal), uid)) if isinstance(uid, str) else None
            if acts is None or acts():
                return True
    return False
