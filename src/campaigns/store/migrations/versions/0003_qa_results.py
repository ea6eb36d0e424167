"""Incremental QA: a `qa_results` row per checked output.

What `qa` last found for each completed job's output, with the facts it saw (the
output's and the manifest's size and mtime, the attempt, the hash of the rules and
config it judged under), so the next `qa` opens only outputs that changed. A new,
empty table: old campaigns are checked in full once, at their next `qa`.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `qa_results` (empty)."""
    op.create_table(
        "qa_results",
        sa.Column("campaign_id", sa.Integer, nullable=False),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer),
        sa.Column("rules_hash", sa.String(32), nullable=False),
        sa.Column("output_size", sa.BigInteger),
        sa.Column("output_mtime_ns", sa.BigInteger),
        sa.Column("manifest_size", sa.BigInteger),
        sa.Column("manifest_mtime_ns", sa.BigInteger),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("problems", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("checked_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "job_id", name="pk_qa_results"),
    )
