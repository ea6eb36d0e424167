"""The circuit breaker as an operation: check it after each reconciliation, say whether it
is open, close it on `submit --resume`. Its state is in the event log (`breaker_open`,
`breaker_closed`), so every command and every login node sees the same."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from campaigns.core.breaker import Trip
from campaigns.errors import OperationalError
from campaigns.ops.context import Context

OPEN, CLOSED = "breaker_open", "breaker_closed"


class CircuitOpenError(OperationalError):
    """Submission refused: the circuit breaker is open (exit 1)."""


@dataclass(frozen=True)
class BreakerState:
    """Open since when, and why; or closed (since when, if it ever was closed)."""

    open: bool
    since: datetime | None = None
    reason: str | None = None


def state(ctx: Context) -> BreakerState:
    """The breaker as the last breaker event left it."""
    events = ctx.store.events(1, kinds=[OPEN, CLOSED])
    if not events:
        return BreakerState(False)
    last = events[-1]
    return BreakerState(last["kind"] == OPEN, last["at"], last["message"])


def check(ctx: Context) -> Trip | None:
    """Open the breaker if the recent failures call for it; the trip, when it just opened."""
    now_state = state(ctx)
    breaker = ctx.spec.execution.breaker
    if now_state.open or not breaker.enabled:
        return None
    outcomes = ctx.store.recent_outcomes(breaker.window, since=now_state.since)
    trip = breaker.trips(outcomes)
    if trip is not None:
        ctx.store.add_event(OPEN, trip.reason(), ctx.clock())
    return trip


def open_now(ctx: Context, reason: str) -> None:
    """Open the breaker for a cause outside the failure window (a refusal no retry passes)."""
    if not state(ctx).open:
        ctx.store.add_event(OPEN, reason, ctx.clock())


def refuse_if_open(ctx: Context) -> None:
    """Raise CircuitOpenError, saying why and what to do, while the breaker is open."""
    current = state(ctx)
    if current.open:
        since = current.since.strftime("%Y-%m-%d %H:%M UTC") if current.since else "?"
        raise CircuitOpenError(
            f"the circuit breaker is open since {since}: {current.reason}; nothing is "
            "submitted. Find the cause in the failed jobs' logs (`status --jobs --state "
            f"failed`), fix it, then run `submit --resume {ctx.config_path}`."
        )


def resume(ctx: Context) -> bool:
    """Close the breaker (after the user fixed the cause); True when it was open."""
    if not state(ctx).open:
        return False
    ctx.store.add_event(CLOSED, "closed by submit --resume", ctx.clock())
    return True
