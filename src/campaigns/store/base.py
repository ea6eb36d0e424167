"""The connection to a campaign database: engine, SQLite settings, reads and transactions.

SQLite (WAL, busy timeout) in `metadata/campaign.db` by default; any SQLAlchemy URL
(PostgreSQL) works the same. Every change is one transaction; database errors
become `StoreError`, whose messages never show the URL's password. A store opened
`read_only` (the web dashboard's) cannot write: SQLite is opened with `mode=ro`,
other databases run every transaction as `READ ONLY`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

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


def _sqlite_readonly_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA busy_timeout=30000")


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def _readonly_begin(conn: Connection) -> None:
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")


def safe_url(url: str) -> str:
    """`url` with its password hidden, fit for messages and pages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable database URL>"


def read_only_url(url: str) -> str:
    """A SQLite URL opened read-only (`mode=ro`); other URLs unchanged."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    path = quote(str(Path(parsed.database).absolute()))
    return f"sqlite:///file:{path}?mode=ro&uri=true"


class Database:
    """One campaign's database connection."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = safe_url(url)  # what messages show
        self.read_only = read_only
        try:
            real = read_only_url(url) if read_only else url
            self.engine: Engine = sa.create_engine(real, future=True)
        except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
            message = str(exc).replace(url, self.url)
            raise StoreError(f"cannot open database URL {self.url!r}: {message}") from None
        if self.engine.dialect.name == "sqlite":
            pragmas = _sqlite_readonly_pragmas if read_only else _sqlite_pragmas
            sa.event.listen(self.engine, "connect", pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        elif read_only:
            sa.event.listen(self.engine, "begin", _readonly_begin)

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
