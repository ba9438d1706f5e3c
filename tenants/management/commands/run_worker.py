from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from tenants.services import spare_pool_refill

logger = logging.getLogger("billable.worker")


class Command(BaseCommand):
    help = "Background work beside the server: keep the spare-schema pool full."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=5.0)
        parser.add_argument("--once", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not self.stopping:
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
            deadline = time.monotonic() + options["interval"]
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.1)
