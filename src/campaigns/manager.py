"""CampaignManager: the Python API behind every command.

Composes the pure core (config, expand, planning, states, backoff) with the
edges (store, scheduler backends, files). Methods mirror the CLI commands and
return typed reports from `campaigns.reports`; nothing here prints.

    from campaigns import CampaignManager
    manager = CampaignManager("config/examples/test_campaign.yaml")
    manager.init()
    manager.submit_campaign(backend="local")
    manager.monitor_progress().counts
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from campaigns.backoff import retry_standing
from campaigns.config import load_campaign
from campaigns.errors import (
    ConfigChangedError,
    InputError,
)
from campaigns.expand import Expansion, expand
from campaigns.layout import Layout
from campaigns.lock import CampaignLock
from campaigns.planning import ArrayPlan, plan_arrays
from campaigns.policy import RetryPolicy
from campaigns.reconcile import Reconciler
from campaigns.reports import (
    CancelReport,
    EstimateReport,
    Failure,
    GroupSummary,
    InitReport,
    JobRow,
    RetryReport,
    StatusReport,
    SubmitReport,
    ValidationReport,
)
from campaigns.scheduler.base import Scheduler
from campaigns.spec import CampaignSpec, JobGroup
from campaigns.states import JobState
from campaigns.store import Store
from campaigns.submit import Submitter
from campaigns.worker import write_atomic

if TYPE_CHECKING:
    from campaigns.export import ExportReport
    from campaigns.qa import QAReport

BACKENDS = ("auto", "slurm", "local")


def utcnow() -> datetime:
    """The real clock (the manager takes a clock so tests can move time)."""
    return datetime.now(timezone.utc)


def make_scheduler(name: str, spec: CampaignSpec) -> Scheduler:
    """A backend by name; `auto` is Slurm when `sbatch` is on PATH, else local."""
    if name == "auto":
        name = "slurm" if shutil.which("sbatch") else "local"
    if name == "local":
        from campaigns.scheduler.local import LocalScheduler

        return LocalScheduler(spec.machine.python)
    if name == "slurm":
        from campaigns.scheduler.slurm import SlurmScheduler

        return SlurmScheduler(python=spec.machine.python)
    raise InputError(f"unknown backend '{name}'; choose one of: {', '.join(BACKENDS)}.")


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
        self.config_path = Path(config)
        self.spec = load_campaign(
            self.config_path, validated_hash=_validated_hash(self.config_path, root)
        )
        self.layout = Layout.for_campaign(self.spec.slug, self.spec.base_path, root)
        self.db_url = self.layout.db_url(db_url or self.spec.db_url)
        self.clock = clock
        self.rng = rng or random.Random()
        self._schedulers: dict[str, Scheduler] = dict(schedulers or {})
        self._expansion: Expansion | None = None
        self._store: Store | None = None
        self.retry_policy = RetryPolicy.from_config(self.spec.merged.get("execution", {}))

    # -- plumbing -----------------------------------------------------------------

    @property
    def expansion(self) -> Expansion:
        """Every job of the campaign (computed once)."""
        if self._expansion is None:
            self._expansion = expand(self.spec)
        return self._expansion

    @property
    def store(self) -> Store:
        """The campaign database; `init` must have run."""
        if self._store is None:
            if not self.layout.exists():
                raise InputError(
                    f"campaign not initialised: {self.layout.root} does not exist. "
                    f"Run `init {self.config_path}` first."
                )
            self._store = Store(self.db_url)
        return self._store

    def scheduler(self, name: str) -> Scheduler:
        """The backend called `name` (cached)."""
        if name not in self._schedulers:
            self._schedulers[name] = make_scheduler(name, self.spec)
        return self._schedulers[name]

    def resolve_backend(self, requested: str | None) -> str:
        """--backend, else the campaign's execution.backend, else the machine's; `auto` resolved."""
        name = requested or self.spec.execution.backend or self.spec.machine.backend or "auto"
        if name not in BACKENDS:
            raise InputError(f"unknown backend '{name}'; choose one of: {', '.join(BACKENDS)}.")
        if name == "auto":
            name = "slurm" if shutil.which("sbatch") else "local"
        return name

    def lock(self) -> CampaignLock:
        """The campaign's manager lock (checks first that the campaign exists, as configured)."""
        stored = self.store.campaign()["config_hash"]
        if stored != self.spec.config_hash:
            raise ConfigChangedError(
                f"{self.config_path} has changed since `init` (stored config hash {stored}, file "
                f"{self.spec.config_hash}). Run `init --force {self.config_path}` to adopt the "
                "change (it says what changed), or restore the file."
            )
        return CampaignLock(self.layout.lock_file)

    def close(self) -> None:
        """Release the database."""
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- validate / init ----------------------------------------------------------

    def validate_configuration(self, backend: str | None = None) -> ValidationReport:
        """Load, merge, validate and expand; count jobs, groups and arrays. Changes nothing."""
        expansion = self.expansion
        max_array = self.spec.machine.max_array_size
        pending = [(j.index + 1, j.group) for j in expansion.jobs]
        groups = {g.index: g for g in expansion.groups}
        plan = plan_arrays(
            pending,
            groups,
            batch_size=self.spec.execution.batch_size,
            max_array_size=max_array,
            jobs_per_task=self.spec.execution.jobs_per_task,
            capacity=len(pending),
        )
        summaries = [self._group_summary(g, plan.arrays, expansion) for g in expansion.groups]
        return ValidationReport(
            name=self.spec.name,
            version=self.spec.version,
            config=str(self.config_path),
            campaign_dir=str(self.layout.root),
            machine=self.spec.machine.name,
            backend=self.spec.execution.backend or self.spec.machine.backend,
            n_jobs=len(expansion.jobs),
            parameters={a.label: len(a.rows) for a in self.spec.axes},
            groups=summaries,
            n_arrays=len(plan.arrays),
            n_tasks=sum(len(a.tasks) for a in plan.arrays),
            max_array_size=max_array,
            config_hash=self.spec.config_hash,
        )

    @staticmethod
    def _group_summary(
        group: JobGroup, arrays: Sequence[ArrayPlan], expansion: Expansion
    ) -> GroupSummary:
        mine = [a for a in arrays if a.group == group.index]
        return GroupSummary(
            group=group.index,
            n_jobs=sum(1 for j in expansion.jobs if j.group == group.index),
            resources=group.resources.as_dict(),
            description=group.resources.describe(),
            max_retries=group.max_retries,
            n_arrays=len(mine),
            n_tasks=sum(len(a.tasks) for a in mine),
        )

    def init(self, force: bool = False) -> InitReport:
        """Create the campaign directory and database, every job pending; idempotent."""
        expansion = self.expansion  # every config error surfaces before anything is created
        if self.layout.exists():
            return self._reinit(expansion, force)
        self.layout.create()
        with CampaignLock(self.layout.lock_file):
            store = Store(self.db_url)
            if store.is_initialised():
                raise InputError(
                    f"{self.db_url} already holds a campaign but "
                    f"{self.layout.config_file} is missing; move the database away "
                    "or point --db-url elsewhere."
                )
            now = self.clock()
            store.create(
                campaign={
                    "name": self.spec.name,
                    "version": self.spec.version,
                    "slug": self.spec.slug,
                    "config_hash": self.spec.config_hash,
                    "source": str(self.config_path),
                    "config": json.dumps(self.spec.merged, default=str),
                },
                groups=_group_rows(expansion),
                jobs=_job_rows(expansion, self.spec.config_hash),
                now=now,
            )
            store.close()
            self._write_metadata()
        return InitReport(str(self.layout.root), len(expansion.jobs), created=True)

    def _write_metadata(self) -> None:
        """Provenance files, then the merged config last: its presence means "initialised"."""
        from campaigns import provenance

        provenance.write(self.layout, self.spec, self.config_path)
        write_atomic(
            self.layout.config_file, yaml.safe_dump(dict(self.spec.merged), sort_keys=False)
        )

    def _reinit(self, expansion: Expansion, force: bool) -> InitReport:
        stored = self.store.campaign()
        if stored["config_hash"] == self.spec.config_hash:
            return InitReport(str(self.layout.root), len(expansion.jobs), created=False)
        from campaigns import provenance

        changes = provenance.diff(json.loads(stored["config"]), dict(self.spec.merged))
        if not force:
            raise ConfigChangedError(
                f"{self.config_path} differs from the configuration this campaign was created with "
                f"({self.layout.config_file}): {'; '.join(changes[:8])}"
                f"{' ...' if len(changes) > 8 else ''}. Run `init --force` to adopt the new "
                "configuration (existing jobs keep their state; new jobs are added), or use a new "
                "`campaign.version` for a new campaign."
            )
        with CampaignLock(self.layout.lock_file):
            added = self.store.adopt_config(
                config=json.dumps(self.spec.merged, default=str),
                config_hash=self.spec.config_hash,
                groups=_group_rows(expansion),
                jobs=_job_rows(expansion, self.spec.config_hash),
                now=self.clock(),
            )
            self._write_metadata()
        return InitReport(
            str(self.layout.root),
            len(expansion.jobs),
            created=False,
            updated=True,
            added_jobs=added,
        )

    # -- submit ---------------------------------------------------------------------

    def submit_campaign(
        self, backend: str | None = None, limit: int | None = None, dry_run: bool = False
    ) -> SubmitReport:
        """Submit pending jobs as arrays within the site's limits."""
        self.expansion  # noqa: B018 -- a config error must stop us before anything is submitted
        name = self.resolve_backend(backend)
        scheduler = self.scheduler(name)
        with self.lock():
            recovered = Reconciler(self).recover_intents()
            return Submitter(self).submit(name, scheduler, limit, dry_run, recovered)

    # -- monitor / status ---------------------------------------------------------

    def monitor_progress(
        self, *, resubmit: bool = False, backend: str | None = None
    ) -> StatusReport:
        """One reconciliation with the schedulers, then the status (for `monitor --once`)."""
        with self.lock():
            reconciler = Reconciler(self)
            reconciler.recover_intents()
            error = reconciler.reconcile()
            if resubmit:
                self.retry_failed_jobs(submit=True, backend=backend, _locked=True)
                name = self.resolve_backend(backend or self.store.campaign().get("backend"))
                Submitter(self).submit(name, self.scheduler(name), None, False, [])
        return self.status(reconciled_at=self.clock(), scheduler_error=error)

    def watch(
        self, interval: float, *, resubmit: bool = False, backend: str | None = None
    ) -> Iterator[StatusReport]:
        """Reconcile every `interval` seconds, yielding a status each time, until all is final."""
        import time

        while True:
            report = self.monitor_progress(resubmit=resubmit, backend=backend)
            yield report
            active = report.counts["queued"] + report.counts["running"]
            if active == 0 and (not resubmit or report.finished):
                return
            time.sleep(interval)

    def status(
        self,
        verbose: bool = False,
        *,
        reconciled_at: datetime | None = None,
        scheduler_error: str | None = None,
    ) -> StatusReport:
        """Counts per state, failures and where the logs are; reads the store only."""
        store = self.store
        counts = {s.value: 0 for s in JobState}
        counts.update(store.counts())
        now = self.clock()
        groups = store.groups()
        failed = store.jobs(
            states=["failed"],
            columns=[
                "id",
                "key",
                "attempts",
                "attempts_base",
                "next_retry_at",
                "failure_class",
                "error",
                "group_id",
            ],
        )
        by_class: dict[str, int] = {}
        standings = {"due": 0, "waiting": 0, "exhausted": 0}
        standing_of = {}
        for row in failed:
            label = row["failure_class"] or "unknown"
            by_class[label] = by_class.get(label, 0) + 1
            standing = retry_standing(
                row["attempts"] - row["attempts_base"],
                groups[row["group_id"]]["max_retries"],
                row["next_retry_at"],
                now,
            )
            standings[standing] += 1
            standing_of[row["id"]] = standing
        latest = failed[-10:]
        logs = store.log_paths([r["id"] for r in latest])
        latest_failures = [
            Failure(
                r["key"],
                r["failure_class"],
                r["error"],
                r["attempts"],
                standing_of[r["id"]] == "exhausted",
                r["next_retry_at"],
                logs.get(r["id"]),
            )
            for r in latest
        ]
        jobs = None
        if verbose:
            rows = store.jobs()
            all_logs = store.log_paths(None)
            jobs = [
                JobRow(
                    r["key"],
                    json.loads(r["params"]),
                    r["state"],
                    r["attempts"],
                    r["next_retry_at"],
                    r["scheduler_id"],
                    r["output"],
                    r["error"],
                    r["failure_class"],
                    all_logs.get(r["id"]),
                )
                for r in rows
            ]
        campaign = store.campaign()
        return StatusReport(
            name=self.spec.name,
            version=self.spec.version,
            path=str(self.layout.root),
            total=sum(counts.values()),
            counts=counts,
            failures_by_class=by_class,
            retry_due=standings["due"],
            retry_waiting=standings["waiting"],
            exhausted=standings["exhausted"],
            logs=str(self.layout.logs),
            backend=campaign.get("backend"),
            open_arrays=len(store.submissions(states=["submitted"])),
            latest_failures=latest_failures,
            jobs=jobs,
            reconciled_at=reconciled_at,
            unknown_scheduler=scheduler_error,
        )

    # -- estimate -------------------------------------------------------------------

    def estimate_resources(self) -> EstimateReport:
        """Jobs, arrays, tasks, node/CPU/GPU-hours and expected wall time; submits nothing.

        Before `init` (or with nothing run yet) it uses the time limits; once jobs have
        finished, their measured runtimes give the expected wall time.
        """
        from campaigns import estimate

        expansion = self.expansion
        groups = {g.index: g for g in expansion.groups}
        per_group = {g.index: 0 for g in expansion.groups}
        runtimes: list[float] = []
        initialised = self.layout.exists()
        if initialised:
            rows = self.store.jobs(
                columns=["group_id", "state", "attempts", "attempts_base", "next_retry_at"],
                states=["pending", "queued", "running", "failed"],
            )
            for row in rows:
                if (
                    row["state"] != "failed"
                    or retry_standing(
                        row["attempts"] - row["attempts_base"],
                        groups[row["group_id"]].max_retries,
                        row["next_retry_at"],
                        self.clock(),
                    )
                    != "exhausted"
                ):
                    per_group[row["group_id"]] = per_group.get(row["group_id"], 0) + 1
            runtimes = self.store.runtimes()
        else:
            for job in expansion.jobs:
                per_group[job.group] += 1
        limits = estimate.Limits(
            batch_size=self.spec.execution.batch_size,
            max_array_size=self.spec.machine.max_array_size,
            jobs_per_task=self.spec.execution.jobs_per_task,
            array_parallelism=self.spec.execution.array_parallelism,
            max_queued_jobs=self.spec.machine.max_queued_jobs,
        )
        estimates = [
            estimate.estimate_group(groups[g], n, limits) for g, n in per_group.items() if n
        ]
        wall, basis = estimate.expected_wall_hours(estimates, groups, limits, runtimes)
        return EstimateReport(
            n_jobs=len(expansion.jobs),
            remaining_jobs=sum(per_group.values()),
            n_arrays=sum(e.n_arrays for e in estimates),
            n_tasks=sum(e.n_tasks for e in estimates),
            groups=[dataclasses.asdict(e) for e in estimates],
            node_hours=sum(e.node_hours for e in estimates),
            cpu_hours=sum(e.cpu_hours for e in estimates),
            gpu_hours=sum(e.gpu_hours for e in estimates),
            expected_wall_hours=wall,
            basis=basis,
        )

    # -- qa / export ------------------------------------------------------------------

    def qa(self, requeue: bool = False) -> QAReport:
        """Check every completed output, write reports and plots; `requeue` fails the invalid.

        Holds the campaign lock throughout, so no reconciliation changes a job between
        its check and its requeue.
        """
        from campaigns.qa import run_qa

        with self.lock():
            return run_qa(self.store, self.layout, self.spec, self.clock(), requeue=requeue)

    def export_jobs(self, path: str | os.PathLike[str]) -> ExportReport:
        """Write one row per job to a .csv or .parquet file; reads the store only."""
        from campaigns.export import check_path, export_jobs

        check_path(path)  # a bad file name fails before the campaign is opened
        return export_jobs(self.store, path)

    # -- retry / cancel -------------------------------------------------------------

    def retry_failed_jobs(
        self,
        *,
        submit: bool = False,
        ignore_backoff: bool = False,
        dry_run: bool = False,
        reset_keys: Sequence[str] | None = None,
        backend: str | None = None,
        _locked: bool = False,
    ) -> RetryReport:
        """Put failed jobs whose backoff has elapsed back to pending; optionally submit them."""
        lock = self.lock()
        if _locked:
            return self._retry(submit, ignore_backoff, dry_run, reset_keys, backend)
        with lock:
            return self._retry(submit, ignore_backoff, dry_run, reset_keys, backend)

    def _retry(
        self,
        submit: bool,
        ignore_backoff: bool,
        dry_run: bool,
        reset_keys: Sequence[str] | None,
        backend: str | None,
    ) -> RetryReport:
        store = self.store
        now = self.clock()
        groups = store.groups()
        if reset_keys:
            rows = store.jobs(keys=list(reset_keys))
            unknown = set(reset_keys) - {r["key"] for r in rows} - {r["uid"] for r in rows}
            if unknown:
                raise InputError(
                    f"no such job: {', '.join(sorted(unknown))}. Keys look like "
                    f"'{self.expansion.jobs[0].key}' (see `status --verbose`)."
                )
            busy = [r["key"] for r in rows if r["state"] in ("queued", "running")]
            if busy:
                raise InputError(
                    f"cannot reset jobs that are queued or running: {', '.join(busy[:5])}."
                )
            chosen = [r for r in rows if r["state"] != "pending"]
            if not dry_run:
                store.reset_jobs([r["id"] for r in chosen], clear_attempts=True, now=now)
            report = RetryReport([r["key"] for r in chosen], [], [], dry_run=dry_run)
        else:
            failed = store.jobs(states=["failed"])
            reset, waiting, exhausted = [], [], []
            logs = store.log_paths([r["id"] for r in failed])
            for r in failed:
                standing = retry_standing(
                    r["attempts"] - r["attempts_base"],
                    groups[r["group_id"]]["max_retries"],
                    r["next_retry_at"],
                    now,
                )
                if standing == "exhausted":
                    exhausted.append(
                        Failure(
                            r["key"],
                            r["failure_class"],
                            r["error"],
                            r["attempts"],
                            True,
                            None,
                            logs.get(r["id"]),
                        )
                    )
                elif standing == "due" or ignore_backoff:
                    reset.append(r)
                else:
                    waiting.append((r["key"], r["next_retry_at"]))
            if not dry_run and reset:
                store.reset_jobs([r["id"] for r in reset], clear_attempts=False, now=now)
            report = RetryReport([r["key"] for r in reset], waiting, exhausted, dry_run=dry_run)
        if submit and report.reset:
            name = self.resolve_backend(backend or store.campaign().get("backend"))
            sub = Submitter(self).submit(
                name, self.scheduler(name), None, dry_run, [], only_keys=report.reset
            )
            report = RetryReport(report.reset, report.waiting, report.exhausted, sub, dry_run)
        return report

    def cancel(self) -> CancelReport:
        """Cancel the campaign's queued and running jobs."""
        with self.lock():
            Reconciler(self).recover_intents()
            store = self.store
            open_subs = store.submissions(states=["submitted"])
            by_backend: dict[str, list[str]] = {}
            for sub in open_subs:
                by_backend.setdefault(sub["backend"], []).append(sub["scheduler_id"])
            for name, ids in by_backend.items():
                self.scheduler(name).cancel(ids)
            n = store.cancel_open([s["id"] for s in open_subs], self.clock())
        return CancelReport(n, [s["scheduler_id"] for s in open_subs])


def _validated_hash(config: Path, root: str | os.PathLike[str] | None) -> str | None:
    """The config hash recorded at `init` of the campaign this file names, if any.

    A cheap peek (no validation) at where the campaign lives; any surprise means None,
    and the full validation then runs and reports problems properly.
    """
    try:
        from campaigns.config import read_document, resolve_machine_path
        from campaigns.spec import slugify

        campaign = read_document(config)
        section = campaign.data["campaign"]
        base = campaign.data.get("outputs", {}).get("base_path")
        if base is None:
            machine = read_document(resolve_machine_path(campaign))
            base = machine.data.get("outputs", {}).get("base_path", "./campaigns")
        slug = f"{slugify(str(section['version']))}_{slugify(str(section['name']))}"
        layout = Layout.for_campaign(slug, str(base), root)
        record = json.loads((layout.metadata / "provenance.json").read_text())
        value = record.get("config_hash")
        return value if isinstance(value, str) else None
    except Exception:  # noqa: BLE001 -- a peek only: the real load reports any problem
        return None


def _group_rows(expansion: Expansion) -> list[dict[str, Any]]:
    return [
        {
            "id": g.index,
            "resources": json.dumps(g.resources.as_dict()),
            "max_retries": g.max_retries,
        }
        for g in expansion.groups
    ]


def _job_rows(expansion: Expansion, config_hash: str) -> Iterator[dict[str, Any]]:
    for job in expansion.jobs:
        yield {
            "id": job.index + 1,
            "key": job.key,
            "uid": job.uid,
            "params": job.params_json or json.dumps(job.params),
            "output": job.output,
            "group_id": job.group,
            "config_hash": config_hash,
            "state": "pending",
            "attempts": 0,
            "attempts_base": 0,
            "time_scale": 1.0,
            "memory_scale": 1.0,
        }
