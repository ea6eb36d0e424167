"""Queries of one campaign in its database. Reads only; nothing here decides anything."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.store import schema as db
from campaigns.store.base import Database
from campaigns.store.bulk import MAX_IN
from campaigns.store.version import revision

#: Derived columns `Reads.jobs` can return besides the table's own.
DERIVED = {
    # The attempts that count against the retry budget (`retry --reset` starts a new budget).
    "attempts_used": (db.jobs_table.c.attempts - db.jobs_table.c.attempts_base).label(
        "attempts_used"
    ),
}


class Reads(Database):
    """The queries."""

    def schema_revision(self) -> str | None:
        """The schema revision the database holds (None before any campaign was created)."""
        with self.reading() as conn:
            return revision(conn)

    def _own(self, table: sa.Table, key: str = "campaign_id") -> list[dict[str, Any]]:
        """The rows of `table` that belong to this campaign."""
        with self.reading() as conn:
            query = sa.select(table).where(table.c[key] == self.cid)
            return [dict(r) for r in conn.execute(query).mappings()]

    def campaign(self) -> dict[str, Any]:
        """The campaign's row."""
        (row,) = self._own(db.campaigns_table, "id")
        return row

    def groups(self) -> dict[int, dict[str, Any]]:
        """Job groups by id, resources decoded."""
        rows = self._own(db.groups_table)
        return {
            r["id"]: {"resources": json.loads(r["resources"]), "max_retries": r["max_retries"]}
            for r in rows
        }

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""
        with self.reading() as conn:
            rows = conn.execute(
                sa.select(db.jobs_table.c.state, sa.func.count())
                .where(db.jobs_table.c.campaign_id == self.cid)
                .group_by(db.jobs_table.c.state)
            ).all()
        return {state: n for state, n in rows}

    def jobs(
        self,
        *,
        states: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        keys: Sequence[str] | None = None,
        failure_classes: Sequence[str] | None = None,
        limit: int | None = None,
        submission_ids: Sequence[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Job rows (as dicts), in expansion order, optionally filtered.

        `columns` may name the table's columns and the derived ones in `DERIVED`;
        by default every table column plus `attempts_used`.
        """
        names = list(columns) if columns else [*db.jobs_table.c.keys(), *DERIVED]
        # Long id/key lists are filtered here rather than as thousands of bound parameters.
        big = (ids is not None and len(ids) > MAX_IN) or (keys is not None and len(keys) > MAX_IN)
        extra = [c for c in ("id", "key", "uid") if c not in names] if big else []
        query = sa.select(
            *[DERIVED[c] if c in DERIVED else db.jobs_table.c[c] for c in names + extra]
        )
        query = query.where(db.jobs_table.c.campaign_id == self.cid).order_by(db.jobs_table.c.id)
        if states is not None:
            query = query.where(db.jobs_table.c.state.in_(list(states)))
        if failure_classes is not None:
            query = query.where(db.jobs_table.c.failure_class.in_(list(failure_classes)))
        if submission_ids is not None:  # open arrays: a few at a time
            query = query.where(db.jobs_table.c.submission_id.in_(list(submission_ids)))
        if ids is not None and not big:
            query = query.where(db.jobs_table.c.id.in_(list(ids)))
        if keys is not None and not big:
            query = query.where(
                sa.or_(db.jobs_table.c.key.in_(list(keys)), db.jobs_table.c.uid.in_(list(keys)))
            )
        if limit is not None and not big:
            query = query.limit(limit)
        with self.reading() as conn:
            result = conn.execute(query)
            fields = list(result.keys())  # once, not per row: 100,000 rows on a tick
            rows = [dict(zip(fields, r, strict=True)) for r in result]
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
        query = (
            sa.select(db.submissions_table)
            .where(db.submissions_table.c.campaign_id == self.cid)
            .order_by(db.submissions_table.c.id)
        )
        if states is not None:
            query = query.where(db.submissions_table.c.state.in_(list(states)))
        with self.reading() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def attempts(self, job_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Attempt rows, by job then number."""
        query = (
            sa.select(db.attempts_table)
            .where(db.attempts_table.c.campaign_id == self.cid)
            .order_by(db.attempts_table.c.job_id, db.attempts_table.c.number)
        )
        if job_ids is not None:
            query = query.where(db.attempts_table.c.job_id.in_(list(job_ids)))
        with self.reading() as conn:
            result = conn.execute(query)
            fields = list(result.keys())  # once, not per row (the plots read them all)
            return [dict(zip(fields, r, strict=True)) for r in result]

    def open_task_count(self) -> int:
        """Array tasks of this campaign now queued or running (for the queue cap)."""
        open_jobs = sa.and_(
            db.jobs_table.c.campaign_id == self.cid,
            db.jobs_table.c.state.in_(["queued", "running"]),
        )
        query = sa.select(
            sa.func.count(
                sa.distinct(sa.tuple_(db.jobs_table.c.submission_id, db.jobs_table.c.task_index))
            )
        ).where(open_jobs)
        with self.reading() as conn:
            try:
                return int(conn.execute(query).scalar_one())
            except sa.exc.DBAPIError:  # backends without tuple COUNT DISTINCT
                rows = conn.execute(
                    sa.select(db.jobs_table.c.submission_id, db.jobs_table.c.task_index)
                    .where(open_jobs)
                    .distinct()
                ).all()
                return len(rows)

    def runtimes(self) -> list[float]:
        """Seconds from start to end of every completed attempt."""
        query = (
            sa.select(db.attempts_table.c.started_at, db.attempts_table.c.ended_at)
            .where(db.attempts_table.c.campaign_id == self.cid)
            .where(db.attempts_table.c.state == "completed")
            .where(db.attempts_table.c.started_at.is_not(None))
            .where(db.attempts_table.c.ended_at.is_not(None))
        )
        with self.reading() as conn:
            return [(end - start).total_seconds() for start, end in conn.execute(query)]

    def recent_outcomes(self, limit: int, since: datetime | None = None) -> list[bool]:
        """Whether each of the `limit` most recently finished attempts (ended after `since`)
        failed, newest first; cancelled attempts are left out."""
        attempts = db.attempts_table
        query = (
            sa.select(attempts.c.state)
            .where(attempts.c.campaign_id == self.cid)
            .where(attempts.c.state.in_(["completed", "failed"]))
            .where(
                sa.or_(attempts.c.failure_class.is_(None), attempts.c.failure_class != "cancelled")
            )
            .where(attempts.c.ended_at.is_not(None))
            .order_by(attempts.c.ended_at.desc(), attempts.c.id.desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(attempts.c.ended_at > since)
        with self.reading() as conn:
            return [state == "failed" for (state,) in conn.execute(query)]

    def events(self, limit: int = 50, kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The newest events (of these kinds), newest last."""
        query = (
            sa.select(db.events_table)
            .where(db.events_table.c.campaign_id == self.cid)
            .order_by(db.events_table.c.id.desc())
            .limit(limit)
        )
        if kinds is not None:
            query = query.where(db.events_table.c.kind.in_(list(kinds)))
        with self.reading() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        return rows[::-1]

    def _latest_attempts(self) -> Any:
        """A subquery: each job's latest attempt number (`job_id`, `n`)."""
        attempts = db.attempts_table
        return (
            sa.select(attempts.c.job_id, sa.func.max(attempts.c.number).label("n"))
            .where(attempts.c.campaign_id == self.cid)
            .group_by(attempts.c.job_id)
            .subquery()
        )

    def log_paths(self, job_ids: Sequence[int] | None) -> dict[int, str]:
        """The log of each job's latest attempt."""
        latest = self._latest_attempts()
        query = sa.select(db.attempts_table.c.job_id, db.attempts_table.c.log_path).join(
            latest,
            sa.and_(
                db.attempts_table.c.campaign_id == self.cid,
                db.attempts_table.c.job_id == latest.c.job_id,
                db.attempts_table.c.number == latest.c.n,
            ),
        )
        if job_ids is not None and len(job_ids) <= MAX_IN:
            query = query.where(db.attempts_table.c.job_id.in_(list(job_ids)))
        with self.reading() as conn:
            rows = conn.execute(query).all()
        wanted = None if job_ids is None else set(job_ids)
        return {
            job_id: path for job_id, path in rows if path and (wanted is None or job_id in wanted)
        }

    def qa_targets(self) -> list[dict[str, Any]]:
        """Completed jobs with their latest attempt's number and manifest path, in job order."""
        latest = self._latest_attempts()
        query = (
            sa.select(
                db.jobs_table.c.id,
                db.jobs_table.c.key,
                db.jobs_table.c.uid,
                db.jobs_table.c.output,
                latest.c.n.label("attempt"),
                db.attempts_table.c.manifest_path,
                db.jobs_table.c.config_hash,
            )
            .select_from(
                db.jobs_table.outerjoin(latest, latest.c.job_id == db.jobs_table.c.id).outerjoin(
                    db.attempts_table,
                    sa.and_(
                        db.attempts_table.c.campaign_id == self.cid,
                        db.attempts_table.c.job_id == latest.c.job_id,
                        db.attempts_table.c.number == latest.c.n,
                    ),
                )
            )
            .where(db.jobs_table.c.campaign_id == self.cid)
            .where(db.jobs_table.c.state == "completed")
            .order_by(db.jobs_table.c.id)
        )
        with self.reading() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]
