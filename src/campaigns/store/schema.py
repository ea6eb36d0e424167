"""The tables of the runs database (SQLAlchemy Core): many campaigns, each found by its slug.

campaigns     one row per campaign: slug (unique), name, version, merged config, last backend
job_groups    resources and retry limit shared by jobs (arrays never mix groups)
jobs          one row per job: parameters, output, state, attempts, retry facts
submissions   one row per array: token, backend, scheduler id, state
attempts      one row per (job, attempt): where and how it ran and ended
events        an append-only log of what the manager did
leases        the manager lease of each campaign on a server database (holder, expiry,
              fencing number)
qa_results    what `qa` last found for each completed job's output, and the file facts it saw

Every table carries `campaign_id`; job, group and submission ids count from 1 within
their campaign (keys are `(campaign_id, id)`), so a campaign reads the same in its own
SQLite file and in a database it shares. The schema's history is the Alembic
migrations in `migrations/`; `SCHEMA_REVISION` is their head.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

#: The Alembic revision this code reads and writes (the head of `migrations/versions`).
SCHEMA_REVISION = "0004_h3_store"

metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (stored naive, as UTC)."""

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


def _campaign() -> sa.Column[int]:
    return sa.Column("campaign_id", sa.Integer, nullable=False)


campaigns_table = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("slug", sa.String(200), nullable=False, unique=True),  # <version>_<name-slug>
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("config_hash", sa.String(32), nullable=False),
    sa.Column("config", sa.Text, nullable=False),  # merged config, JSON
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("backend", sa.String(16)),  # the backend last used to submit
    sa.Column("created_at", UTCDateTime, nullable=False),
)

groups_table = sa.Table(
    "job_groups",
    metadata,
    _campaign(),
    sa.Column("id", sa.Integer, nullable=False),
    sa.Column("resources", sa.Text, nullable=False),  # JSON of spec.Resources
    sa.Column("max_retries", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("campaign_id", "id"),
)

jobs_table = sa.Table(
    "jobs",
    metadata,
    _campaign(),
    sa.Column("id", sa.Integer, nullable=False, autoincrement=False),  # expansion index + 1
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("uid", sa.String(16), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON, YAML's types
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("group_id", sa.Integer, nullable=False),
    sa.Column("config_hash", sa.String(32)),  # the config the job was expanded from (lineage)
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # `retry --reset` gives a fresh budget without renumbering: budget used = attempts - base.
    sa.Column("attempts_base", sa.Integer, nullable=False, default=0),
    sa.Column("next_retry_at", UTCDateTime),
    # Resource escalation after timeouts / out-of-memory failures (multipliers of the group's).
    sa.Column("time_scale", sa.Float, nullable=False, default=1.0),
    sa.Column("memory_scale", sa.Float, nullable=False, default=1.0),
    sa.Column("submission_id", sa.Integer),
    sa.Column("task_index", sa.Integer),
    sa.Column("scheduler_id", sa.String(64)),
    sa.Column("failure_class", sa.String(32)),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("started_at", UTCDateTime),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime),
    sa.PrimaryKeyConstraint("campaign_id", "id"),
    sa.UniqueConstraint("campaign_id", "key"),
    sa.UniqueConstraint("campaign_id", "uid"),
    sa.Index(None, "campaign_id", "state"),
    sa.Index(None, "campaign_id", "submission_id"),
    # SQLite: the rows are stored in key order, so the key needs no index of its own.
    sqlite_with_rowid=False,
)

submissions_table = sa.Table(
    "submissions",
    metadata,
    _campaign(),
    sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("backend", sa.String(16), nullable=False),
    # intent -> submitted -> closed; intent -> abandoned when it never reached the scheduler
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("scheduler_id", sa.String(64)),
    sa.Column("group_id", sa.Integer, nullable=False),
    sa.Column("n_tasks", sa.Integer, nullable=False),
    sa.Column("n_jobs", sa.Integer, nullable=False),
    sa.Column("log_dir", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("submitted_at", UTCDateTime),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("error", sa.Text),
    sa.PrimaryKeyConstraint("campaign_id", "id"),
    sa.UniqueConstraint("campaign_id", "token"),
    sa.Index(None, "campaign_id", "state"),
)

attempts_table = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),  # a row id, nothing more
    _campaign(),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("submission_id", sa.Integer, nullable=False),
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
    sa.UniqueConstraint("campaign_id", "job_id", "number"),
    sa.Index(None, "campaign_id", "submission_id"),
)

events_table = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),  # the order of events
    _campaign(),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("job_id", sa.Integer),
    sa.Column("submission_id", sa.Integer),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index(None, "campaign_id", "id"),
)

leases_table = sa.Table(
    "leases",
    metadata,
    sa.Column("campaign_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("token", sa.String(64)),  # the holder's own random token; NULL when free
    sa.Column("holder", sa.Text),  # JSON: host, pid, command, since
    sa.Column("acquired_at", UTCDateTime),
    sa.Column("heartbeat_at", UTCDateTime),
    sa.Column("expires_at", UTCDateTime),  # by the database's clock
    # Bumped each time the lease changes hands: every write of the holder checks it.
    sa.Column("fence", sa.BigInteger, nullable=False, server_default=sa.text("0")),
)

qa_results_table = sa.Table(
    "qa_results",
    metadata,
    _campaign(),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer),
    # The rules and config the result was judged under: another hash means check again.
    sa.Column("rules_hash", sa.String(32), nullable=False),
    # What the output and its manifest looked like when checked (None: could not stat).
    sa.Column("output_size", sa.BigInteger),
    sa.Column("output_mtime_ns", sa.BigInteger),
    sa.Column("manifest_size", sa.BigInteger),
    sa.Column("manifest_mtime_ns", sa.BigInteger),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("problems", sa.Text, nullable=False),  # JSON list of texts
    sa.Column("sha256", sa.String(64)),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("checked_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("campaign_id", "job_id"),
)

#: The tables that hold one campaign's rows, in the order a copy writes them.
CAMPAIGN_TABLES = (
    groups_table,
    jobs_table,
    submissions_table,
    attempts_table,
    events_table,
    qa_results_table,
)
