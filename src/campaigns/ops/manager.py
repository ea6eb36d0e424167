"""CampaignManager: the Python API behind every command, a thin facade over `campaigns.ops`.

Each method opens nothing new: the campaign was read and validated once, at
construction, into a `Context`; the method takes the lock where the operation
changes the campaign and calls the operation. Nothing here prints, and nothing in
`campaigns.ops` imports this module back.

    from campaigns import CampaignManager
    manager = CampaignManager("config/examples/test_campaign.yaml")
    manager.init()
    manager.submit_campaign(backend="local")
    manager.monitor_progress().counts
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from campaigns.core.expand import Expansion
from campaigns.core.layout import Layout
from campaigns.core.spec import CampaignSpec
from campaigns.ops import cancel, estimate, init, monitor, retry, status, submit, validate
from campaigns.ops.context import Context, open_campaign, utcnow
from campaigns.ops.reconcile import recover_intents
from campaigns.ops.reports import (
    CancelReport,
    EstimateReport,
    InitReport,
    RetryReport,
    StatusReport,
    SubmitReport,
    ValidationReport,
)
from campaigns.scheduler.base import Scheduler
from campaigns.store import Store

if TYPE_CHECKING:
    from campaigns.ops.export import ExportReport
    from campaigns.qa.report import QAReport


class CampaignManager:
    """Everything one can do to one campaign."""

    def __init__(
        self,
        config: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] | None = None,
        db_url: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        schedulers: Mapping[str, Scheduler] | None = None,
    ) -> None:
        self.context: Context = open_campaign(
            config, root=root, db_url=db_url, clock=clock, rng=rng, schedulers=schedulers
        )

    @property
    def spec(self) -> CampaignSpec:
        """The validated campaign."""
        return self.context.spec

    @property
    def layout(self) -> Layout:
        """The campaign directory."""
        return self.context.layout

    @property
    def store(self) -> Store:
        """The campaign database; `init` must have run."""
        return self.context.store

    @property
    def expansion(self) -> Expansion:
        """Every job of the campaign."""
        return self.context.expansion

    def close(self) -> None:
        """Release the database."""
        self.context.close()

    def validate_configuration(self) -> ValidationReport:
        """Load, merge, validate and expand; count jobs, groups and arrays. Changes nothing."""
        return validate.validate(self.context)

    def init(self, force: bool = False) -> InitReport:
        """Create the campaign directory and database, every job pending; idempotent."""
        return init.init(self.context, force)

    def submit_campaign(
        self, backend: str | None = None, limit: int | None = None, dry_run: bool = False
    ) -> SubmitReport:
        """Submit pending jobs as arrays within the site's limits."""
        ctx = self.context
        ctx.expansion  # noqa: B018 -- a config error must stop us before anything is submitted
        name = ctx.backend(backend)
        with ctx.lock():
            recovered = recover_intents(ctx)
            return submit.submit(ctx, name, limit=limit, dry_run=dry_run, recovered=recovered)

    def monitor_progress(
        self, *, resubmit: bool = False, backend: str | None = None
    ) -> StatusReport:
        """One reconciliation with the schedulers, then the status (for `monitor --once`)."""
        return monitor.tick(self.context, resubmit=resubmit, backend=backend)

    def watch(
        self, interval: float, *, resubmit: bool = False, backend: str | None = None
    ) -> Iterator[StatusReport]:
        """Reconcile every `interval` seconds, yielding a status each time, until all is final."""
        return monitor.watch(self.context, interval, resubmit=resubmit, backend=backend)

    def status(
        self,
        verbose: bool = False,
        *,
        reconciled_at: datetime | None = None,
        scheduler_error: str | None = None,
    ) -> StatusReport:
        """Counts per state, failures and where the logs are; reads the store only."""
        return status.status(
            self.context, verbose, reconciled_at=reconciled_at, scheduler_error=scheduler_error
        )

    def estimate_resources(self) -> EstimateReport:
        """Jobs, arrays, tasks, node/CPU/GPU-hours and expected wall time; submits nothing."""
        return estimate.estimate(self.context)

    def qa(self, requeue: bool = False) -> QAReport:
        """Check every completed output, write reports and plots; `requeue` fails the invalid."""
        from campaigns.ops.qa import run_qa

        with self.context.lock():
            return run_qa(self.context, requeue=requeue)

    def export_jobs(self, path: str | os.PathLike[str]) -> ExportReport:
        """Write one row per job to a .csv or .parquet file; reads the store only."""
        from campaigns.ops.export import check_path, export_jobs

        check_path(path)  # a bad file name fails before the campaign is opened
        return export_jobs(self.store, path)

    def retry_failed_jobs(
        self,
        *,
        submit: bool = False,
        ignore_backoff: bool = False,
        dry_run: bool = False,
        reset_keys: Sequence[str] | None = None,
        backend: str | None = None,
    ) -> RetryReport:
        """Put failed jobs whose backoff has elapsed back to pending; optionally submit them."""
        with self.context.lock():
            return retry.retry(
                self.context,
                submit=submit,
                ignore_backoff=ignore_backoff,
                dry_run=dry_run,
                reset_keys=reset_keys,
                backend=backend,
            )

    def cancel(self) -> CancelReport:
        """Cancel the campaign's queued and running jobs."""
        with self.context.lock():
            return cancel.cancel(self.context)
