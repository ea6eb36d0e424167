"""`status`: counts per state, failures and where the logs are. Reads the store only."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from campaigns.core.backoff import retry_standing
from campaigns.core.selection import Selection
from campaigns.core.states import JobState
from campaigns.ops.breaker import state as breaker_state
from campaigns.ops.context import Context
from campaigns.ops.jobs import job_rows
from campaigns.ops.reports import Failure, StatusReport

#: Columns of a failed job that a failure report needs.
FAILURE_COLUMNS = [
    "id",
    "key",
    "state",
    "attempts",
    "attempts_used",
    "next_retry_at",
    "failure_class",
    "error",
    "group_id",
    "ended_at",
]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def standing(row: Mapping[str, Any], max_retries: Mapping[int, int], now: datetime) -> str:
    """`due`, `waiting` or `exhausted`: where a failed job (a store row) stands."""
    return retry_standing(
        row["attempts_used"], max_retries[row["group_id"]], row["next_retry_at"], now
    )


def failure(row: Mapping[str, Any], standing_: str, log: str | None) -> Failure:
    """A failed job (a store row with FAILURE_COLUMNS) as the reports show it."""
    return Failure(
        row["key"],
        row["failure_class"],
        row["error"],
        row["attempts"],
        standing_ == "exhausted",
        row["next_retry_at"],
        log,
    )


def status(
    ctx: Context,
    verbose: bool = False,
    *,
    selection: Selection | None = None,
    reconciled_at: datetime | None = None,
    scheduler_error: str | None = None,
) -> StatusReport:
    """Counts per state, failures and where the logs are; reads the store only.

    `verbose` lists every job; `selection` lists the jobs it picks (up to its limit).
    """
    store = ctx.store
    counts = {s.value: 0 for s in JobState}
    counts.update(store.counts())
    now = ctx.clock()
    max_retries = {gid: g["max_retries"] for gid, g in store.groups().items()}
    failed = store.jobs(states=[JobState.FAILED.value], columns=FAILURE_COLUMNS)
    by_class: dict[str, int] = {}
    standings = {"due": 0, "waiting": 0, "exhausted": 0}
    standing_of = {}
    soonest = None
    for row in failed:
        label = row["failure_class"] or "unknown"
        by_class[label] = by_class.get(label, 0) + 1
        standing_of[row["id"]] = standing(row, max_retries, now)
        standings[standing_of[row["id"]]] += 1
        if standing_of[row["id"]] == "waiting" and (
            soonest is None or row["next_retry_at"] < soonest
        ):
            soonest = row["next_retry_at"]
    # The most recent failures first (jobs never run have no end time: they sort last).
    latest = sorted(failed, key=lambda r: r["ended_at"] or _EPOCH, reverse=True)[:10]
    logs = store.log_paths([r["id"] for r in latest])
    latest_failures = [failure(r, standing_of[r["id"]], logs.get(r["id"])) for r in latest]
    campaign = store.campaign()
    circuit = breaker_state(ctx)
    jobs, matched = None, None
    if verbose or selection is not None:
        jobs, matched = job_rows(ctx, selection or Selection())
    return StatusReport(
        name=ctx.spec.name,
        version=ctx.spec.version,
        path=str(ctx.layout.root),
        total=sum(counts.values()),
        counts=counts,
        failures_by_class=by_class,
        retry_due=standings["due"],
        retry_waiting=standings["waiting"],
        exhausted=standings["exhausted"],
        logs=str(ctx.layout.logs),
        backend=campaign.get("backend"),
        open_arrays=len(store.submissions(states=["submitted"])),
        latest_failures=latest_failures,
        jobs=jobs,
        jobs_matched=matched,
        reconciled_at=reconciled_at,
        unknown_scheduler=scheduler_error,
        next_retry_at=soonest,
        breaker_open_since=circuit.since if circuit.open else None,
        breaker_reason=circuit.reason if circuit.open else None,
        database=store.shown,
    )
