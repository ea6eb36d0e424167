"""Submission holds: when the scheduler refuses a submission for a site limit (the user's
queue is full, an array too large), the jobs stay pending and the campaign waits before it
asks again, backing off like a job's retries (`execution.retry_backoff`), so a full queue
is not hammered with sbatch every tick.

The hold lives in the event log: a `submit_held` event per refusal, a `submit_cleared`
event when the scheduler accepts again. The n-th refusal in a row holds submission for
the retry backoff's n-th delay (no jitter); every command and login node sees the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from campaigns.core.backoff import BackoffPolicy
from campaigns.ops.context import Context

HELD, CLEARED = "submit_held", "submit_cleared"
#: Used when the campaign's retry backoff is `none`: a hold still waits.
FALLBACK = BackoffPolicy()


@dataclass(frozen=True)
class Hold:
    """Submission is held since `since` (the last refusal) until `until`."""

    since: datetime
    until: datetime
    reason: str
    refusals: int  # in a row

    def describe(self) -> str:
        """One line for reports and logs."""
        return (
            f"submission held until {self.until.strftime('%Y-%m-%d %H:%M:%S UTC')} "
            f"(refusal {self.refusals} in a row: {self.reason}); the jobs stay pending and "
            "`monitor --submit` (or the autopilot) tries again then"
        )


def current(ctx: Context) -> Hold | None:
    """The hold the latest refusals left, or None (it may have expired already)."""
    events = ctx.store.events(100, kinds=[HELD, CLEARED])
    refusals = 0
    for row in reversed(events):
        if row["kind"] != HELD:
            break
        refusals += 1
    if not refusals:
        return None
    last = events[-1]
    policy = ctx.policy.backoff if ctx.policy.backoff.base_seconds > 0 else FALLBACK
    delay = policy.base_delay(refusals)
    return Hold(last["at"], last["at"] + timedelta(seconds=delay), last["message"], refusals)


def active(ctx: Context) -> Hold | None:
    """The hold if it still holds now."""
    hold = current(ctx)
    return hold if hold is not None and ctx.clock() < hold.until else None


def hold(ctx: Context, reason: str) -> Hold:
    """Record one more refusal; the hold it starts."""
    ctx.store.add_event(HELD, reason, ctx.clock())
    held = current(ctx)
    assert held is not None
    return held


def clear(ctx: Context) -> None:
    """The scheduler accepted a submission: the next refusal starts a new back-off."""
    if current(ctx) is not None:
        ctx.store.add_event(CLEARED, "the scheduler accepted a submission again", ctx.clock())
