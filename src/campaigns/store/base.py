"""The connection to a campaign database: engine, SQLite settings, reads and transactions.

SQLite (WAL, busy timeout) in `metadata/campaign.db` by default; any SQLAlchemy URL
(PostgreSQL) works the same. Every change is one transaction; database errors
become `StoreError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.errors import StoreError
from campaigns.store.schema import events_table


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would run CREATE TABLE outside our transaction (a failed `init` then left
    # empty tables behind); with its own transaction handling off, the BEGIN emitted by
    # `_sqlite_begin` covers DDL too.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


class Database:
    """One campaign's database connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
            raise StoreError(f"cannot open database URL {url!r}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for queries; database errors become StoreError."""
        with self._translated(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic step; database errors become StoreError (and nothing is written)."""
        with self._translated(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.OperationalError as exc:
            raise StoreError(
                f"the campaign database {self.url} failed: {exc.orig}. If it was made by "
                "another version of campaigns, use that version (or start a new campaign "
                "version)."
            ) from None
        except sa.exc.IntegrityError as exc:
            raise StoreError(
                f"the database refused a change on {self.url} ({exc.orig}); nothing was "
                "changed. This is a bug: please report it with the command you ran."
            ) from None

    def is_initialised(self) -> bool:
        """True once the campaign tables exist."""
        try:
            return sa.inspect(self.engine).has_table("campaign")
        except sa.exc.OperationalError as exc:
            raise StoreError(f"cannot read database {self.url}: {exc.orig}") from None

    def add_event(self, kind: str, message: str, now: datetime, **ids: int | None) -> None:
        """Append one event."""
        with self.transaction() as conn:
            event(conn, now, kind, message, **ids)


def event(conn: Connection, now: datetime, kind: str, message: str, **ids: int | None) -> None:
    """Append one event inside the caller's transaction."""
    conn.execute(events_table.insert().values(at=now, kind=kind, message=message, **ids))
