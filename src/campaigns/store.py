"""The campaign database: SQLAlchemy Core tables and bulk queries.

SQLite (WAL, busy timeout) in `metadata/campaign.db` by default; any SQLAlchemy
URL (PostgreSQL) works the same. Every change is one transaction; inserts and
updates are `executemany` over plain dicts, never one ORM object per job.
Only the manager writes here; workers on compute nodes never touch it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.errors import StoreError

SCHEMA_VERSION = 1
_MAX_IN = 500  # longer IN lists are filtered in Python

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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would run CREATE TABLE outside our transaction (a failed `init` then left
    # empty tables behind); with its own transaction handling off, the BEGIN emitted by
    # `_sqlite_begin` covers DDL too.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


class Store:
    """One campaign's database."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
            raise StoreError(f"cannot open database URL {url!r}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for queries; database errors become StoreError."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise StoreError(
                f"cannot read the campaign database {self.url}: {exc.orig}. If it "
                "was made by another version of campaigns, use that version (or "
                "start a new campaign version)."
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic step."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database error on {self.url}: {exc.orig}") from None
        except sa.exc.IntegrityError as exc:
            raise StoreError(
                f"the database refused a change on {self.url} ({exc.orig}); "
                "nothing was changed. This is a bug: please report it with the "
                "command you ran."
            ) from None

    # -- creation ---------------------------------------------------------------

    def is_initialised(self) -> bool:
        """True once `create` has run."""
        try:
            return sa.inspect(self.engine).has_table("campaign")
        except sa.exc.OperationalError as exc:
            raise StoreError(f"cannot read database {self.url}: {exc.orig}") from None

    def create(
        self,
        campaign: Mapping[str, Any],
        groups: Sequence[Mapping[str, Any]],
        jobs: Iterable[Mapping[str, Any]],
        now: datetime,
    ) -> None:
        """Create the schema and insert the campaign and every job, in one transaction."""
        with self.transaction() as conn:
            metadata.create_all(conn)
            conn.execute(
                meta_table.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}]
            )
            conn.execute(campaign_table.insert(), [{**campaign, "id": 1, "created_at": now}])
            conn.execute(groups_table.insert(), list(groups))
            bulk_insert(conn, jobs_table, jobs)
            self._event(conn, now, "init", "campaign created")

    def schema_version(self) -> int:
        """The schema version recorded at creation."""
        with self.reading() as conn:
            value = conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one()
        return int(value)

    # -- reads --------------------------------------------------------------------

    def campaign(self) -> dict[str, Any]:
        """The campaign row."""
        with self.reading() as conn:
            row = conn.execute(sa.select(campaign_table)).mappings().one()
        return dict(row)

    def groups(self) -> dict[int, dict[str, Any]]:
        """Job groups by id, resources decoded."""
        with self.reading() as conn:
            rows = conn.execute(sa.select(groups_table)).mappings().all()
        return {
            r["id"]: {"resources": json.loads(r["resources"]), "max_retries": r["max_retries"]}
            for r in rows
        }

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""
        with self.reading() as conn:
            rows = conn.execute(
                sa.select(jobs_table.c.state, sa.func.count()).group_by(jobs_table.c.state)
            ).all()
        return {state: n for state, n in rows}

    def jobs(
        self,
        *,
        states: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        keys: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Job rows (as dicts), in expansion order, optionally filtered."""
        names = list(columns) if columns else [c.name for c in jobs_table.columns]
        # Long id/key lists are filtered here rather than as thousands of bound parameters.
        big = (ids is not None and len(ids) > _MAX_IN) or (keys is not None and len(keys) > _MAX_IN)
        extra = [c for c in ("id", "key", "uid") if c not in names] if big else []
        query = sa.select(*[jobs_table.c[c] for c in names + extra]).order_by(jobs_table.c.id)
        if states is not None:
            query = query.where(jobs_table.c.state.in_(list(states)))
        if ids is not None and not big:
            query = query.where(jobs_table.c.id.in_(list(ids)))
        if keys is not None and not big:
            query = query.where(
                sa.or_(jobs_table.c.key.in_(list(keys)), jobs_table.c.uid.in_(list(keys)))
            )
        if limit is not None and not big:
            query = query.limit(limit)
        with self.reading() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        if big:
            id_set = set(ids) if ids is not None else None
            key_set = set(keys) if keys is not None else None
            rows = [
                r
                for r in rows
                if (id_set is None or r["id"] in id_set)
                and (key_set is None or r["key"] in key_set or r["uid"] in key_set)
            ]
            rows = [{k: r[k] for k in names} for r in rows][:limit]
        return rows

    def submissions(self, *, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Submission rows, oldest first."""
        query = sa.select(submissions_table).order_by(submissions_table.c.id)
        if states is not None:
            query = query.where(submissions_table.c.state.in_(list(states)))
        with self.reading() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def attempts(self, job_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Attempt rows, by job then number."""
        query = sa.select(attempts_table).order_by(attempts_table.c.job_id, attempts_table.c.number)
        if job_ids is not None:
            query = query.where(attempts_table.c.job_id.in_(list(job_ids)))
        with self.reading() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def open_task_count(self) -> int:
        """Array tasks of this campaign now queued or running (for the queue cap)."""
        query = sa.select(
            sa.func.count(
                sa.distinct(sa.tuple_(jobs_table.c.submission_id, jobs_table.c.task_index))
            )
        ).where(jobs_table.c.state.in_(["queued", "running"]))
        with self.reading() as conn:
            try:
                return int(conn.execute(query).scalar_one())
            except sa.exc.DBAPIError:  # backends without tuple COUNT DISTINCT
                rows = conn.execute(
                    sa.select(jobs_table.c.submission_id, jobs_table.c.task_index)
                    .where(jobs_table.c.state.in_(["queued", "running"]))
                    .distinct()
                ).all()
                return len(rows)

    def runtimes(self) -> list[float]:
        """Seconds from start to end of every completed attempt."""
        query = (
            sa.select(attempts_table.c.started_at, attempts_table.c.ended_at)
            .where(attempts_table.c.state == "completed")
            .where(attempts_table.c.started_at.is_not(None))
            .where(attempts_table.c.ended_at.is_not(None))
        )
        with self.reading() as conn:
            return [(end - start).total_seconds() for start, end in conn.execute(query)]

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest events, newest last."""
        query = sa.select(events_table).order_by(events_table.c.id.desc()).limit(limit)
        with self.reading() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        return rows[::-1]

    # -- writes -------------------------------------------------------------------

    def set_backend(self, backend: str) -> None:
        """Remember the backend the campaign last submitted to."""
        with self.transaction() as conn:
            conn.execute(campaign_table.update().values(backend=backend))

    def record_intent(
        self,
        submission: Mapping[str, Any],
        tasks: Sequence[Mapping[str, Any]],
        now: datetime,
        config_hash: str | None = None,
    ) -> int:
        """Before the scheduler hears of it: a submission row, its attempts, its jobs queued.

        `tasks` holds one dict per job: job_id, attempt (number), task_index,
        time_minutes, memory_mb, log_path, manifest_path.
        """
        with self.transaction() as conn:
            sub_id = int(
                conn.execute(
                    submissions_table.insert().values(**submission, state="intent", created_at=now)
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            conn.execute(
                attempts_table.insert(),
                [
                    {
                        "job_id": t["job_id"],
                        "number": t["attempt"],
                        "submission_id": sub_id,
                        "task_index": t["task_index"],
                        "state": "queued",
                        "time_minutes": t.get("time_minutes"),
                        "memory_mb": t.get("memory_mb"),
                        "log_path": t.get("log_path"),
                        "manifest_path": t.get("manifest_path"),
                    }
                    for t in tasks
                ],
            )
            conn.execute(
                jobs_table.update()
                .where(jobs_table.c.id == sa.bindparam("b_id"))
                .values(
                    state="queued",
                    attempts=sa.bindparam("b_attempt"),
                    submission_id=sub_id,
                    task_index=sa.bindparam("b_task"),
                    scheduler_id=None,
                    next_retry_at=None,
                    # the config this attempt runs under (its manifest will carry the same)
                    config_hash=config_hash if config_hash else jobs_table.c.config_hash,
                    failure_class=None,
                    exit_code=None,
                    error=None,
                    started_at=None,
                    ended_at=None,
                    updated_at=now,
                ),
                [
                    {"b_id": t["job_id"], "b_attempt": t["attempt"], "b_task": t["task_index"]}
                    for t in tasks
                ],
            )
            self._event(
                conn,
                now,
                "intent",
                f"{len(tasks)} jobs in submission {sub_id}",
                submission_id=sub_id,
            )
        return sub_id

    def mark_submitted(
        self, submission_id: int, scheduler_id: str, log_paths: Mapping[int, str], now: datetime
    ) -> None:
        """The scheduler accepted the submission as `scheduler_id`; `log_paths` per task index."""
        with self.transaction() as conn:
            conn.execute(
                submissions_table.update()
                .where(submissions_table.c.id == submission_id)
                .values(state="submitted", scheduler_id=scheduler_id, submitted_at=now)
            )
            rows = [
                {"b_task": index, "b_sid": f"{scheduler_id}_{index}", "b_log": path}
                for index, path in log_paths.items()
            ]
            conn.execute(
                jobs_table.update()
                .where(jobs_table.c.submission_id == submission_id)
                .where(jobs_table.c.task_index == sa.bindparam("b_task"))
                .values(scheduler_id=sa.bindparam("b_sid")),
                [{"b_task": r["b_task"], "b_sid": r["b_sid"]} for r in rows],
            )
            conn.execute(
                attempts_table.update()
                .where(attempts_table.c.submission_id == submission_id)
                .where(attempts_table.c.task_index == sa.bindparam("b_task"))
                .values(scheduler_id=sa.bindparam("b_sid"), log_path=sa.bindparam("b_log")),
                rows,
            )
            self._event(
                conn,
                now,
                "submitted",
                f"submission {submission_id} is {scheduler_id}",
                submission_id=submission_id,
            )

    def abandon(self, submission_id: int, reason: str, now: datetime) -> int:
        """The submission never reached the scheduler: its jobs go back to pending, unspent."""
        with self.transaction() as conn:
            job_ids = [
                r[0]
                for r in conn.execute(
                    sa.select(attempts_table.c.job_id).where(
                        attempts_table.c.submission_id == submission_id
                    )
                )
            ]
            conn.execute(
                attempts_table.delete().where(attempts_table.c.submission_id == submission_id)
            )
            conn.execute(
                jobs_table.update()
                .where(jobs_table.c.submission_id == submission_id)
                .where(jobs_table.c.state == "queued")
                .values(
                    state="pending",
                    attempts=jobs_table.c.attempts - 1,
                    submission_id=None,
                    task_index=None,
                    scheduler_id=None,
                    updated_at=now,
                )
            )
            conn.execute(
                submissions_table.update()
                .where(submissions_table.c.id == submission_id)
                .values(state="abandoned", error=reason, closed_at=now)
            )
            self._event(
                conn,
                now,
                "abandoned",
                f"submission {submission_id}: {reason}",
                submission_id=submission_id,
            )
        return len(job_ids)

    def apply(
        self,
        job_updates: Sequence[Mapping[str, Any]],
        attempt_updates: Sequence[Mapping[str, Any]],
        events: Sequence[Mapping[str, Any]],
        close: Sequence[int],
        now: datetime,
    ) -> None:
        """Write one reconciliation: job and attempt changes, events, closed submissions.

        Each job update has `id` plus the columns to set; each attempt update has
        `job_id`, `number` plus columns. Rows with the same columns go in one executemany.
        """
        with self.transaction() as conn:
            for table, keys, rows in (
                (jobs_table, ("id",), job_updates),
                (attempts_table, ("job_id", "number"), attempt_updates),
            ):
                extra = {"updated_at": now} if table is jobs_table else {}
                for columns, batch in _by_columns(rows, keys).items():
                    bulk_update(
                        conn,
                        table,
                        keys,
                        [*columns, *extra],
                        [{**r, **extra} for r in batch] if extra else batch,
                    )
            if events:
                conn.execute(
                    events_table.insert(),
                    [{"at": now, "job_id": None, "submission_id": None, **e} for e in events],
                )
            if close:
                conn.execute(
                    submissions_table.update()
                    .where(submissions_table.c.id.in_(list(close)))
                    .values(state="closed", closed_at=now)
                )

    def set_log_dir(self, submission_id: int, log_dir: str) -> None:
        """Record the array folder of a submission."""
        with self.transaction() as conn:
            conn.execute(
                submissions_table.update()
                .where(submissions_table.c.id == submission_id)
                .values(log_dir=log_dir)
            )

    def log_paths(self, job_ids: Sequence[int] | None) -> dict[int, str]:
        """The log of each job's latest attempt."""
        latest = (
            sa.select(attempts_table.c.job_id, sa.func.max(attempts_table.c.number).label("n"))
            .group_by(attempts_table.c.job_id)
            .subquery()
        )
        query = sa.select(attempts_table.c.job_id, attempts_table.c.log_path).join(
            latest,
            sa.and_(
                attempts_table.c.job_id == latest.c.job_id, attempts_table.c.number == latest.c.n
            ),
        )
        if job_ids is not None and len(job_ids) <= _MAX_IN:
            query = query.where(attempts_table.c.job_id.in_(list(job_ids)))
        with self.reading() as conn:
            rows = conn.execute(query).all()
        wanted = None if job_ids is None else set(job_ids)
        return {
            job_id: path for job_id, path in rows if path and (wanted is None or job_id in wanted)
        }

    def reset_jobs(self, job_ids: Sequence[int], *, clear_attempts: bool, now: datetime) -> None:
        """Put jobs back to pending (retry); `clear_attempts` also restores their attempt budget."""
        if not job_ids:
            return
        values: dict[str, Any] = {"state": "pending", "next_retry_at": None, "updated_at": now}
        if clear_attempts:
            values.update(
                attempts_base=jobs_table.c.attempts,
                failure_class=None,
                error=None,
                exit_code=None,
                time_scale=1.0,
                memory_scale=1.0,
            )
        with self.transaction() as conn:
            for chunk in _chunks(list(job_ids), _MAX_IN):
                conn.execute(jobs_table.update().where(jobs_table.c.id.in_(chunk)).values(**values))
            kind = "reset" if clear_attempts else "retry"
            self._event(conn, now, kind, f"{len(job_ids)} jobs back to pending")

    def cancel_open(self, submission_ids: Sequence[int], now: datetime) -> int:
        """Mark every queued/running job cancelled and close these submissions."""
        with self.transaction() as conn:
            n = (
                conn.execute(
                    jobs_table.update()
                    .where(jobs_table.c.state.in_(["queued", "running"]))
                    .values(
                        state="cancelled",
                        updated_at=now,
                        next_retry_at=None,
                        failure_class="cancelled",
                        error="cancelled by the user",
                    )
                ).rowcount
                or 0
            )
            if submission_ids:
                conn.execute(
                    attempts_table.update()
                    .where(attempts_table.c.submission_id.in_(list(submission_ids)))
                    .where(attempts_table.c.state.in_(["queued", "running"]))
                    .values(state="cancelled", failure_class="cancelled", ended_at=now)
                )
                conn.execute(
                    submissions_table.update()
                    .where(submissions_table.c.id.in_(list(submission_ids)))
                    .values(state="closed", closed_at=now)
                )
            self._event(conn, now, "cancel", f"{n} jobs cancelled by the user")
        return n

    def adopt_config(
        self,
        *,
        config: str,
        config_hash: str,
        groups: Sequence[Mapping[str, Any]],
        jobs: Iterable[Mapping[str, Any]],
        now: datetime,
    ) -> int:
        """`init --force`: take a changed config; keep every job's state, add new jobs."""
        with self.transaction() as conn:
            existing = {
                r.key: (r.id, r.output, r.state)
                for r in conn.execute(
                    sa.select(
                        jobs_table.c.key, jobs_table.c.id, jobs_table.c.output, jobs_table.c.state
                    )
                )
            }
            rows = list(jobs)
            new_keys = {r["key"] for r in rows}
            removed = [k for k in existing if k not in new_keys]
            if removed:
                from campaigns.errors import ConfigChangedError

                raise ConfigChangedError(
                    f"the new configuration drops {len(removed)} existing jobs "
                    f"(e.g. {removed[0]}); "
                    "a campaign never forgets jobs. Start a new campaign version instead."
                )
            moved = [
                r["key"]
                for r in rows
                if r["key"] in existing
                and existing[r["key"]][1] != r["output"]
                and existing[r["key"]][2] != "pending"
            ]
            if moved:
                from campaigns.errors import ConfigChangedError

                raise ConfigChangedError(
                    f"the new output template moves the outputs of {len(moved)} jobs that already "
                    f"ran (e.g. {moved[0]}); start a new campaign version instead."
                )
            conn.execute(campaign_table.update().values(config=config, config_hash=config_hash))
            conn.execute(groups_table.delete())
            conn.execute(groups_table.insert(), list(groups))
            updates = [
                {"b_id": existing[r["key"]][0], "b_group": r["group_id"], "b_out": r["output"]}
                for r in rows
                if r["key"] in existing
            ]
            if updates:
                conn.execute(
                    jobs_table.update()
                    .where(jobs_table.c.id == sa.bindparam("b_id"))
                    .values(group_id=sa.bindparam("b_group"), output=sa.bindparam("b_out")),
                    updates,
                )
            next_id = max((v[0] for v in existing.values()), default=0) + 1
            added = []
            for r in rows:
                if r["key"] not in existing:
                    added.append({**r, "id": next_id})
                    next_id += 1
            if added:
                conn.execute(jobs_table.insert(), added)
            self._event(
                conn,
                now,
                "config",
                f"configuration changed (init --force); {len(added)} jobs added",
            )
        return len(added)

    def add_event(self, kind: str, message: str, now: datetime, **ids: int | None) -> None:
        """Append one event."""
        with self.transaction() as conn:
            self._event(conn, now, kind, message, **ids)

    @staticmethod
    def _event(conn: Connection, now: datetime, kind: str, message: str, **ids: int | None) -> None:
        conn.execute(events_table.insert().values(at=now, kind=kind, message=message, **ids))

    # -- qa -------------------------------------------------------------------------

    def qa_targets(self) -> list[dict[str, Any]]:
        """Completed jobs with their latest attempt's number and manifest path, in job order."""
        latest = (
            sa.select(attempts_table.c.job_id, sa.func.max(attempts_table.c.number).label("n"))
            .group_by(attempts_table.c.job_id)
            .subquery()
        )
        query = (
            sa.select(
                jobs_table.c.id,
                jobs_table.c.key,
                jobs_table.c.uid,
                jobs_table.c.output,
                latest.c.n.label("attempt"),
                attempts_table.c.manifest_path,
                jobs_table.c.config_hash,
            )
            .select_from(
                jobs_table.outerjoin(latest, latest.c.job_id == jobs_table.c.id).outerjoin(
                    attempts_table,
                    sa.and_(
                        attempts_table.c.job_id == latest.c.job_id,
                        attempts_table.c.number == latest.c.n,
                    ),
                )
            )
            .where(jobs_table.c.state == "completed")
            .order_by(jobs_table.c.id)
        )
        with self.reading() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def mark_invalid(
        self, job_ids: Sequence[int], errors: Sequence[str], now: datetime
    ) -> tuple[list[int], list[int]]:
        """`qa --requeue`: completed jobs whose output is invalid become failed (invalid_output).

        The attempt that wrote the output is marked failed too and stays counted: a job
        that keeps writing bad outputs runs out of attempts instead of looping forever.
        Jobs with attempts left are due at once (`next_retry_at = now`); the others are
        exhausted until `retry --reset`. Jobs no longer `completed` are left alone.
        Returns (due job ids, exhausted job ids).
        """
        from campaigns.backoff import attempts_left

        if len(job_ids) != len(errors):
            raise ValueError("mark_invalid needs one error per job")
        error_of = dict(zip(job_ids, errors, strict=True))
        due: list[int] = []
        exhausted: list[int] = []
        with self.transaction() as conn:
            rows = [
                r
                for r in conn.execute(
                    sa.select(
                        jobs_table.c.id,
                        jobs_table.c.key,
                        jobs_table.c.attempts,
                        jobs_table.c.attempts_base,
                        groups_table.c.max_retries,
                    )
                    .join(groups_table, groups_table.c.id == jobs_table.c.group_id)
                    .where(jobs_table.c.state == "completed")
                )
                if r.id in error_of
            ]
            if not rows:
                return due, exhausted
            job_rows, attempt_rows, events = [], [], []
            for r in rows:
                left = attempts_left(r.attempts - r.attempts_base, r.max_retries)
                (due if left else exhausted).append(r.id)
                error = error_of[r.id]
                job_rows.append({"b_id": r.id, "b_error": error, "b_next": now if left else None})
                attempt_rows.append({"b_id": r.id, "b_n": r.attempts, "b_error": error})
                events.append(
                    {
                        "at": now,
                        "kind": "invalid",
                        "job_id": r.id,
                        "message": f"{r.key} attempt {r.attempts}: invalid_output ({error})",
                    }
                )
            conn.execute(
                jobs_table.update()
                .where(jobs_table.c.id == sa.bindparam("b_id"))
                .values(
                    state="failed",
                    failure_class="invalid_output",
                    error=sa.bindparam("b_error"),
                    next_retry_at=sa.bindparam("b_next"),
                    updated_at=now,
                ),
                job_rows,
            )
            conn.execute(
                attempts_table.update()
                .where(attempts_table.c.job_id == sa.bindparam("b_id"))
                .where(attempts_table.c.number == sa.bindparam("b_n"))
                .values(
                    state="failed", failure_class="invalid_output", error=sa.bindparam("b_error")
                ),
                attempt_rows,
            )
            conn.execute(events_table.insert(), events)
        return due, exhausted


def bulk_insert(conn: Connection, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert many rows through one driver-level executemany.

    The statement is compiled once for the connection's dialect (so the same code
    serves SQLite and PostgreSQL); rows go to the driver as plain tuples or dicts,
    skipping SQLAlchemy's per-row parameter processing, which dominated `init`
    at 40,000 jobs. Values must already be driver-ready (str, int, float, None).
    """
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return 0
    defaults = {
        c.name: c.default.arg  # type: ignore[attr-defined]
        for c in table.columns
        if c.default is not None and c.default.is_scalar and c.name not in first
    }
    columns = [*first, *defaults]
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=columns)
    order = compiled.positiontup
    if compiled.positional and order is not None:
        params: list[Any] = [tuple({**defaults, **first}[c] for c in order)]
        if defaults:
            params.extend(tuple({**defaults, **row}[c] for c in order) for row in iterator)
        else:
            params.extend(tuple(row[c] for c in order) for row in iterator)
    else:
        params = [{**defaults, **row} for row in (first, *iterator)]
    conn.exec_driver_sql(str(compiled), params)
    return len(params)


def bulk_update(
    conn: Connection,
    table: sa.Table,
    keys: Sequence[str],
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """`UPDATE table SET columns WHERE keys` for many rows through one driver executemany.

    Compiled once for the dialect; each value goes through its column type's bind
    processor (so datetimes are stored exactly as SQLAlchemy stores them), but the
    per-row parameter machinery of `Connection.execute` is skipped.
    """
    if not rows:
        return
    where = sa.and_(*[table.c[k] == sa.bindparam(f"k_{k}") for k in keys])
    statement = table.update().where(where).values({c: sa.bindparam(f"v_{c}") for c in columns})
    compiled = statement.compile(dialect=conn.dialect)
    names = compiled.positiontup if compiled.positional else list(compiled.binds)
    assert names is not None
    getters = []
    for name in names:
        column = table.c[name[2:]]
        processor = column.type._cached_bind_processor(conn.dialect)  # noqa: SLF001
        getters.append((name[2:], processor))

    def convert(row: Mapping[str, Any]) -> list[Any]:
        return [p(row[c]) if p is not None and row[c] is not None else row[c] for c, p in getters]

    if compiled.positional:
        params: list[Any] = [tuple(convert(r)) for r in rows]
    else:
        params = [dict(zip(names, convert(r), strict=True)) for r in rows]
    conn.exec_driver_sql(str(compiled), params)


def _by_columns(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    out: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        columns = tuple(sorted(c for c in row if c not in keys))
        out.setdefault(columns, []).append(row)
    return out


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
