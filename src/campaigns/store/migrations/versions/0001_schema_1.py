"""Schema 1, the baseline: one campaign per database, its version in `meta.schema_version`.

Databases made before Alembic are stamped at this revision by `store.migrate` (found by
their `meta` table); nothing is ever created at it.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: schema 1 existed before its history did."""
