"""`monitor`: one refresh (a tick) reconciles with the schedulers, optionally keeps the
campaign going (due retries and pending jobs submitted), and reports the status."""

from __future__ import annotations

import time
from collections.abc import Iterator

from campaigns.ops import breaker, notify
from campaigns.ops import retry as retrying
from campaigns.ops import submit as submitting
from campaigns.ops.context import Context
from campaigns.ops.reconcile import reconcile, recover_intents
from campaigns.ops.reports import StatusReport
from campaigns.ops.status import status


def tick(ctx: Context, *, resubmit: bool = False, backend: str | None = None) -> StatusReport:
    """One refresh under the campaign lock: reconcile, check the circuit breaker, keep the
    campaign going (with `resubmit`, unless the breaker is open), notify; the status."""
    with ctx.lock():
        recover_intents(ctx)
        error = reconcile(ctx)
        trip = breaker.check(ctx)
        if resubmit and not breaker.state(ctx).open:
            retrying.retry(ctx, submit=True, backend=backend)
            name = ctx.backend(backend or ctx.store.campaign().get("backend"))
            submitting.submit(ctx, name)
        report = status(ctx, reconciled_at=ctx.clock(), scheduler_error=error)
        notify.after_tick(ctx, report, trip)
    return report


def watch(
    ctx: Context, interval: float, *, resubmit: bool = False, backend: str | None = None
) -> Iterator[StatusReport]:
    """A tick every `interval` seconds, yielding the status each time, until all is final."""
    while True:
        report = tick(ctx, resubmit=resubmit, backend=backend)
        yield report
        active = report.counts["queued"] + report.counts["running"]
        if active == 0 and (not resubmit or report.finished):
            return
        time.sleep(interval)
