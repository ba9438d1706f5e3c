"""A `LISTEN` connection of its own, for workers woken by `NOTIFY` (webhooks, the spare pool)."""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from django.db import connection

logger = logging.getLogger("billable.worker")


class Listener:
    """LISTEN on `channel` on a connection of its own, reconnected when it breaks."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        params = connection.get_connection_params()
        for name in ("cursor_factory", "context", "options", "server_side_binding"):
            params.pop(name, None)
        conn = psycopg.connect(**params, autocommit=True)
        conn.execute(f"LISTEN {self.channel}")
        return conn

    def wait(self, timeout: float) -> bool:
        """Return True on a notification, False after `timeout` seconds without one."""
        try:
            if self.conn is None or self.conn.closed:
                self.conn = self._connect()
            for _ in self.conn.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error:
            logger.warning("LISTEN connection lost; polling until it is back", exc_info=True)
            self.close()
            time.sleep(timeout)
        return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
