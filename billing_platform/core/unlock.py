"""What the commands lifting failed sign-in locks share: `unlock_admin_login` (the operators'
admin) and `console_unlock` (the tenant console) differ only in their counters' group and in how
they name the account."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing_platform.core.ratelimits import ADMIN_LOGIN, login_unlock


class LoginUnlockCommand(BaseCommand):
    """A command that lifts the failed sign-in lock of an account and/or of a client address."""

    group = ADMIN_LOGIN
    missing = "give an account, --ip or both"

    def unlock(self, *, account: str | None, ip: str | None) -> None:
        if not account and not ip:
            raise CommandError(self.missing)
        login_unlock(username=account or None, ip=ip or None, group=self.group)
        unlocked = [f"account {account}"] * bool(account) + [f"address {ip}"] * bool(ip)
        self.stdout.write(f"Unlocked {' and '.join(unlocked)}.")
