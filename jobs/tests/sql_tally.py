"""Statements and transactions a piece of code makes, counted on the real connection.

A transaction is a commit or rollback of an atomic block, or a statement that
writes outside one (autocommit: its own transaction). Used by test_press_cost.py
and bench/run_burst.py, so that the test's pinned figures and the bench's are one count.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

from django.db import connection as default_connection

_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)


class Tally:
    def __init__(self):
        self.statements: list[str] = []
        self.transactions = 0

    @property
    def count(self) -> int:
        return len(self.statements)

    def __str__(self):
        return f"{self.count} statements, {self.transactions} transactions:\n" + "\n".join(
            f"  {n}. {s[:200]}" for n, s in enumerate(self.statements, 1)
        )


@contextmanager
def tally(connection=default_connection):
    """Counts what ``connection`` runs inside the block."""
    result = Tally()

    def wrapper(execute, sql, params, many, context):
        # Transaction control is not a statement of the code's own (SQLite's BEGIN is logged, PostgreSQL's is not).
        if not sql.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")):
            result.statements.append(sql)
            if _WRITE.match(sql) and connection.get_autocommit():
                result.transactions += 1
        return execute(sql, params, many, context)

    commit, rollback = connection.commit, connection.rollback

    def counted_commit():
        result.transactions += 1
        return commit()

    def counted_rollback():
        result.transactions += 1
        return rollback()

    connection.commit, connection.rollback = counted_commit, counted_rollback
    try:
        with connection.execute_wrapper(wrapper):
            yield result
    finally:
        del connection.commit, connection.rollback
