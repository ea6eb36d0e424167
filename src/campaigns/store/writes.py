"""Changes to one campaign in its database, each one transaction: creation, config
adoption, resets, cancellation, qa's requeue. They record what the operations decided;
every change of a job's state goes through `transitions.transition`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.core.states import FailureClass, JobState
from campaigns.errors import InputError
from campaigns.store.base import Database, event
from campaigns.store.bulk import bulk_insert, bulk_update
from campaigns.store.schema import (
    attempts_table,
    campaigns_table,
    events_table,
    groups_table,
    jobs_table,
    leases_table,
    submissions_table,
)
from campaigns.store.transitions import transition
from campaigns.store.version import prepare


class Writes(Database):
    """The changes."""

    def create(
        self,
        campaign: Mapping[str, Any],
        groups: Sequence[Mapping[str, Any]],
        jobs: Iterable[Mapping[str, Any]],
        now: datetime,
    ) -> int:
        """Create the schema if the database has none, then the campaign (found by its slug
        from now on) with every job, in one transaction. Returns the campaign's id."""
        with self.transaction() as conn:
            prepare(conn, self.shown)
            taken = conn.execute(
                sa.select(campaigns_table.c.id).where(campaigns_table.c.slug == campaign["slug"])
            ).first()
            if taken is not None:
                raise InputError(
                    f"the database {self.shown} already holds a campaign '{campaign['slug']}'; "
                    "use another campaign.version, or another --db-url."
                )
            cid = int(
                conn.execute(
                    campaigns_table.insert().values(**campaign, created_at=now)
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            conn.execute(groups_table.insert(), [{**g, "campaign_id": cid} for g in groups])
            bulk_insert(conn, jobs_table, jobs, fixed={"campaign_id": cid})
            conn.execute(leases_table.insert().values(campaign_id=cid))
            event(conn, cid, now, "init", "campaign created")
        self.slug, self._cid = str(campaign["slug"]), cid
        return cid

    def set_backend(self, backend: str) -> None:
        """Remember the backend the campaign last submitted to."""
        with self.transaction() as conn:
            conn.execute(
                campaigns_table.update()
                .where(campaigns_table.c.id == self.cid)
                .values(backend=backend)
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
        campaign = self.cid
        with self.transaction() as conn:
            values: dict[str, Any] = {"next_retry_at": None}
            if clear_attempts:
                values.update(
                    failure_class=None, error=None, exit_code=None, time_scale=1.0, memory_scale=1.0
                )
            rows = [{"id": job_id, **values} for job_id in job_ids]
            if clear_attempts:  # the new budget starts at the attempts made so far
                made = dict(
                    conn.execute(
                        sa.select(jobs_table.c.id, jobs_table.c.attempts).where(
                            jobs_table.c.campaign_id == campaign
                        )
                    ).all()
                )
                rows = [{**r, "attempts_base": made[r["id"]]} for r in rows if r["id"] in made]
            transition(conn, rows, campaign=campaign, old=old, new=JobState.PENDING, now=now)
            kind = "reset" if clear_attempts else "retry"
            event(conn, campaign, now, kind, f"{len(job_ids)} jobs back to pending")

    def cancel_open(self, submission_ids: Sequence[int], now: datetime) -> int:
        """Mark every queued/running job cancelled and close these submissions."""
        open_states = (JobState.QUEUED, JobState.RUNNING)
        cancelled = FailureClass.CANCELLED.value
        campaign = self.cid
        with self.transaction() as conn:
            ids = conn.execute(
                sa.select(jobs_table.c.id)
                .where(jobs_table.c.campaign_id == campaign)
                .where(jobs_table.c.state.in_([s.value for s in open_states]))
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
            transition(
                conn, rows, campaign=campaign, old=set(open_states), new=JobState.CANCELLED, now=now
            )
            if submission_ids:
                conn.execute(
                    attempts_table.update()
                    .where(attempts_table.c.campaign_id == campaign)
                    .where(attempts_table.c.submission_id.in_(list(submission_ids)))
                    .where(attempts_table.c.state.in_([s.value for s in open_states]))
                    .values(state=JobState.CANCELLED.value, failure_class=cancelled, ended_at=now)
                )
                conn.execute(
                    submissions_table.update()
                    .where(submissions_table.c.campaign_id == campaign)
                    .where(submissions_table.c.id.in_(list(submission_ids)))
                    .values(state="closed", closed_at=now)
                )
            event(conn, campaign, now, "cancel", f"{len(ids)} jobs cancelled by the user")
        return len(ids)

    def fail_completed(self, failures: Sequence[Mapping[str, Any]], now: datetime) -> None:
        """`qa --requeue`: completed jobs whose output is invalid become failed.

        Each failure has `id`, `key`, `attempts` (the attempt that wrote the output, which
        is marked failed too), `failure_class`, `error` and `next_retry_at` (decided by the
        retry policy: None when the job is exhausted).
        """
        if not failures:
            return
        campaign = self.cid
        with self.transaction() as conn:
            columns = ("id", "failure_class", "error", "next_retry_at")
            rows = [{c: f[c] for c in columns} for f in failures]
            transition(
                conn,
                rows,
                campaign=campaign,
                old={JobState.COMPLETED},
                new=JobState.FAILED,
                now=now,
            )
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
                where=attempts_table.c.campaign_id == campaign,
            )
            conn.execute(
                events_table.insert(),
                [
                    {
                        "campaign_id": campaign,
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
        campaign = self.cid
        with self.transaction() as conn:
            existing = dict(
                conn.execute(
                    sa.select(jobs_table.c.key, jobs_table.c.id).where(
                        jobs_table.c.campaign_id == campaign
                    )
                ).all()
            )
            conn.execute(
                campaigns_table.update()
                .where(campaigns_table.c.id == campaign)
                .values(config=config, config_hash=config_hash)
            )
            conn.execute(groups_table.delete().where(groups_table.c.campaign_id == campaign))
            conn.execute(groups_table.insert(), [{**g, "campaign_id": campaign} for g in groups])
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
            bulk_update(
                conn,
                jobs_table,
                ("id",),
                ("group_id", "output"),
                updates,
                where=jobs_table.c.campaign_id == campaign,
            )
            bulk_insert(conn, jobs_table, added, fixed={"campaign_id": campaign})
            event(
                conn,
                campaign,
                now,
                "config",
                f"configuration changed (init --force); {len(added)} jobs added",
            )
        return len(added)
