"""Alembic's environment: migrations run on the connection `store.migrate` hands over,
inside its transaction (all or nothing, on SQLite and PostgreSQL alike)."""

from __future__ import annotations

from alembic import context

from campaigns.store.schema import metadata


def run() -> None:
    """Run the migrations Alembic selected on the caller's connection."""
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


run()
