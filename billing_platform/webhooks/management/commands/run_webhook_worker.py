from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from billing_platform.core.metrics import mark_process, process_exiting
from billing_platform.webhooks.worker import run


class Command(BaseCommand):
    help = "Deliver webhook events (any number of workers may run at once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="deliveries posted at once (default WEBHOOK_WORKER_THREADS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        threads = options["threads"] or settings.WEBHOOK_WORKER_THREADS
        mark_process("webhooks")
        self.stdout.write(f"webhook worker started ({threads} threads)", ending="\n")
        self.stdout.flush()
        try:
            run(stop, poll_seconds=options["poll"], threads=threads)
        finally:
            process_exiting()
        self.stdout.write("webhook worker stopped", ending="\n")
