"""django-tenants' PostgreSQL backend, whose connection health check costs no round trip.

With `CONN_HEALTH_CHECKS`, Django checks a persistent connection before the first query of each
request, and after a request that met a database error; its PostgreSQL backend sends `SELECT 1`
for that. Here the check asks the connection's state instead. Between requests nothing is in
flight, so bytes waiting on the socket are something the server said unprompted: a notification,
or, when it ends the session (`pg_terminate_backend`, a shutdown, an idle timeout), its FATAL
error followed by the end of the stream. libpq reads and parses them (`consume_input`, which
fails at the end of the stream; `is_busy`, which hands an unprompted error to the notice
handlers); a connection whose server said goodbye is closed, and the request opens a new one.

A connection lost without a word (the network or the server's host gone) looks healthy until
the first query fails; that query's error answers 503 `database_busy`, not a 500, and Django
drops the connection when the request ends. `SELECT 1` could not tell that case either without
waiting as long as the query does.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django_tenants.postgresql_backend import base
from psycopg import OperationalError, errors, pq

_USABLE_TRANSACTION_STATES = frozenset({pq.TransactionStatus.IDLE, pq.TransactionStatus.INTRANS})
_GOODBYE_SEVERITIES = frozenset({"FATAL", "PANIC"})
# Reads of unprompted input before the check gives up on the connection.
_MAX_READS = 4

def _postgres_default_name(table: str, column: str, label: str) -> str:
    """The name PostgreSQL gives an unnamed constraint of one column (its `makeObjectName`):
    `<table>_<column>_<label>`, the longer part shortened first to fit 63 bytes."""
    available = 63 - len(label) - 2
    table_len, column_len = len(table), len(column)
    while table_len + column_len > available:
        if table_len > column_len:
            table_len -= 1
        else:
            column_len -= 1
    return f"{table[:table_len]}_{column[:column_len]}_{label}"

class DatabaseSchemaEditor(base.DatabaseWrapper.SchemaEditorClass):
    """Django's schema editor, with the CHECK of an added column named.

    Django adds a column with a check (`PositiveIntegerField`, …) as `ADD COLUMN c integer
    CHECK (c >= 0)`. Citus refuses that on a distributed table ("cannot execute ADD COLUMN
    command with … CHECK constraints": every constraint it propagates needs an explicit name),
    so the check is named here, with the name PostgreSQL would have chosen itself: the schema
    is the same on plain PostgreSQL and on Citus.
    """

    def add_field(self, model: Any, field: Any) -> None:
        if not field.db_parameters(connection=self.connection)["check"]:
            super().add_field(model, field)
            return
        name = _postgres_default_name(model._meta.db_table, field.column, "check")
        self.sql_check_constraint = f"CONSTRAINT {self.quote_name(name)} CHECK (%(check)s)"
        try:
            super().add_field(model, field)
        finally:
            del self.sql_check_constraint

class DatabaseWrapper(base.DatabaseWrapper):
    SchemaEditorClass = DatabaseSchemaEditor

    def is_usable(self) -> bool:
        """Whether the connection is open and the server has not ended it; no query is sent."""
        if self.connection is None:
            return False
        pgconn = self.connection.pgconn
        if pgconn.status != pq.ConnStatus.OK:
            return False
        if pgconn.transaction_status not in _USABLE_TRANSACTION_STATES:
            return False
        try:
            waiting = select.poll()
            waiting.register(pgconn.socket, select.POLLIN)
            return not waiting.poll(0) or _survives_unprompted_input(self.connection, waiting)
        except (OSError, OperationalError):
            return False

def _survives_unprompted_input(connection: psycopg.Connection[Any], waiting: select.poll) -> bool:
    """Read what the server sent unprompted; False when it is ending the session."""
    pgconn = connection.pgconn
    goodbyes: list[errors.Diagnostic] = []

    def note(diagnostic: errors.Diagnostic) -> None:
        if diagnostic.severity_nonlocalized in _GOODBYE_SEVERITIES:
            goodbyes.append(diagnostic)

    connection.add_notice_handler(note)
    try:
        for _ in range(_MAX_READS):
            pgconn.consume_input()
            pgconn.is_busy()
            if goodbyes or pgconn.status != pq.ConnStatus.OK:
                return False
            if not waiting.poll(0):
                return True
        return False
    finally:
        connection.remove_notice_handler(note)

