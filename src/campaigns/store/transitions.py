"""The one place a job's state changes.

Every write that moves jobs between states goes through `transition`. Inside the
caller's transaction it reads each job's stored state, refuses a move the state
machine does not allow (`core.states.check_transition`) before anything is written,
and guards each update with the state it read, so the step either moves every job
as checked or rolls back whole.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.core.states import JobState, check_transition
from campaigns.errors import StoreError
from campaigns.store.bulk import MAX_IN, bulk_update, by_columns
from campaigns.store.schema import jobs_table


def transition(
    conn: Connection,
    rows: Sequence[Mapping[str, Any]],
    *,
    campaign: int,
    new: JobState,
    now: datetime,
    old: Collection[JobState] | None = None,
) -> int:
    """Move the jobs in `rows` (each: `id` plus the other columns to set) of `campaign` to `new`.

    `old`, if given, is where the caller expects the jobs to be: a job elsewhere is an
    error too. Raises `IllegalTransitionError` for a move the state machine forbids and
    `StoreError` for a job that is missing or not where expected; nothing is written
    then. Returns the number of jobs moved.
    """
    if not rows:
        return 0
    stored = _states(conn, campaign, [r["id"] for r in rows])
    by_state: dict[JobState, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row["id"] not in stored:
            raise StoreError(f"job {row['id']} is not in the campaign's database.")
        state = JobState(stored[row["id"]])
        if old is not None and state not in old:
            expected = " or ".join(sorted(s.value for s in old))
            raise StoreError(
                f"job {row['id']} is {state.value}, not {expected}: another process changed "
                "it. Nothing was written; run the command again."
            )
        check_transition(state, new)
        by_state.setdefault(state, []).append(row)
    extra = {"state": new.value, "updated_at": now}
    moved = 0
    for state, group in by_state.items():
        # The state is compared through an expression no index serves: PostgreSQL, with
        # statistics from before the jobs moved (every job `pending` at `init`), otherwise
        # walked the (campaign, state) index instead of the key for each row: quadratic,
        # 75 s for a reconciliation of 40,000 jobs instead of about 3.
        stored_state = sa.func.coalesce(jobs_table.c.state, "")
        guard = sa.and_(jobs_table.c.campaign_id == campaign, stored_state == state.value)
        for columns, batch in by_columns(group, ("id",)).items():
            names = sorted({*columns, *extra})
            moved += bulk_update(
                conn, jobs_table, ("id",), names, [{**r, **extra} for r in batch], where=guard
            )
    if moved != len(rows):
        raise StoreError(
            f"{len(rows) - moved} of {len(rows)} jobs changed state while being moved to "
            f"{new.value}: another process wrote meanwhile. Nothing was written; run the "
            "command again."
        )
    return moved


def _states(conn: Connection, campaign: int, ids: Sequence[int]) -> dict[int, str]:
    """The stored state of each job in `ids`."""
    query = sa.select(jobs_table.c.id, jobs_table.c.state).where(
        jobs_table.c.campaign_id == campaign
    )
    if len(ids) <= MAX_IN:
        return dict(conn.execute(query.where(jobs_table.c.id.in_(list(ids)))).all())
    # Many ids: one range scan beats thousands of bound parameters (an array's jobs are
    # mostly neighbours, so the range is rarely much wider than the list).
    wanted = set(ids)
    query = query.where(jobs_table.c.id.between(min(wanted), max(wanted)))
    return {i: s for i, s in conn.execute(query).all() if i in wanted}
