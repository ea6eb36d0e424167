"""Which schema a database holds, read without Alembic (a cheap check on every command).

`db upgrade` (`store.migrate`) moves an older schema to `SCHEMA_REVISION`; until then
every other command refuses to touch it (InputError, exit 2, naming the command).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.errors import SchemaOutdatedError, StoreError
from campaigns.store.schema import SCHEMA_REVISION, metadata

#: Alembic's bookkeeping table.
VERSION_TABLE = "alembic_version"
#: The revision of the schema before Alembic (a `meta` table with schema_version = 1).
V1_REVISION = "0001"


def revision(conn: Connection) -> str | None:
    """The schema revision of the database; None when it holds no campaigns schema yet."""
    inspector = sa.inspect(conn)
    if inspector.has_table(VERSION_TABLE):
        value = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
        return str(value) if value is not None else None
    if inspector.has_table("meta"):  # schema version 1: no Alembic yet
        value = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar()
        if str(value) == "1":
            return V1_REVISION
        raise StoreError(f"unknown schema version {value!r} in the database's meta table.")
    return None


def require_current(conn: Connection, shown: str) -> None:
    """Refuse (exit 2) a database whose schema is older, or newer, than this code's."""
    found = revision(conn)
    if found is None or found == SCHEMA_REVISION:
        return
    if found < SCHEMA_REVISION:
        raise SchemaOutdatedError(
            f"the database {shown} has an older schema (revision {found}; this version of "
            f"campaigns needs {SCHEMA_REVISION}). Run `run-campaign db upgrade CONFIG` to "
            "migrate it (back it up first); nothing was changed."
        )
    raise SchemaOutdatedError(
        f"the database {shown} has a newer schema (revision {found}) than this version of "
        f"campaigns knows ({SCHEMA_REVISION}): use the newer campaigns that wrote it."
    )


#: Alembic's table, as Alembic makes it (a fresh database is stamped without running Alembic).
version_table = sa.Table(
    VERSION_TABLE,
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def prepare(conn: Connection, shown: str) -> None:
    """A database without the schema gets it (stamped current); any other must be current."""
    if revision(conn) is None:
        metadata.create_all(conn, checkfirst=False)  # no schema here: nothing to check for
        version_table.create(conn)
        conn.execute(version_table.insert().values(version_num=SCHEMA_REVISION))
        return
    require_current(conn, shown)
