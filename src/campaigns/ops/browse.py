"""Browse a campaign a page at a time: filtered jobs, one job with its attempts. Reads only.

What a viewer (the web dashboard) shows of jobs never needs every row: `job_page`
returns at most `MAX_PAGE` jobs with the number that match.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from campaigns.core.backoff import retry_standing
from campaigns.core.states import ALL_STATES
from campaigns.core.times import iso
from campaigns.errors import InputError
from campaigns.ops.context import Context
from campaigns.store.pages import STANDINGS, JobQuery

MAX_PAGE = 200


@dataclass(frozen=True)
class JobPage:
    """One page of jobs and how many match in all."""

    total: int
    offset: int
    limit: int
    jobs: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"total": self.total, "offset": self.offset, "limit": self.limit, "jobs": self.jobs}


def job_query(
    states: Sequence[str] | None = None,
    failure_class: str | None = None,
    standing: str | None = None,
    search: str | None = None,
) -> JobQuery:
    """A checked `JobQuery`: unknown states or standings are an InputError."""
    unknown = sorted(set(states or ()) - set(ALL_STATES))
    if unknown:
        raise InputError(f"unknown state {unknown[0]!r}: use one of {', '.join(ALL_STATES)}")
    if standing is not None and standing not in STANDINGS:
        raise InputError(f"unknown standing {standing!r}: use one of {', '.join(STANDINGS)}")
    return JobQuery(states or None, failure_class or None, standing, search or None)


def relative(ctx: Context, path: str | None) -> str | None:
    """`path` relative to the campaign directory when it lies inside it, else as stored."""
    if not path:
        return None
    try:
        return str(Path(path).relative_to(ctx.layout.root))
    except ValueError:
        return path


def job_view(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A job row of the store as viewers show it (JSON-ready)."""
    limit = row["max_retries"] + 1
    standing = None
    if row["state"] == "failed":
        standing = retry_standing(
            row["attempts_used"], row["max_retries"], row["next_retry_at"], now
        )
    return {
        **_pick(row, "key uid"),
        "params": json.loads(row["params"]),
        **_pick(row, "state attempts attempts_used"),
        "max_attempts": limit,
        "standing": standing,
        **_pick(row, "next_retry_at scheduler_id output failure_class exit_code error"),
        **_pick(row, "started_at ended_at"),
    }


def _pick(row: Mapping[str, Any], names: str) -> dict[str, Any]:
    """These fields of a row, moments as ISO-8601 text."""
    return {n: iso(row[n]) if isinstance(row[n], datetime) else row[n] for n in names.split()}


def job_page(ctx: Context, query: JobQuery, *, offset: int = 0, limit: int = 50) -> JobPage:
    """The jobs matching `query`, `limit` (at most MAX_PAGE) from `offset`, campaign order."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    if offset < 0:
        raise InputError(f"offset must be 0 or more, not {offset}")
    now = ctx.clock()
    total, rows = ctx.store.job_page(query, now, offset=offset, limit=limit)
    return JobPage(total, offset, limit, [job_view(r, now) for r in rows])


def job_detail(ctx: Context, reference: str) -> dict[str, Any] | None:
    """One job (by key or uid) with its attempts, newest last; None if there is no such job."""
    store = ctx.store
    row = store.job_by_reference(reference)
    if row is None:
        return None
    attempts = [
        {
            **_pick(a, "number state scheduler_id node exit_code failure_class error"),
            **_pick(a, "started_at ended_at time_minutes memory_mb"),
            "log": relative(ctx, a["log_path"]),
        }
        for a in store.attempts([row["id"]])
    ]
    return {"job": job_view(row, ctx.clock()), "attempts": attempts}
