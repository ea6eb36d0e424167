"""The connection to a runs database: engine, SQLite settings, transactions, errors.

SQLite (WAL, busy timeout) in `metadata/campaign.db` by default; PostgreSQL through
psycopg 3 (`pip install 'campaigns[postgres]'`). Every change is one transaction.
Database errors become `StoreError` (exit 1: the database failed or cannot be reached)
or `InputError` (exit 2: a bad URL, a missing driver, wrong credentials, no such
database); messages show the URL with its password masked. A store opened `read_only`
(the web dashboard's) cannot write: SQLite is opened with `mode=ro`, other databases run
every transaction as `READ ONLY`.
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

from campaigns.errors import InputError, StoreError
from campaigns.store import urls
from campaigns.store.schema import SCHEMA_REVISION, campaigns_table, events_table
from campaigns.store.version import require_current

#: Connection failures that are the user's to fix (exit 2), by libpq's words.
_BAD_LOGIN = ("password authentication failed", "no password supplied", "does not exist")


def _said(exc: sa.exc.DBAPIError) -> str:
    """What the driver said, on one line, passwords masked."""
    return urls.mask_text(" ".join(str(exc.orig).split())).rstrip(".")


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


def read_only_url(url: str) -> str:
    """A SQLite URL opened read-only (`mode=ro`); other URLs unchanged."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    path = quote(str(Path(parsed.database).absolute()))
    return f"sqlite:///file:{path}?mode=ro&uri=true"


class Database:
    """A runs database and, once known, the one campaign (by slug) this object works on."""

    def __init__(self, url: str, slug: str | None = None, *, read_only: bool = False) -> None:
        self.url = url
        self.shown = urls.shown(url)
        self.slug = slug
        self.read_only = read_only
        self._cid: int | None = None
        parsed = urls.parse(read_only_url(url) if read_only else url)
        options: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            options["connect_args"] = {"connect_timeout": 10}
        try:
            self.engine: Engine = sa.create_engine(parsed, **options)
        except sa.exc.NoSuchModuleError:
            raise InputError(
                f"cannot open {self.shown}: campaigns knows no database called "
                f"'{parsed.drivername}'. Use sqlite:///PATH or postgresql+psycopg://..."
            ) from None
        except ModuleNotFoundError as exc:
            raise InputError(
                f"cannot open {self.shown}: its driver is not installed ({exc.name}). For "
                "PostgreSQL run `pip install 'campaigns[postgres]'` (psycopg 3) and use a "
                "postgresql+psycopg:// URL."
            ) from None
        if self.engine.dialect.name == "sqlite":
            pragmas = _sqlite_readonly_pragmas if read_only else _sqlite_pragmas
            sa.event.listen(self.engine, "connect", pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        elif read_only:
            sa.event.listen(self.engine, "begin", _readonly_begin)

    @property
    def is_server(self) -> bool:
        """True on a database server (leases instead of a lock file)."""
        return self.engine.dialect.name != "sqlite"

    def reachable(self) -> bool:
        """True for a server (it is asked), or for an SQLite file that exists already."""
        if self.is_server:
            return True
        database = self.engine.url.database
        return database not in (None, "", ":memory:") and Path(str(database)).exists()

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for queries; database errors become StoreError."""
        with self._translated(), self._connect() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic step; database errors become StoreError (and nothing is written)."""
        with self._translated(), self._connect() as conn, conn.begin():
            yield conn

    def _connect(self) -> Connection:
        """A new connection; a failure says whether the URL or the server is to blame."""
        try:
            return self.engine.connect()
        except sa.exc.OperationalError as exc:
            text = _said(exc)
            if any(words in text for words in _BAD_LOGIN):
                raise InputError(
                    f"cannot log in to the database {self.shown}: {text}. Check the user, "
                    "the password (in ~/.pgpass or PGPASSWORD, or in --db-url) and the "
                    "database name; nothing was changed."
                ) from None
            raise StoreError(
                f"cannot reach the database {self.shown}: {text}. Is the server running and "
                "reachable from this host? Nothing was changed."
            ) from None

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.OperationalError as exc:
            raise StoreError(
                f"the campaign database {self.shown} failed: {_said(exc)}. "
                "Nothing was changed by this step; run the command again."
            ) from None
        except sa.exc.IntegrityError as exc:
            raise StoreError(
                f"the database {self.shown} refused a change ({_said(exc)}); "
                "nothing was changed. This is a bug: please report it with the command you ran."
            ) from None

    def is_initialised(self) -> bool:
        """True once this database holds the campaign (or, without a slug, any campaign)."""
        with self.reading() as conn:
            if not sa.inspect(conn).has_table(campaigns_table.name):
                return sa.inspect(conn).has_table("campaign")  # a schema-1 file
            query = sa.select(campaigns_table.c.id)
            if self.slug is not None:
                query = query.where(campaigns_table.c.slug == self.slug)
            return conn.execute(query.limit(1)).first() is not None

    @property
    def cid(self) -> int:
        """The campaign's id in this database (checks the schema revision first)."""
        if self._cid is None:
            with self.reading() as conn:
                require_current(conn, self.shown)
                self._cid = self._find(conn)
        return self._cid

    def _find(self, conn: Connection) -> int:
        query = sa.select(campaigns_table.c.id, campaigns_table.c.slug)
        if self.slug is not None:
            query = query.where(campaigns_table.c.slug == self.slug)
        rows = conn.execute(query.limit(2)).all()
        if len(rows) == 1:
            return int(rows[0][0])
        if not rows:
            what = f"campaign '{self.slug}'" if self.slug else "campaign"
            raise InputError(
                f"the database {self.shown} holds no {what}. Run `init CONFIG` to create it "
                "there, or `db copy CONFIG --to URL` to move it there."
            )
        raise InputError(f"the database {self.shown} holds several campaigns: name one by slug.")

    def add_event(self, kind: str, message: str, now: datetime, **ids: int | None) -> None:
        """Append one event."""
        with self.transaction() as conn:
            event(conn, self.cid, now, kind, message, **ids)


def event(
    conn: Connection, campaign: int, now: datetime, kind: str, message: str, **ids: int | None
) -> None:
    """Append one event of `campaign` inside the caller's transaction."""
    conn.execute(
        events_table.insert().values(
            campaign_id=campaign, at=now, kind=kind, message=message, **ids
        )
    )


__all__ = ["SCHEMA_REVISION", "Database", "event"]
