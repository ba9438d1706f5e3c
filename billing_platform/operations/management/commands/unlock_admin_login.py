from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_platform.core.ratelimits import login_unlock


class Command(BaseCommand):
    help = "Lift the failed-login lock of an admin account and/or of a client IP address."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", help="the account (any spelling of its case)")
        parser.add_argument("--ip", help="the client IP address (IPv6: its /64)")

    def handle(self, *args: Any, **options: Any) -> None:
        username, ip = options["username"], options["ip"]
        if not username and not ip:
            raise CommandError("give --username, --ip or both")
        login_unlock(username=username or None, ip=ip or None)
        unlocked = [f"account {username}"] * bool(username) + [f"address {ip}"] * bool(ip)
        self.stdout.write(f"Unlocked {' and '.join(unlocked)}.")
