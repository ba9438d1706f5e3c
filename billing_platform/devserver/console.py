"""What `make run` says on its terminal: steps with their outcome, progress, and the ready block.

On a terminal a step is drawn as `  ✓ PostgreSQL   15.20 on 127.0.0.1:5432 …`, with colours
(unless NO_COLOR is set) and a progress line that rewrites itself while migrations run. Without a
terminal (a pipe, a log file, CI) the same facts come as plain lines, one per step and no
control characters, so the output stays readable in a file.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

GREEN, YELLOW, RED, BOLD, DIM, CYAN, RESET = (
    "\033[32m", "\033[33m", "\033[31m", "\033[1m", "\033[2m", "\033[36m", "\033[0m"
)
LABEL_WIDTH = 13


class Console:
    """Lines for the person who typed `make run`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.color = self.tty and not os.environ.get("NO_COLOR")
        self._progress_shown = False

    def paint(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def write(self, text: str = "") -> None:
        self._clear_progress()
        self.stream.write(text + "\n")
        self.stream.flush()

    def step(self, label: str, text: str, *, mark: str = "ok") -> None:
        """One finished step: `  ✓ Label        text`."""
        symbol = {"ok": ("✓", GREEN), "warn": ("!", YELLOW), "fail": ("✗", RED)}[mark]
        glyph = self.paint(symbol[1], symbol[0]) if self.tty else {"ok": "ok", "warn": "!!",
                                                                       "fail": "xx"}[mark]
        self.write(f"  {glyph} {self.paint(BOLD, label.ljust(LABEL_WIDTH))} {text}")

    def progress(self, label: str, text: str) -> None:
        """A line that the next progress, step or write replaces (on a terminal only)."""
        if not self.tty:
            return
        text = text[: max(10, self.columns() - LABEL_WIDTH - 6)]
        line = f"  {self.paint(CYAN, '…')} {self.paint(BOLD, label.ljust(LABEL_WIDTH))} {text}"
        self.stream.write("\r\033[K" + line)
        self.stream.flush()
        self._progress_shown = True

    def columns(self) -> int:
        width = 0
        with contextlib.suppress(OSError, ValueError, AttributeError):
            width = os.get_terminal_size(self.stream.fileno()).columns
        return width if width > 20 else 100

    def clear(self) -> None:
        """Remove the progress line, if one is shown."""
        self._clear_progress()
        self.stream.flush()

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.stream.write("\r\033[K")
            self._progress_shown = False

    def block(self, title: str, rows: Sequence[tuple[str, str]], footer: Sequence[str]) -> None:
        """The ready block: a title, aligned `name  value` rows, then free lines, in a frame."""
        width = min(self.columns() - 4, 76)
        rule = self.paint(DIM, "─" * width) if self.tty else "-" * width
        self.write()
        self.write("  " + rule)
        self.write("    " + self.paint(BOLD + GREEN, title))
        self.write()
        for name, value in rows:
            if not name:
                self.write()
                continue
            self.write(f"    {self.paint(BOLD, name.ljust(LABEL_WIDTH))}  {value}")
        if footer:
            self.write()
        for line in footer:
            self.write("    " + self.paint(DIM, line))
        self.write("  " + rule)
        self.write()


# Django's migrate, as django-tenants prefixes it: "[standard:public]   Applying app.0001_x... OK"
# (and "[1/3 (33%) standard:t_demo]   Applying ..." for tenant schemas).
_APPLYING = re.compile(r"\[(?:[^\]]*\s)?\w+:(?P<schema>[^\]]+)\]\s+Applying (?P<name>\S+?)\.\.\..*")
_TENANTS_PLAN = re.compile(r"Tenant schemas: (?P<all>\d+) in all, (?P<behind>\d+) behind.*")
_TENANTS_DONE = re.compile(r"Tenant schemas: (?P<migrated>\d+) migrated.*")


@dataclass
class MigrationReport:
    applied: dict[str, int] = field(default_factory=dict)  # schema -> migrations applied
    tenant_schemas: int = 0
    behind: int = 0
    seconds: float = 0.0
    output: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.applied.values())

    def summary(self) -> str:
        public = self.applied.get("public", 0)
        tenants = self.total - public
        text = f"{public} applied to the public schema" if public else "public schema up to date"
        if self.behind:
            text += (
                f", {tenants} to {self.behind} of {self.tenant_schemas} tenant schemas behind the "
                "code"
            )
        else:
            text += f", {self.tenant_schemas} tenant schemas up to date"
        return f"{text} ({self.seconds:.1f} s)"


def run_migrations(console: Console, argv: list[str], env: dict[str, str], cwd: Path) -> (
    MigrationReport
):
    """Run `migrate_schemas -v 1`, drawing its progress; raise CalledProcessError on failure
    (the command's output is then printed whole)."""
    report = MigrationReport()
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    current = ""
    for raw in process.stdout:
        line = raw.rstrip("\n")
        report.output.append(line)
        applying = _APPLYING.fullmatch(line)
        if applying:
            schema = applying.group("schema")
            report.applied[schema] = report.applied.get(schema, 0) + 1
            if schema != current and not console.tty:
                console.write(f"  .. migrating {schema}")
            current = schema
            console.progress(
                "Migrating",
                f"{schema}: {report.applied[schema]} applied · {applying.group('name')}",
            )
            continue
        plan = _TENANTS_PLAN.fullmatch(line)
        if plan:
            report.tenant_schemas = int(plan.group("all"))
            report.behind = int(plan.group("behind"))
            if report.behind:
                console.progress("Migrating", f"{report.behind} tenant schemas behind the code")
    code = process.wait()
    report.seconds = time.monotonic() - started
    if code != 0:
        console.step("Migrations", f"failed (exit code {code}); the command said:", mark="fail")
        for line in report.output[-40:]:
            console.write("    " + line)
        raise subprocess.CalledProcessError(code, argv)
    return report
