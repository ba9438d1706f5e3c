"""`manage.py console_unlock EMAIL [--ip ADDRESS]`: lift the console's failed sign-in lock of an
account (its email, in any case) and/or of a client address, as `unlock_admin_login` does for
the operators' admin."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from billing_platform.core.ratelimits import CONSOLE_LOGIN
from billing_platform.core.unlock import LoginUnlockCommand


class Command(LoginUnlockCommand):
    help = "Lift the console's failed sign-in lock of an account (its email) and/or a client IP."
    group = CONSOLE_LOGIN
    missing = "give an EMAIL, --ip or both"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", nargs="?", help="the account's email (any case)")
        parser.add_argument("--ip", help="the client IP address (IPv6: its /64)")

    def handle(self, *args: Any, **options: Any) -> None:
        self.unlock(account=options["email"], ip=options["ip"])
