from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tenants.services import platform_key_create


class Command(BaseCommand):
    help = "Create a platform key (bpk_…) for /api/v1/platform; prints the key on its last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        key, raw = platform_key_create(name=options["name"])
        self.stderr.write(f"Platform key {key.prefix}… created; it is shown once:")
        self.stdout.write(raw)
