"""`db upgrade`: bring a database's schema to `SCHEMA_REVISION` with Alembic, in one transaction.

A database without the schema gets it directly (created and stamped); one made before
Alembic (schema 1: a `meta` table) is stamped at its baseline revision first; then
Alembic runs the migrations in `migrations/versions/` on our own connection, so a
failure anywhere leaves the database as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection

from campaigns.store.base import Database
from campaigns.store.schema import SCHEMA_REVISION
from campaigns.store.version import V1_REVISION, prepare, revision, version_table

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did: the revision found (None: an empty database) and the one left."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        """True when the schema was created or migrated."""
        return self.before != self.after


def upgrade(database: Database) -> Upgrade:
    """Migrate `database` to this code's schema revision (a no-op when it is current)."""
    with database.transaction() as conn:
        before = revision(conn)
        if before is None or before == SCHEMA_REVISION:
            prepare(conn, database.shown)
            return Upgrade(before, SCHEMA_REVISION)
        if before == V1_REVISION and not conn.dialect.has_table(conn, version_table.name):
            version_table.create(conn)
            conn.execute(version_table.insert().values(version_num=V1_REVISION))
        _run_alembic(conn)
        after = revision(conn)
    return Upgrade(before, after or SCHEMA_REVISION)


def _run_alembic(conn: Connection) -> None:
    """Alembic's `upgrade head` on `conn` (imported here: only `db upgrade` needs it)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def head() -> str:
    """The newest revision in `migrations/versions/` (equal to SCHEMA_REVISION; tested)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return str(ScriptDirectory.from_config(config).get_current_head())
