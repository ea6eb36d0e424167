"""Fencing: a lease's number, bumped each time it changes hands.

Every write of a manager that holds a campaign's lease checks, in its own transaction,
that the lease row still carries the manager's token and number (`store.fence`).
Existing rows start at 0; the next manager to take a lease makes it 1.

Revision ID: 0004_h3_store
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_h3_store"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `leases.fence` (0 for every existing row)."""
    op.add_column(
        "leases",
        sa.Column("fence", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    )
