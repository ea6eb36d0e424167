"""The connection to a runs database: engine, transactions, errors, the fence.

SQLite in `metadata/campaign.db` by default, set up for the filesystem it lives on
(`store.sqlite`: WAL on a local disk, a rollback journal where other hosts mount it);
PostgreSQL through psycopg 3 (`pip install 'campaigns[postgres]'`). Every change is one
transaction. Database errors become `StoreError` (exit 1: the database failed or cannot
be reached; `FilesystemError` when its filesystem refused a write, naming why: full,
quota, read-only) or `InputError` (exit 2: a bad URL, a missing driver, wrong
credentials, no such database); messages show the URL with its password masked. A store
opened `read_only` (the web dashboard's) cannot write: SQLite is opened with `mode=ro`,
other databases run every transaction as `READ ONLY`. An SQLite file whose filesystem
refuses writes is still read, opened as unchanging, when nothing committed is left
outside it. While a manager holds a lease, `fence` checks each write (`store.fence`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.core.filesystems import Sharing
from campaigns.errors import FilesystemError, InputError, StoreError
from campaigns.store import filesystem, sqlite, urls
from campaigns.store.fence import Fence
from campaigns.store.schema import SCHEMA_REVISION, campaigns_table, events_table
from campaigns.store.version import require_current

#: Connection failures that are the user's to fix (exit 2), by libpq's words.
_BAD_LOGIN = ("password authentication failed", "no password supplied", "does not exist")
#: SQLite's words for a write its filesystem refused (or may have: then we look).
_DISK_WORDS = ("disk", "full", "readonly", "read-only", "unable to open", "i/o error")


def _said(exc: sa.exc.DBAPIError) -> str:
    """What the driver said, on one line, passwords masked."""
    return urls.mask_text(" ".join(str(exc.orig).split())).rstrip(".")


def _readonly_begin(conn: Connection) -> None:
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")


def read_only_url(url: str) -> str:
    """A SQLite URL opened read-only (`mode=ro`); other URLs unchanged."""
    parsed = sa.engine.make_url(url)
    path = sqlite.file_of(parsed) if parsed.get_backend_name() == "sqlite" else None
    return url if path is None else sqlite.read_only_url(path)


class Database:
    """A runs database and, once known, the one campaign (by slug) this object works on."""

    def __init__(self, url: str, slug: str | None = None, *, read_only: bool = False) -> None:
        self.url = url
        self.shown = urls.shown(url)
        self.slug = slug
        self.read_only = read_only
        self._cid: int | None = None
        #: Set while this process holds the campaign's lease: every write checks it.
        self.fence: Fence | None = None
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
        #: The SQLite file (None on a server) and what its filesystem allows.
        self.file = sqlite.file_of(parsed) if self.engine.dialect.name == "sqlite" else None
        self.sharing: Sharing | None = None
        if self.engine.dialect.name == "sqlite":
            if self.file is not None:
                self.sharing = filesystem.sharing_of(self.file.parent)
            sqlite.configure(self.engine, self.sharing, read_only=read_only, shown=self.shown)
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
        return self.file is not None and self.file.exists()

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for queries; database errors become StoreError. An SQLite file its
        filesystem will not let us open for writing is read as it stands, when that is
        exact (see `store.sqlite.can_freeze`)."""
        with self._translated(), self._reader() as conn:
            yield conn

    @contextmanager
    def transaction(self, *, fenced: bool = True) -> Iterator[Connection]:
        """One atomic step; database errors become StoreError (and nothing is written).
        While a lease is held, the step first checks it is still ours (`fenced`)."""
        with self._translated(), self._connect() as conn, conn.begin():
            if fenced and self.fence is not None:
                self.fence.check(conn, self.shown)
            yield conn

    def _reader(self) -> Connection:
        try:
            conn = self._connect()
            if self.file is not None:
                self._first_read(conn)
            return conn
        except FilesystemError:
            if self.file is None or not sqlite.can_freeze(self.file):
                raise
            file = self.file
        # Asked again each time: once the disk has room the live file is read, with locks.
        frozen = sa.create_engine(sqlite.frozen_url(file), poolclass=sa.pool.NullPool)
        sqlite.configure(frozen, None, read_only=True, shown=self.shown)
        try:
            return frozen.connect()
        except sa.exc.OperationalError:
            raise self._sqlite_failure(None) from None

    def _first_read(self, conn: Connection) -> None:
        """Read once, so that a file we may open but not read (a WAL index that cannot be
        made: the disk is full, or read-only) fails here, where reading can fall back."""
        try:
            conn.exec_driver_sql("SELECT 1 FROM sqlite_master LIMIT 1").all()
        except sa.exc.OperationalError as exc:
            conn.close()
            raise self._sqlite_failure(exc) from None

    def _connect(self) -> Connection:
        """A new connection; a failure says whether the URL, the disk or the server is to
        blame."""
        try:
            return self.engine.connect()
        except sa.exc.OperationalError as exc:
            if self.file is not None:
                raise self._sqlite_failure(exc) from None
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

    def _sqlite_failure(self, exc: sa.exc.OperationalError | None) -> StoreError:
        """The error for an SQLite file we could not open or write: the filesystem's
        refusal when it is one (full, quota, read-only), named; else what SQLite said."""
        assert self.file is not None
        said = _said(exc) if exc is not None else "cannot be opened"
        problem = None
        if exc is None or any(word in said.lower() for word in _DISK_WORDS):
            problem = filesystem.trouble(self.file.parent)
        if problem is not None:
            return FilesystemError(
                f"cannot write the campaign database {self.file}: {problem} (SQLite said: "
                f"{said}). {filesystem.advice(problem)}"
            )
        return StoreError(
            f"cannot use the campaign database {self.file}: {said}. Check that the file and "
            "its folder exist and that you may read and write them; nothing was changed."
        )

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.OperationalError as exc:
            if self.file is not None and any(w in _said(exc).lower() for w in _DISK_WORDS):
                raise self._sqlite_failure(exc) from None
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
