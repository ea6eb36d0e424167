"""Changes to the campaign database, each one transaction. They record what the
operations decided; every change of a job's state goes through `transitions.transition`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.core.states import FailureClass, JobState
from campaigns.store.base import Database, event
from campaigns.store.bulk import bulk_insert, bulk_update, by_columns
from campaigns.store.schema import (
    SCHEMA_VERSION,
    attempts_table,
    campaign_table,
    events_table,
    groups_table,
    jobs_table,
    meta_table,
    metadata,
    submissions_table,
)
from campaigns.store.transitions import transition


class Writes(Database):
    """The changes."""

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
            event(conn, now, "init", "campaign created")

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
                        "state": JobState.QUEUED.value,
                        "time_minutes": t.get("time_minutes"),
                        "memory_mb": t.get("memory_mb"),
                        "log_path": t.get("log_path"),
                        "manifest_path": t.get("manifest_path"),
                    }
                    for t in tasks
                ],
            )
            cleared = dict.fromkeys(
                (
                    "scheduler_id",
                    "next_retry_at",
                    "failure_class",
                    "exit_code",
                    "error",
                    "started_at",
                    "ended_at",
                )
            )
            # The config this attempt runs under: its manifest will carry the same.
            lineage = {"config_hash": config_hash} if config_hash else {}
            rows = [
                {
                    "id": t["job_id"],
                    "attempts": t["attempt"],
                    "submission_id": sub_id,
                    "task_index": t["task_index"],
                    **cleared,
                    **lineage,
                }
                for t in tasks
            ]
            transition(conn, rows, old={JobState.PENDING}, new=JobState.QUEUED, now=now)
            event(
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
            event(
                conn,
                now,
                "submitted",
                f"submission {submission_id} is {scheduler_id}",
                submission_id=submission_id,
            )

    def set_log_dir(self, submission_id: int, log_dir: str) -> None:
        """Record the array folder of a submission."""
        with self.transaction() as conn:
            conn.execute(
                submissions_table.update()
                .where(submissions_table.c.id == submission_id)
                .values(log_dir=log_dir)
            )

    def abandon(self, submission_id: int, reason: str, now: datetime) -> int:
        """The submission never reached the scheduler: its jobs go back to pending, unspent."""
        with self.transaction() as conn:
            queued = conn.execute(
                sa.select(jobs_table.c.id, jobs_table.c.attempts)
                .where(jobs_table.c.submission_id == submission_id)
                .where(jobs_table.c.state == JobState.QUEUED.value)
            ).all()
            conn.execute(
                attempts_table.delete().where(attempts_table.c.submission_id == submission_id)
            )
            rows = [
                {
                    "id": job_id,
                    "attempts": attempts - 1,
                    "submission_id": None,
                    "task_index": None,
                    "scheduler_id": None,
                }
                for job_id, attempts in queued
            ]
            transition(conn, rows, old={JobState.QUEUED}, new=JobState.PENDING, now=now)
            conn.execute(
                submissions_table.update()
                .where(submissions_table.c.id == submission_id)
                .values(state="abandoned", error=reason, closed_at=now)
            )
            event(
                conn,
                now,
                "abandoned",
                f"submission {submission_id}: {reason}",
                submission_id=submission_id,
            )
        return len(rows)

    def apply(
        self,
        job_updates: Sequence[Mapping[str, Any]],
        attempt_updates: Sequence[Mapping[str, Any]],
        events: Sequence[Mapping[str, Any]],
        close: Sequence[int],
        now: datetime,
    ) -> None:
        """Write one reconciliation: job and attempt changes, events, closed submissions.

        Each job update has `id`, `state` (the new one) and the columns to set; each attempt
        update has `job_id`, `number` plus columns. Rows that set the same columns go in one
        executemany.
        """
        moves: dict[str, list[dict[str, Any]]] = {}
        for update in job_updates:
            row = {k: v for k, v in update.items() if k != "state"}
            moves.setdefault(update["state"], []).append(row)
        with self.transaction() as conn:
            for state, rows in moves.items():
                transition(conn, rows, new=JobState(state), now=now)
            keys = ("job_id", "number")
            for columns, batch in by_columns(attempt_updates, keys).items():
                bulk_update(conn, attempts_table, keys, columns, batch)
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

    def reset_jobs(
        self,
        job_ids: Sequence[int],
        *,
        old: Collection[JobState] | None = None,
        clear_attempts: bool,
        now: datetime,
    ) -> None:
        """Put jobs back to pending (retry); `clear_attempts` also restores their attempt budget.

        `old`: the states the jobs are expected in (default: any the state machine allows).
        """
        if not job_ids:
            return
        wanted = set(job_ids)
        with self.transaction() as conn:
            values: dict[str, Any] = {"next_retry_at": None}
            if clear_attempts:
                values.update(
                    failure_class=None, error=None, exit_code=None, time_scale=1.0, memory_scale=1.0
                )
            attempts = conn.execute(sa.select(jobs_table.c.id, jobs_table.c.attempts)).all()
            rows = [
                {"id": job_id, **values, **({"attempts_base": n} if clear_attempts else {})}
                for job_id, n in attempts
                if job_id in wanted
            ]
            transition(conn, rows, old=old, new=JobState.PENDING, now=now)
            kind = "reset" if clear_attempts else "retry"
            event(conn, now, kind, f"{len(job_ids)} jobs back to pending")

    def cancel_open(self, submission_ids: Sequence[int], now: datetime) -> int:
        """Mark every queued/running job cancelled and close these submissions."""
        open_states = (JobState.QUEUED, JobState.RUNNING)
        cancelled = FailureClass.CANCELLED.value
        with self.transaction() as conn:
            ids = conn.execute(
                sa.select(jobs_table.c.id).where(
                    jobs_table.c.state.in_([s.value for s in open_states])
                )
            ).all()
            rows = [
                {
                    "id": job_id,
                    "next_retry_at": None,
                    "failure_class": cancelled,
                    "error": "cancelled by the user",
                }
                for (job_id,) in ids
            ]
            transition(conn, rows, old=set(open_states), new=JobState.CANCELLED, now=now)
            if submission_ids:
                conn.execute(
                    attempts_table.update()
                    .where(attempts_table.c.submission_id.in_(list(submission_ids)))
                    .where(attempts_table.c.state.in_([s.value for s in open_states]))
                    .values(state=JobState.CANCELLED.value, failure_class=cancelled, ended_at=now)
                )
                conn.execute(
                    submissions_table.update()
                    .where(submissions_table.c.id.in_(list(submission_ids)))
                    .values(state="closed", closed_at=now)
                )
            event(conn, now, "cancel", f"{len(ids)} jobs cancelled by the user")
        return len(ids)

    def fail_completed(self, failures: Sequence[Mapping[str, Any]], now: datetime) -> None:
        """`qa --requeue`: completed jobs whose output is invalid become failed.

        Each failure has `id`, `key`, `attempts` (the attempt that wrote the output, which
        is marked failed too), `failure_class`, `error` and `next_retry_at` (decided by the
        retry policy: None when the job is exhausted).
        """
        if not failures:
            return
        with self.transaction() as conn:
            columns = ("id", "failure_class", "error", "next_retry_at")
            rows = [{c: f[c] for c in columns} for f in failures]
            transition(conn, rows, old={JobState.COMPLETED}, new=JobState.FAILED, now=now)
            bulk_update(
                conn,
                attempts_table,
                ("job_id", "number"),
                ("state", "failure_class", "error"),
                [
                    {
                        "job_id": f["id"],
                        "number": f["attempts"],
                        "state": JobState.FAILED.value,
                        "failure_class": f["failure_class"],
                        "error": f["error"],
                    }
                    for f in failures
                ],
            )
            conn.execute(
                events_table.insert(),
                [
                    {
                        "at": now,
                        "kind": "invalid",
                        "job_id": f["id"],
                        "message": f"{f['key']} attempt {f['attempts']}: "
                        f"{f['failure_class']} ({f['error']})",
                    }
                    for f in failures
                ],
            )

    def adopt_config(
        self,
        *,
        config: str,
        config_hash: str,
        groups: Sequence[Mapping[str, Any]],
        jobs: Iterable[Mapping[str, Any]],
        now: datetime,
    ) -> int:
        """`init --force`: store a changed config; existing jobs keep their state and get their
        new group and output, new jobs are added (pending). The caller has checked the change."""
        with self.transaction() as conn:
            existing = dict(conn.execute(sa.select(jobs_table.c.key, jobs_table.c.id)).all())
            conn.execute(campaign_table.update().values(config=config, config_hash=config_hash))
            conn.execute(groups_table.delete())
            conn.execute(groups_table.insert(), list(groups))
            updates, added = [], []
            next_id = max(existing.values(), default=0) + 1
            for row in jobs:
                if row["key"] in existing:
                    updates.append(
                        {
                            "id": existing[row["key"]],
                            "group_id": row["group_id"],
                            "output": row["output"],
                        }
                    )
                else:
                    added.append({**row, "id": next_id})
                    next_id += 1
            bulk_update(conn, jobs_table, ("id",), ("group_id", "output"), updates)
            bulk_insert(conn, jobs_table, added)
            event(
                conn,
                now,
                "config",
                f"configuration changed (init --force); {len(added)} jobs added",
            )
        return len(added)
