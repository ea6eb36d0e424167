"""CampaignManager: the Python API behind every command, a thin facade over `campaigns.ops`.

A `CampaignManager` is a `Context` (the campaign read and validated once, at
construction) whose methods are the operations themselves; those that change the
campaign take its lock first. Nothing here prints, and nothing in `campaigns.ops`
imports this module back.

    from campaigns import CampaignManager
    manager = CampaignManager("config/examples/test_campaign.yaml")
    manager.init()
    manager.submit_campaign(backend="local")
    manager.monitor_progress().counts
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from campaigns.core.selection import Selection
from campaigns.ops import (
    autopilot,
    breaker,
    cancel,
    database,
    estimate,
    init,
    monitor,
    qa,
    retry,
    status,
    validate,
)
from campaigns.ops.context import Context
from campaigns.ops.jobs import selected
from campaigns.ops.reconcile import recover_intents
from campaigns.ops.reports import SubmitReport
from campaigns.ops.submit import submit

if TYPE_CHECKING:
    from campaigns.ops.export import ExportReport

P = ParamSpec("P")
R = TypeVar("R")


def _locked(
    operation: Callable[Concatenate[Context, P], R], refuse_edit: str | None = None
) -> Callable[Concatenate[Context, P], R]:
    """`operation` as a method that holds the campaign lock while it runs (refused while the
    campaign file differs from the recorded campaign, when it is the `refuse_edit` command)."""

    def method(self: Context, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if refuse_edit:
            self.refuse_edit(refuse_edit)
        with self.lock():
            return operation(self, *args, **kwargs)

    method.__doc__ = operation.__doc__
    return method


class CampaignManager(Context):
    """Everything one can do to one campaign: a `Context` with one method per operation.

    Construct it as a Context: `CampaignManager(config, root=None, db_url=None, clock=...,
    rng=..., schedulers=...)`.
    """

    validate_configuration = validate.validate
    init = init.init
    status = status.status
    estimate_resources = estimate.estimate
    monitor_progress = monitor.tick  # takes the lock itself, then reports the status
    watch = monitor.watch
    retry_failed_jobs = _locked(retry.retry, refuse_edit="retry")
    cancel = _locked(cancel.cancel)
    qa = _locked(qa.run_qa)
    start_autopilot = autopilot.start
    autopilot_tick = autopilot.tick
    stop_autopilot = autopilot.stop
    autopilot_status = autopilot.status
    upgrade_database = database.upgrade_schema  # takes the lock file itself
    copy_database = database.copy_to  # takes the lock (or lease) itself

    def submit_campaign(
        self,
        backend: str | None = None,
        limit: int | None = None,
        dry_run: bool = False,
        selection: Selection | None = None,
        resume: bool = False,
    ) -> SubmitReport:
        """Submit pending jobs (those `selection` picks) as arrays within the site's limits;
        crash recovery first. `resume` closes an open circuit breaker first."""
        self.refuse_edit("submit")  # the user means the file as written: never the old one
        self.expansion  # noqa: B018 -- a config error must stop us before anything is submitted
        name = self.backend(backend)
        with self.lock():
            if resume:
                breaker.resume(self)
            recovered = recover_intents(self)
            keys = None
            if selection is not None:
                keys = [r["key"] for r in selected(self, selection, ["key"])]
            return submit(
                self,
                name,
                limit=limit,
                dry_run=dry_run,
                recovered=recovered,
                only_keys=keys,
                patient=False,  # the user asked: try now, even while a site limit holds
            )

    def export_jobs(self, path: str | os.PathLike[str]) -> ExportReport:
        """Write one row per job to a .csv or .parquet file; reads the store only."""
        from campaigns.ops.export import check_path, export_jobs

        check_path(path)  # a bad file name fails before the campaign is opened
        return export_jobs(self.store, path)
