"""`retry`: failed jobs whose backoff has elapsed go back to pending (and are submitted).

`reset_keys` instead gives the named jobs (any state but queued or running) a fresh
attempt budget. The caller holds the campaign lock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from campaigns.core.selection import Selection
from campaigns.core.states import JobState
from campaigns.errors import InputError
from campaigns.ops import submit as submitting
from campaigns.ops.breaker import refuse_if_open
from campaigns.ops.context import Context
from campaigns.ops.jobs import selected
from campaigns.ops.reports import RetryReport
from campaigns.ops.status import FAILURE_COLUMNS, failure, standing


def retry(
    ctx: Context,
    *,
    submit: bool = False,
    ignore_backoff: bool = False,
    dry_run: bool = False,
    reset_keys: Sequence[str] | None = None,
    reset: Selection | None = None,
    backend: str | None = None,
) -> RetryReport:
    """Put failed jobs whose backoff has elapsed back to pending; optionally submit them.

    `reset_keys` (job keys or uids) or a `reset` selection instead start the chosen jobs
    over, whatever their state but queued or running, with a fresh attempt budget.
    """
    if submit and not dry_run:
        refuse_if_open(ctx)  # before anything is reset
    if reset_keys:
        report = _reset_keys(ctx, reset_keys, dry_run)
    elif reset is not None:
        report = _reset_selected(ctx, reset, dry_run)
    else:
        report = _due(ctx, ignore_backoff, dry_run)
    if submit and report.reset:
        name = ctx.backend(backend or ctx.store.campaign().get("backend"))
        sub = submitting.submit(ctx, name, dry_run=dry_run, only_keys=report.reset)
        report = dataclasses.replace(report, submit=sub)
    return report


def _reset_keys(ctx: Context, keys: Sequence[str], dry_run: bool) -> RetryReport:
    store = ctx.store
    rows = store.jobs(keys=list(keys), columns=["id", "key", "uid", "state"])
    unknown = set(keys) - {r["key"] for r in rows} - {r["uid"] for r in rows}
    if unknown:
        raise InputError(
            f"no such job: {', '.join(sorted(unknown))}. Keys look like "
            f"'{ctx.expansion.jobs[0].key}' (see `status --verbose`)."
        )
    busy = [r["key"] for r in rows if JobState(r["state"]).is_open]
    if busy:
        raise InputError(f"cannot reset jobs that are queued or running: {', '.join(busy[:5])}.")
    return _start_over(ctx, rows, dry_run)


def _reset_selected(ctx: Context, selection: Selection, dry_run: bool) -> RetryReport:
    if selection.empty:
        raise InputError(
            "`retry --reset` needs job keys or a selection (--state, --class, --match): "
            "e.g. `retry --reset --state cancelled` resumes every cancelled job."
        )
    rows = selected(ctx, selection, ["id", "key", "uid", "state"])
    busy = sum(1 for r in rows if JobState(r["state"]).is_open)
    report = _start_over(ctx, [r for r in rows if not JobState(r["state"]).is_open], dry_run)
    return dataclasses.replace(report, left_alone=busy)


def _start_over(ctx: Context, rows: Sequence[Mapping[str, Any]], dry_run: bool) -> RetryReport:
    """Jobs (not queued or running) back to pending with a fresh attempt budget."""
    chosen = [r for r in rows if r["state"] != JobState.PENDING.value]
    if not dry_run:
        ctx.store.reset_jobs(
            [r["id"] for r in chosen],
            old={JobState(r["state"]) for r in chosen},
            clear_attempts=True,
            now=ctx.clock(),
        )
    return RetryReport([r["key"] for r in chosen], [], [], dry_run=dry_run, started_over=True)


def _due(ctx: Context, ignore_backoff: bool, dry_run: bool) -> RetryReport:
    store, now = ctx.store, ctx.clock()
    max_retries = {gid: g["max_retries"] for gid, g in store.groups().items()}
    failed = store.jobs(states=[JobState.FAILED.value], columns=FAILURE_COLUMNS)
    logs = store.log_paths([r["id"] for r in failed])
    reset, waiting, exhausted = [], [], []
    for row in failed:
        where = standing(row, max_retries, now)
        if where == "exhausted":
            exhausted.append(failure(row, where, logs.get(row["id"])))
        elif where == "due" or ignore_backoff:
            reset.append(row)
        else:
            waiting.append((row["key"], row["next_retry_at"]))
    if not dry_run and reset:
        store.reset_jobs([r["id"] for r in reset], clear_attempts=False, now=now)
    return RetryReport([r["key"] for r in reset], waiting, exhausted, dry_run=dry_run)
