"""An SQLite campaign database, set up for the filesystem it lives on.

On a local disk: WAL (readers never wait for the writer), `synchronous=NORMAL`. On a
filesystem other hosts mount (`core.filesystems`): a rollback journal (`DELETE`),
`synchronous=FULL`, because WAL's index lives in memory that only one host shares: a
`status` on a login node would read the manager's half-written pages. A WAL database
found on such a filesystem (a campaign moved there) is switched once, when no other
process has it open. Every connection waits up to 30 s for a lock (`busy_timeout`).

A store that cannot open its file because the filesystem refuses writes (full, quota,
read-only) can still be read through `frozen_url`: the file opened `immutable`, without
the locks and journal files it could not create; `can_freeze` says when that shows
exactly what is committed (no write-ahead log or hot journal left to apply).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.core.filesystems import Sharing
from campaigns.errors import StoreError

BUSY_MS = 30000
#: How long to wait for other processes to close a WAL database we must switch.
SWITCH_SECONDS = 10.0


def _begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def configure(engine: Engine, sharing: Sharing | None, *, read_only: bool, shown: str) -> None:
    """Listen on `engine`'s connections: journal mode and waits for `sharing`, our own BEGIN."""

    def readonly_pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout={BUSY_MS}")

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite would run CREATE TABLE outside our transaction (a failed `init` then left
        # empty tables behind); with its own transaction handling off, the BEGIN emitted by
        # `_begin` covers DDL too.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        if sharing is not None and sharing.shared:
            if sharing.lock is not None:  # else every write is refused: change nothing
                _leave_wal(cursor, shown)
            cursor.execute("PRAGMA synchronous=FULL")
        else:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sa.event.listen(engine, "connect", readonly_pragmas if read_only else pragmas)
    sa.event.listen(engine, "begin", _begin)


def _leave_wal(cursor: Any, shown: str) -> None:
    """Make the journal a rollback one; a WAL database is switched once nobody else has it
    open (SQLite refuses while another connection does, and says so at once)."""
    deadline = time.monotonic() + SWITCH_SECONDS
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            mode = "wal"
        if str(mode).lower() == "delete":
            return
        if time.monotonic() >= deadline:
            raise StoreError(
                f"the campaign database {shown} is in WAL mode, which is not safe on a "
                "filesystem that other hosts share, and it cannot be switched to a rollback "
                "journal while another process has it open. Stop the other campaigns "
                "commands on it (a dashboard, a monitor, an older version's autopilot), "
                "then run the command again; nothing was changed."
            )
        time.sleep(0.2)


def file_of(url: sa.engine.URL) -> Path | None:
    """The database file of an SQLite URL (None for a memory database)."""
    database = url.database
    if database in (None, "", ":memory:"):
        return None
    path = str(database)
    if path.startswith("file:"):  # a URI filename, as `read_only_url` makes
        path = path[len("file:") :].split("?", 1)[0]
    return Path(path).absolute()


def read_only_url(path: Path) -> str:
    """The file opened read-only (`mode=ro`)."""
    return f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true"


def can_freeze(path: Path) -> bool:
    """True when the file alone holds everything committed: no write-ahead log with frames
    in it, no hot rollback journal."""
    for suffix in ("-wal", "-journal"):
        try:
            if Path(f"{path}{suffix}").stat().st_size > 0:
                return False
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return path.is_file()


def frozen_url(path: Path) -> str:
    """The file opened for reading only, as unchanging: no lock, no -wal or -shm created."""
    return f"sqlite:///file:{quote(str(path))}?mode=ro&immutable=1&uri=true"
