"""Progress over time, throughput and an ETA, from the store alone (for the dashboard).

The curve counts jobs now completed by when they ended, and failed attempts by when
they ended, from the first submission until now, in at most `buckets` steps.
Throughput is the rate of completions over the last hour (or since the first
submission, when that is shorter); the ETA divides the jobs still to run (pending,
queued, running, and failed with a retry to come) by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from campaigns.core.times import iso
from campaigns.ops.context import Context
from campaigns.store.pages import JobQuery

WINDOW_SECONDS = 3600.0
MAX_BUCKETS = 500


@dataclass(frozen=True)
class ProgressReport:
    """Completions over time, the recent rate and when the campaign should be done."""

    now: datetime
    start: datetime | None  # the first submission; None before any
    bucket_seconds: int
    times: list[datetime]  # the end of each bucket
    completed: list[int]  # jobs completed by then (cumulative)
    failed_attempts: list[int]  # attempts failed by then (cumulative)
    total: int
    done: int  # completed jobs now
    remaining: int  # jobs still to run: pending, queued, running, failed with a retry to come
    window_seconds: float
    throughput_per_hour: float | None  # completions per hour over the window
    eta: datetime | None  # None without throughput or work left

    def to_dict(self) -> dict[str, Any]:
        """JSON form (times as ISO-8601 UTC)."""
        return {
            "now": iso(self.now),
            "start": iso(self.start),
            "bucket_seconds": self.bucket_seconds,
            "series": {
                "time": [iso(t) for t in self.times],
                "completed": self.completed,
                "failed_attempts": self.failed_attempts,
            },
            "total": self.total,
            "completed": self.done,
            "remaining": self.remaining,
            "window_seconds": round(self.window_seconds, 1),
            "throughput_per_hour": (
                None if self.throughput_per_hour is None else round(self.throughput_per_hour, 2)
            ),
            "eta": iso(self.eta),
        }


def clipped(per_bucket: dict[int, int], n: int) -> dict[int, int]:
    """`per_bucket` with indices outside 0..n-1 added to the nearest end (the database counts
    whole seconds, so a moment in the current second may fall one bucket past the last)."""
    out: dict[int, int] = {}
    for index, count in per_bucket.items():
        key = min(max(index, 0), n - 1)
        out[key] = out.get(key, 0) + count
    return out


def cumulative(per_bucket: dict[int, int], n: int, base: int = 0) -> list[int]:
    """Running totals of `per_bucket` (bucket index -> count) over buckets 0..n-1."""
    out, running = [], base
    for index in range(n):
        running += per_bucket.get(index, 0)
        out.append(running)
    return out


def progress(ctx: Context, buckets: int = 60) -> ProgressReport:
    """The campaign's progress over time, its throughput and ETA; reads the store only."""
    store, now = ctx.store, ctx.clock()
    counts = store.counts()
    total, done = sum(counts.values()), counts.get("completed", 0)
    retrying = sum(
        store.job_page(JobQuery(standing=s), now, limit=0)[0] for s in ("due", "waiting")
    )
    remaining = sum(counts.get(s, 0) for s in ("pending", "queued", "running")) + retrying
    start = store.activity_start()
    if start is None or now <= start:
        return ProgressReport(now, start, 1, [], [], [], total, done, remaining, 0.0, None, None)
    elapsed = (now - start).total_seconds()
    n = max(1, min(buckets, MAX_BUCKETS))
    width = max(1, math.ceil(elapsed / n))
    n = max(1, math.ceil(elapsed / width))
    ended = {name: clipped(b, n) for name, b in store.ended_per_bucket(start, width).items()}
    # Jobs completed before the first recorded submission (none, unless rows were imported).
    earlier = done - sum(ended["completed"].values())
    completed = cumulative(ended["completed"], n, max(0, earlier))
    failed = cumulative(ended["failed_attempts"], n)
    window_buckets = max(1, math.ceil(min(WINDOW_SECONDS, elapsed) / width))
    window = min(elapsed, window_buckets * width)
    recent = sum(ended["completed"].get(i, 0) for i in range(n - window_buckets, n))
    rate = recent / window * 3600.0 if window > 0 else None
    eta = None
    if rate and remaining:
        eta = now + timedelta(hours=remaining / rate)
    elif remaining == 0:
        eta = now
    times = [min(now, start + timedelta(seconds=width * (i + 1))) for i in range(n)]
    return ProgressReport(
        now, start, width, times, completed, failed, total, done, remaining, window, rate, eta
    )
