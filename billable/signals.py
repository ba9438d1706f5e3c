"""Django signals of the billing engine (docs/signals.md lists each with its arguments).

They are sent inside the service's transaction: a receiver that writes to the database (the
webhook outbox) commits or rolls back with the change; a receiver that talks to the outside world
must wait for `transaction.on_commit`.
"""

from django.dispatch import Signal

order_created = Signal()
order_confirmed = Signal()
order_cancelled = Signal()
order_refunded = Signal()
quota_consumed = Signal()
quota_low = Signal()
quota_depleted = Signal()
trial_activated = Signal()
grant_created = Signal()
product_deactivated = Signal()
transaction_created = Signal()
referral_attached = Signal()
referral_rewarded = Signal()
customer_merged = Signal()
customer_erased = Signal()
batch_expired = Signal()
hold_created = Signal()
hold_committed = Signal()
hold_released = Signal()
