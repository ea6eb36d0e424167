"""`monitor`: one refresh (a tick) reconciles with the schedulers, optionally keeps the
campaign going (due retries and pending jobs submitted), and reports the status."""

from __future__ import annotations

import time
from collections.abc import Iterator

from campaigns.errors import SiteConfigError
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
        return step(ctx, resubmit=resubmit, backend=backend)[0]


def step(
    ctx: Context, *, resubmit: bool = False, backend: str | None = None
) -> tuple[StatusReport, list[str]]:
    """`tick`'s work, for a caller that holds the lock: the status and what was done."""
    done = [f"recovered: {line}" for line in recover_intents(ctx)]
    error = reconcile(ctx)
    trip = breaker.check(ctx)
    if trip is not None:
        done.append(f"circuit breaker opened: {trip.reason()}")
    if resubmit and not breaker.state(ctx).open:
        try:
            done += _keep_going(ctx, backend)
        except SiteConfigError as exc:
            # No later tick can pass either: stop submitting until the user has fixed the file.
            breaker.open_now(ctx, f"sbatch refused the request itself: {exc}")
            raise SiteConfigError(
                f"{exc} Submission is stopped (the circuit breaker is open) until "
                f"`submit --resume {ctx.config_path}`."
            ) from exc
    report = status(ctx, reconciled_at=ctx.clock(), scheduler_error=error)
    done += [f"notified {kind}" for kind in notify.after_tick(ctx, report, trip)]
    return report, done


def _keep_going(ctx: Context, backend: str | None) -> list[str]:
    """Due retries and pending jobs submitted; what was done."""
    done = []
    retried = retrying.retry(ctx, submit=True, backend=backend)
    name = ctx.backend(backend or ctx.store.campaign().get("backend"))
    submitted = submitting.submit(ctx, name)
    if retried.reset:
        done.append(f"retried {len(retried.reset)}")
    total = submitted.submitted_jobs + (retried.submit.submitted_jobs if retried.submit else 0)
    if total:
        done.append(f"submitted {total}")
    held = submitted.held or (retried.submit.held if retried.submit else None)
    if held:
        done.append(held)
    return done


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
