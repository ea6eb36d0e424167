"""A submission's life in the store, each step one transaction: the intent recorded before
the scheduler hears of it, the scheduler id once it accepted, abandonment when it never
did, and each reconciliation's changes. Every job state change goes through
`transitions.transition`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.core.states import JobState
from campaigns.store.base import Database, event
from campaigns.store.bulk import bulk_update, by_columns
from campaigns.store.schema import attempts_table, events_table, jobs_table, submissions_table
from campaigns.store.transitions import transition


class Lifecycle(Database):
    """The steps of a submission."""

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
        campaign = self.cid
        with self.transaction() as conn:
            # Ids count within the campaign; the caller holds the campaign's lock or lease.
            sub_id = 1 + int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(submissions_table.c.id), 0)).where(
                        submissions_table.c.campaign_id == campaign
                    )
                ).scalar_one()
            )
            conn.execute(
                submissions_table.insert().values(
                    **submission, campaign_id=campaign, id=sub_id, state="intent", created_at=now
                )
            )
            conn.execute(
                attempts_table.insert(),
                [
                    {
                        "campaign_id": campaign,
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
            transition(
                conn, rows, campaign=campaign, old={JobState.PENDING}, new=JobState.QUEUED, now=now
            )
            event(
                conn,
                campaign,
                now,
                "intent",
                f"{len(tasks)} jobs in submission {sub_id}",
                submission_id=sub_id,
            )
        return sub_id

    def mark_submitted(
        self, submission_id: int, scheduler_id: str, log_paths: Mapping[int, str], now: datetime
    ) -> bool:
        """The scheduler accepted the submission as `scheduler_id`; `log_paths` per task index.

        Only an `intent` becomes `submitted`: a submission already abandoned (its jobs given
        back, perhaps resubmitted by then) stays so, its jobs untouched; False says the array
        reached the scheduler too late, and an event records its id.
        """
        campaign = self.cid
        with self.transaction() as conn:
            moved = conn.execute(
                submissions_table.update()
                .where(submissions_table.c.campaign_id == campaign)
                .where(submissions_table.c.id == submission_id)
                .where(submissions_table.c.state == "intent")
                .values(state="submitted", scheduler_id=scheduler_id, submitted_at=now)
            )
            if moved.rowcount != 1:
                event(
                    conn,
                    campaign,
                    now,
                    "late",
                    f"submission {submission_id} reached the scheduler as {scheduler_id} "
                    "after it was given up; it stays abandoned (cancel that array if it runs)",
                    submission_id=submission_id,
                )
                return False
            # Updated by key, each row once: matching on (submission, task index) per task
            # made every statement scan the array's rows, quadratic in its size (a 1,000-task
            # array took seconds).
            for table in (jobs_table, attempts_table):
                members = conn.execute(
                    sa.select(table.c.id, table.c.task_index)
                    .where(table.c.campaign_id == campaign)
                    .where(table.c.submission_id == submission_id)
                ).all()
                attempts = table is attempts_table
                rows: list[dict[str, Any]] = []
                for row_id, index in members:
                    if index in log_paths:
                        row = {"id": row_id, "scheduler_id": f"{scheduler_id}_{index}"}
                        if attempts:
                            row["log_path"] = log_paths[index]
                        rows.append(row)
                columns = ["scheduler_id", "log_path"] if attempts else ["scheduler_id"]
                bulk_update(
                    conn, table, ("id",), columns, rows, where=table.c.campaign_id == campaign
                )
            event(
                conn,
                campaign,
                now,
                "submitted",
                f"submission {submission_id} is {scheduler_id}",
                submission_id=submission_id,
            )
        return True

    def set_log_dir(self, submission_id: int, log_dir: str) -> None:
        """Record the array folder of a submission."""
        with self.transaction() as conn:
            conn.execute(
                submissions_table.update()
                .where(submissions_table.c.campaign_id == self.cid)
                .where(submissions_table.c.id == submission_id)
                .values(log_dir=log_dir)
            )

    def abandon(self, submission_id: int, reason: str, now: datetime) -> int:
        """The submission never reached the scheduler: its jobs go back to pending, unspent."""
        campaign = self.cid
        with self.transaction() as conn:
            queued = conn.execute(
                sa.select(jobs_table.c.id, jobs_table.c.attempts)
                .where(jobs_table.c.campaign_id == campaign)
                .where(jobs_table.c.submission_id == submission_id)
                .where(jobs_table.c.state == JobState.QUEUED.value)
            ).all()
            conn.execute(
                attempts_table.delete()
                .where(attempts_table.c.campaign_id == campaign)
                .where(attempts_table.c.submission_id == submission_id)
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
            transition(
                conn, rows, campaign=campaign, old={JobState.QUEUED}, new=JobState.PENDING, now=now
            )
            conn.execute(
                submissions_table.update()
                .where(submissions_table.c.campaign_id == campaign)
                .where(submissions_table.c.id == submission_id)
                .values(state="abandoned", error=reason, closed_at=now)
            )
            event(
                conn,
                campaign,
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
        campaign = self.cid
        mine = attempts_table.c.campaign_id == campaign
        with self.transaction() as conn:
            for state, rows in moves.items():
                transition(conn, rows, campaign=campaign, new=JobState(state), now=now)
            keys = ("job_id", "number")
            for columns, batch in by_columns(attempt_updates, keys).items():
                bulk_update(conn, attempts_table, keys, columns, batch, where=mine)
            if events:
                conn.execute(
                    events_table.insert(),
                    [
                        {"campaign_id": campaign, "at": now, "job_id": None, "submission_id": None}
                        | dict(e)
                        for e in events
                    ],
                )
            if close:
                conn.execute(
                    submissions_table.update()
                    .where(submissions_table.c.campaign_id == campaign)
                    .where(submissions_table.c.id.in_(list(close)))
                    .values(state="closed", closed_at=now)
                )
