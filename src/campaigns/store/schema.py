"""The tables of the campaign database (SQLAlchemy Core).

campaign      one row: name, version, slug, merged config and its hash, last backend
job_groups    resources and retry limit shared by jobs (arrays never mix groups)
jobs          one row per job: parameters, output, state, attempts, retry facts
submissions   one row per array: token, backend, scheduler id, state
attempts      one row per (job, attempt): where and how it ran and ended
events        an append-only log of what the manager did
meta          the schema version
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

SCHEMA_VERSION = 1

metadata = sa.MetaData()


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # naive means UTC here, never local time
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

campaign_table = sa.Table(
    "campaign",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("slug", sa.Text, nullable=False),
    sa.Column("config_hash", sa.String(32), nullable=False),
    sa.Column("config", sa.Text, nullable=False),  # merged config, JSON
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("backend", sa.String(16)),  # the backend last used to submit
    sa.Column("created_at", UTCDateTime, nullable=False),
)

groups_table = sa.Table(
    "job_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("resources", sa.Text, nullable=False),  # JSON of spec.Resources
    sa.Column("max_retries", sa.Integer, nullable=False),
)

jobs_table = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # expansion index + 1
    sa.Column("key", sa.Text, nullable=False, unique=True),
    sa.Column("uid", sa.String(16), nullable=False, unique=True),
    sa.Column("params", sa.Text, nullable=False),  # JSON, YAML's types
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("group_id", sa.Integer, nullable=False),
    sa.Column("config_hash", sa.String(32)),  # the config the job was expanded from (lineage)
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # `retry --reset` gives a fresh budget without renumbering: budget used = attempts - base.
    sa.Column("attempts_base", sa.Integer, nullable=False, default=0),
    sa.Column("next_retry_at", UTCDateTime),
    # Resource escalation after timeouts / out-of-memory failures (multipliers of the group's).
    sa.Column("time_scale", sa.Float, nullable=False, default=1.0),
    sa.Column("memory_scale", sa.Float, nullable=False, default=1.0),
    sa.Column("submission_id", sa.Integer, index=True),
    sa.Column("task_index", sa.Integer),
    sa.Column("scheduler_id", sa.String(64)),
    sa.Column("failure_class", sa.String(32)),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("started_at", UTCDateTime),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime),
)

submissions_table = sa.Table(
    "submissions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token", sa.String(64), nullable=False, unique=True),
    sa.Column("backend", sa.String(16), nullable=False),
    # intent -> submitted -> closed; intent -> abandoned when it never reached the scheduler
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("scheduler_id", sa.String(64)),
    sa.Column("group_id", sa.Integer, nullable=False),
    sa.Column("n_tasks", sa.Integer, nullable=False),
    sa.Column("n_jobs", sa.Integer, nullable=False),
    sa.Column("log_dir", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("submitted_at", UTCDateTime),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("error", sa.Text),
)

attempts_table = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("submission_id", sa.Integer, nullable=False, index=True),
    sa.Column("task_index", sa.Integer, nullable=False),
    sa.Column("scheduler_id", sa.String(64)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("exit_code", sa.Integer),
    sa.Column("failure_class", sa.String(32)),
    sa.Column("error", sa.Text),
    sa.Column("started_at", UTCDateTime),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("node", sa.Text),
    sa.Column("time_minutes", sa.Integer),
    sa.Column("memory_mb", sa.Integer),
    sa.Column("log_path", sa.Text),
    sa.Column("manifest_path", sa.Text),
    sa.UniqueConstraint("job_id", "number"),
)

events_table = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("job_id", sa.Integer),
    sa.Column("submission_id", sa.Integer),
    sa.Column("message", sa.Text, nullable=False),
)
