"""Many campaigns per database: every table carries `campaign_id`; leases.

`campaign` becomes `campaigns` (slug unique); job, group and submission ids become
unique per campaign (keys `(campaign_id, id)`); the job key, uid, submission token and
(job, attempt number) become unique per campaign; a `leases` row per campaign; `meta`
goes (Alembic's table records the revision now). Each table is rebuilt (renamed,
created anew, copied, dropped), which SQLite and PostgreSQL both do inside the
migration's one transaction.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Indexes of schema 1 (named by SQLAlchemy's default convention).
OLD_INDEXES = {
    "jobs": ["ix_jobs_state", "ix_jobs_submission_id"],
    "submissions": ["ix_submissions_state"],
    "attempts": ["ix_attempts_job_id", "ix_attempts_submission_id"],
}
TIME = sa.DateTime()


def _columns(spec: str) -> list[sa.Column[object]]:
    """Columns from `name:type[!]` words (`!` = NOT NULL), in schema 2's order."""
    types = {"int": sa.Integer, "text": sa.Text, "time": sa.DateTime, "float": sa.Float}
    out: list[sa.Column[object]] = []
    for word in spec.split():
        name, kind = word.split(":")
        required = kind.endswith("!")
        kind = kind.rstrip("!")
        width = kind[3:] if kind.startswith("str") else None
        type_ = sa.String(int(width)) if width else types[kind]
        out.append(sa.Column(name, type_, nullable=not required))
    return out


TABLES: dict[str, tuple[str, tuple[str, ...], list[tuple[str, ...]], list[tuple[str, ...]]]] = {
    # name: (columns, primary key, unique column sets, indexed column sets)
    "job_groups": (
        "campaign_id:int! id:int! resources:text! max_retries:int!",
        ("campaign_id", "id"),
        [],
        [],
    ),
    "jobs": (
        "campaign_id:int! id:int! key:text! uid:str16! params:text! output:text! group_id:int! "
        "config_hash:str32 state:str16! attempts:int! attempts_base:int! next_retry_at:time "
        "time_scale:float! memory_scale:float! submission_id:int task_index:int "
        "scheduler_id:str64 failure_class:str32 exit_code:int error:text started_at:time "
        "ended_at:time updated_at:time",
        ("campaign_id", "id"),
        [("campaign_id", "key"), ("campaign_id", "uid")],
        [("campaign_id", "state"), ("campaign_id", "submission_id")],
    ),
    "submissions": (
        "campaign_id:int! id:int! token:str64! backend:str16! state:str16! scheduler_id:str64 "
        "group_id:int! n_tasks:int! n_jobs:int! log_dir:text! created_at:time! "
        "submitted_at:time closed_at:time error:text",
        ("campaign_id", "id"),
        [("campaign_id", "token")],
        [("campaign_id", "state")],
    ),
    "attempts": (
        "id:int! campaign_id:int! job_id:int! number:int! submission_id:int! task_index:int! "
        "scheduler_id:str64 state:str16! exit_code:int failure_class:str32 error:text "
        "started_at:time ended_at:time node:text time_minutes:int memory_mb:int log_path:text "
        "manifest_path:text",
        ("id",),
        [("campaign_id", "job_id", "number")],
        [("campaign_id", "submission_id")],
    ),
    "events": (
        "id:int! campaign_id:int! at:time! kind:str32! job_id:int submission_id:int message:text!",
        ("id",),
        [],
        [("campaign_id", "id")],
    ),
}


def upgrade() -> None:
    """Rebuild every table of schema 1 with its campaign column, then copy the rows over."""
    bind = op.get_bind()
    for table, names in OLD_INDEXES.items():
        for name in names:
            op.drop_index(name, table_name=table)
    op.rename_table("campaign", "campaign_v1")
    for table in TABLES:
        op.rename_table(table, f"{table}_v1")
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        *_columns(
            "slug:str200! name:text! version:text! config_hash:str32! config:text! "
            "source:text! backend:str16 created_at:time!"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.UniqueConstraint("slug", name="uq_campaigns_slug"),
    )
    for table, (spec, key, uniques, indexes) in TABLES.items():
        columns = _columns(spec)
        if key == ("id",):  # a row id: autoincrement on every dialect
            columns[0] = sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)
        op.create_table(
            table,
            *columns,
            sa.PrimaryKeyConstraint(*key, name=f"pk_{table}"),
            *[sa.UniqueConstraint(*u, name=f"uq_{table}_{'_'.join(u)}") for u in uniques],
            **({"sqlite_with_rowid": False} if table == "jobs" else {}),
        )
        for index in indexes:
            op.create_index(f"ix_{table}_{'_'.join(index)}", table, list(index))
    op.create_table(
        "leases",
        sa.Column("campaign_id", sa.Integer, autoincrement=False, nullable=False),
        *_columns("token:str64 holder:text acquired_at:time heartbeat_at:time expires_at:time"),
        sa.PrimaryKeyConstraint("campaign_id", name="pk_leases"),
    )
    campaign = bind.execute(sa.text("SELECT id FROM campaign_v1")).scalar_one()
    old = "id, slug, name, version, config_hash, config, source, backend, created_at"
    bind.execute(sa.text(f"INSERT INTO campaigns ({old}) SELECT {old} FROM campaign_v1"))
    for table, (spec, *_rest) in TABLES.items():
        names = [w.split(":")[0] for w in spec.split() if not w.startswith("campaign_id:")]
        listed = ", ".join(f'"{n}"' for n in names)
        bind.execute(
            sa.text(
                f"INSERT INTO {table} (campaign_id, {listed}) "
                f"SELECT :campaign, {listed} FROM {table}_v1"
            ),
            {"campaign": campaign},
        )
    bind.execute(sa.text("INSERT INTO leases (campaign_id) VALUES (:c)"), {"c": campaign})
    if bind.dialect.name == "postgresql":  # rows came with their ids: move the counters on
        for table in ("campaigns", "attempts", "events"):
            bind.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                )
            )
    for table in ("campaign", *TABLES, "meta"):
        op.drop_table(f"{table}_v1" if table != "meta" else table)
