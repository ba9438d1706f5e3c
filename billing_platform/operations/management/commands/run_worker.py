from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from billing_platform.core.listen import Listener
from billing_platform.core.metrics import mark_process, process_exiting
from billing_platform.operations.lifecycle import tenants_purge_due
from billing_platform.operations.services import platform_sweep
from tenants.services import SPARE_CLAIMED_CHANNEL, spare_pool_refill

logger = logging.getLogger("billable.worker")


class Command(BaseCommand):
    help = (
        "Background work beside the server: keep the spare-schema pool full (refilled at once "
        "when onboarding claims a spare, on NOTIFY), run the billing sweep every minute and "
        "purge tenants whose deletion is due."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=5.0)
        parser.add_argument("--sweep-interval", type=float, default=60.0)
        parser.add_argument("--once", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if not options["once"]:
            mark_process("worker")
        listener = Listener(SPARE_CLAIMED_CHANNEL)
        listener.wait(0)  # LISTEN before the first refill, so no claim falls between
        try:
            self._loop(listener, options)
        finally:
            listener.close()
            process_exiting()

    def _loop(self, listener: Listener, options: dict[str, Any]) -> None:
        next_sweep = 0.0
        swept = False
        while not self.stopping:
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + options["sweep_interval"]
                try:
                    totals = platform_sweep()
                    # Every minute: said at INFO the first time and whenever it changed
                    # something, at DEBUG otherwise (a line a minute says nothing).
                    busy = any(value for name, value in totals.items() if name != "tenants")
                    logger.log(logging.INFO if busy or not swept else logging.DEBUG,
                               "sweep: %s", totals)
                    swept = True
                except Exception:
                    logger.exception("sweep failed")
                finally:
                    close_old_connections()
                try:
                    purged = tenants_purge_due()
                    if purged:
                        logger.info("purged deleted tenants: %s", ", ".join(purged))
                except Exception:
                    logger.exception("tenant purge failed")
                finally:
                    close_old_connections()
            try:
                built = spare_pool_refill()
                if built:
                    logger.info("built %d spare schemas", built)
            except Exception:
                logger.exception("spare pool refill failed")
            finally:
                close_old_connections()
            if options["once"]:
                return
            # Woken at once by a claim's NOTIFY; the interval is the fallback.
            deadline = time.monotonic() + options["interval"]
            while not self.stopping and time.monotonic() < deadline:
                if listener.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
                    break
