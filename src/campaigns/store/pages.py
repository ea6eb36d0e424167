"""Queries for browsing a campaign a page at a time (the web dashboard's): bulk SQL only.

A filtered page of jobs (LIMIT/OFFSET, with the total that matches), one job by key or
uid, and completions per time bucket. Nothing here returns every row of a large table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.store import schema as db
from campaigns.store.base import Database

_jobs, _groups, _attempts = db.jobs_table, db.groups_table, db.attempts_table
#: The columns of a job on a page (besides the derived `attempts_used` and `max_retries`).
PAGE_COLUMNS = (
    "id",
    "key",
    "uid",
    "params",
    "output",
    "state",
    "attempts",
    "next_retry_at",
    "scheduler_id",
    "failure_class",
    "exit_code",
    "error",
    "started_at",
    "ended_at",
    "updated_at",
)
STANDINGS = ("due", "waiting", "exhausted")


@dataclass(frozen=True)
class JobQuery:
    """Which jobs a page shows: every field narrows (None: any)."""

    states: Sequence[str] | None = None
    failure_class: str | None = None
    standing: str | None = None  # due | waiting | exhausted (failed jobs only)
    search: str | None = None  # a substring of the job key


def _used() -> Any:
    return (_jobs.c.attempts - _jobs.c.attempts_base).label("attempts_used")


def _joined() -> Any:
    """Jobs with their group (groups are numbered per campaign)."""
    return _jobs.join(
        _groups,
        sa.and_(_groups.c.campaign_id == _jobs.c.campaign_id, _groups.c.id == _jobs.c.group_id),
    )


def _job_rows(campaign: int) -> Any:
    """SELECT a campaign's jobs: page columns, `attempts_used`, the group's `max_retries`."""
    return (
        sa.select(*[_jobs.c[c] for c in PAGE_COLUMNS], _used(), _groups.c.max_retries)
        .select_from(_joined())
        .where(_jobs.c.campaign_id == campaign)
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Pages(Database):
    """Paged and aggregated reads."""

    def job_page(
        self, query: JobQuery, now: datetime, *, offset: int = 0, limit: int = 50
    ) -> tuple[int, list[dict[str, Any]]]:
        """The jobs matching `query`, in campaign order: (how many match, rows offset..+limit)."""
        exhausted = sa.or_(_used() >= _groups.c.max_retries + 1, _jobs.c.next_retry_at.is_(None))
        conditions: list[Any] = [_jobs.c.campaign_id == self.cid]
        if query.states is not None:
            conditions.append(_jobs.c.state.in_(list(query.states)))
        if query.failure_class is not None:
            conditions.append(_jobs.c.failure_class == query.failure_class)
        if query.search:
            pattern = f"%{_escape_like(query.search)}%"
            conditions.append(_jobs.c.key.like(pattern, escape="\\"))
        if query.standing is not None:
            conditions.append(_jobs.c.state == "failed")
            if query.standing == "exhausted":
                conditions.append(exhausted)
            else:
                due = _jobs.c.next_retry_at <= now
                conditions += [sa.not_(exhausted), due if query.standing == "due" else ~due]
        where = sa.and_(*conditions)
        count = sa.select(sa.func.count()).select_from(_joined()).where(where)
        rows = _job_rows(self.cid).where(where).order_by(_jobs.c.id).offset(offset).limit(limit)
        with self.reading() as conn:
            total = int(conn.execute(count).scalar_one())
            return total, [dict(r) for r in conn.execute(rows).mappings()]

    def job_by_reference(self, reference: str) -> dict[str, Any] | None:
        """One job by its key or uid (with `attempts_used` and `max_retries`), or None."""
        query = (
            _job_rows(self.cid)
            .where(sa.or_(_jobs.c.uid == reference, _jobs.c.key == reference))
            .limit(1)
        )
        with self.reading() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else dict(row)

    def activity_start(self) -> datetime | None:
        """When the campaign's first array was recorded (None before any submission)."""
        with self.reading() as conn:
            subs = db.submissions_table
            return conn.execute(
                sa.select(sa.func.min(subs.c.created_at)).where(subs.c.campaign_id == self.cid)
            ).scalar()

    def ended_per_bucket(self, start: datetime, bucket_seconds: int) -> dict[str, dict[int, int]]:
        """Since `start`, per bucket of `bucket_seconds`: jobs now completed by when they
        ended (`completed`), and failed attempts by when they ended (`failed_attempts`)."""
        start_epoch = int(start.timestamp())

        def bucket(column: Any) -> Any:
            offset = (
                sa.cast(sa.extract("epoch", column), sa.Integer) - start_epoch
            ) / bucket_seconds
            return sa.cast(offset, sa.Integer).label("bucket")

        completed = bucket(_jobs.c.ended_at)
        failed = bucket(_attempts.c.ended_at)
        queries = {
            "completed": sa.select(completed, sa.func.count())
            .where(_jobs.c.campaign_id == self.cid)
            .where(_jobs.c.state == "completed", _jobs.c.ended_at >= start)
            .group_by(completed),
            "failed_attempts": sa.select(failed, sa.func.count())
            .where(_attempts.c.campaign_id == self.cid)
            .where(_attempts.c.state == "failed", _attempts.c.ended_at >= start)
            .group_by(failed),
        }
        with self.reading() as conn:
            return {
                name: {int(b): int(n) for b, n in conn.execute(q).all()}
                for name, q in queries.items()
            }
