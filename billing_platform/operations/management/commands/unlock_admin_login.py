from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from billing_platform.core.unlock import LoginUnlockCommand


class Command(LoginUnlockCommand):
    help = "Lift the failed-login lock of an admin account and/or of a client IP address."
    missing = "give --username, --ip or both"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", help="the account (any spelling of its case)")
        parser.add_argument("--ip", help="the client IP address (IPv6: its /64)")

    def handle(self, *args: Any, **options: Any) -> None:
        self.unlock(account=options["username"], ip=options["ip"])
