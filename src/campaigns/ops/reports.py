"""Typed results of the manager's operations; the CLI only renders them.

Each report has `to_dict()` giving the JSON the CLI prints with `--json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from campaigns.core.states import ALL_STATES
from campaigns.core.times import iso


@dataclass(frozen=True)
class GroupSummary:
    """Jobs sharing one resource request."""

    group: int
    n_jobs: int
    resources: dict[str, Any]
    description: str
    max_retries: int
    n_arrays: int = 0
    n_tasks: int = 0


@dataclass(frozen=True)
class ValidationReport:
    """What `validate` found."""

    name: str
    version: str
    config: str
    campaign_dir: str
    machine: str
    backend: str
    n_jobs: int
    parameters: dict[str, int]  # axis label -> number of values
    groups: list[GroupSummary]
    n_arrays: int
    n_tasks: int
    max_array_size: int | None
    config_hash: str
    warnings: list[str] = field(default_factory=list)  # the site's notes, a doubtful account
    max_queued_jobs: int | None = None  # the queue cap in force (the QOS may lower it)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class InitReport:
    """What `init` did."""

    campaign_dir: str
    n_jobs: int
    created: bool  # False: it existed with the same config (a no-op)
    updated: bool = False  # --force took a changed config
    added_jobs: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class ArraySummary:
    """One submitted (or planned) array."""

    submission_id: int | None
    scheduler_id: str | None
    n_tasks: int
    n_jobs: int
    group: int
    resources: str
    folder: str
    script: str | None = None


@dataclass(frozen=True)
class SubmitReport:
    """What `submit` (or `retry --submit`) did."""

    backend: str
    dry_run: bool
    arrays: list[ArraySummary]
    submitted_jobs: int
    waiting_jobs: int  # pending jobs left for a later submit (queue cap, --limit)
    recovered: list[str] = field(default_factory=list)  # what crash recovery found
    cancelled_jobs: int = 0  # cancelled jobs in the campaign: not submitted until resumed
    held: str | None = None  # a site limit refused a submission: until when, and why

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class JobRow:
    """One job as `status --verbose` shows it."""

    key: str
    params: dict[str, Any]
    state: str
    attempts: int
    next_retry_at: datetime | None
    scheduler_id: str | None
    output: str
    error: str | None
    failure_class: str | None
    log: str | None
    exit_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (times as ISO-8601 UTC)."""
        data = asdict(self)
        data["next_retry_at"] = iso(self.next_retry_at)
        return data


@dataclass(frozen=True)
class Failure:
    """A failed job, for the 'latest failures' list."""

    key: str
    failure_class: str | None
    error: str | None
    attempts: int
    exhausted: bool
    next_retry_at: datetime | None
    log: str | None


@dataclass(frozen=True)
class StatusReport:
    """Counts per state and where to look."""

    name: str
    version: str
    path: str
    total: int
    counts: dict[str, int]
    failures_by_class: dict[str, int]
    retry_due: int
    retry_waiting: int
    exhausted: int
    logs: str
    backend: str | None
    open_arrays: int
    latest_failures: list[Failure]
    jobs: list[JobRow] | None = None
    jobs_matched: int | None = None  # how many jobs the selection matched (>= len(jobs))
    reconciled_at: datetime | None = None
    unknown_scheduler: str | None = None  # set when the scheduler could not be asked
    next_retry_at: datetime | None = None  # the soonest retry of a job waiting for its backoff
    breaker_open_since: datetime | None = None  # the circuit breaker is open: nothing submitted
    breaker_reason: str | None = None
    database: str | None = None  # the runs database's URL, password masked

    @property
    def finished(self) -> bool:
        """True when no job will change without user action."""
        active = sum(self.counts[s] for s in ("pending", "queued", "running"))
        return active == 0 and self.retry_due == 0 and self.retry_waiting == 0

    @property
    def outcome(self) -> str:
        """`complete` (every job completed), `incomplete` (finished, but some jobs failed for
        good or were cancelled) or `unfinished` (some job may still change)."""
        if self.counts.get("completed", 0) == self.total:
            return "complete"
        return "incomplete" if self.finished else "unfinished"

    def to_dict(self) -> dict[str, Any]:
        """The `status --json` object (documented in the CLI reference)."""
        data: dict[str, Any] = {
            "campaign": {"name": self.name, "version": self.version, "path": self.path},
            "total": self.total,
            "counts": {s: self.counts.get(s, 0) for s in ALL_STATES},
            "failures": {
                "by_class": self.failures_by_class,
                "retry_due": self.retry_due,
                "retry_waiting": self.retry_waiting,
                "exhausted": self.exhausted,
                "next_retry_at": iso(self.next_retry_at),
            },
            "logs": self.logs,
            "backend": self.backend,
            "open_arrays": self.open_arrays,
            "finished": self.finished,
            "outcome": self.outcome,
            "circuit_breaker": {
                "open": self.breaker_open_since is not None,
                "since": iso(self.breaker_open_since),
                "reason": self.breaker_reason,
            },
            "database": self.database,
        }
        if self.reconciled_at is not None:
            data["reconciled_at"] = iso(self.reconciled_at)
        if self.unknown_scheduler:
            data["scheduler_error"] = self.unknown_scheduler
        if self.jobs is not None:
            data["jobs"] = [j.to_dict() for j in self.jobs]
            data["jobs_matched"] = self.jobs_matched
        return data


@dataclass(frozen=True)
class RetryReport:
    """What `retry` did and what still waits."""

    reset: list[str]  # job keys put back to pending
    waiting: list[tuple[str, datetime | None]]  # key, when due
    exhausted: list[Failure]
    submit: SubmitReport | None = None
    dry_run: bool = False
    left_alone: int = 0  # selected jobs queued or running: never reset
    started_over: bool = False  # `--reset`: any state, fresh attempt budget (else: due retries)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "reset": self.reset,
            "left_alone": self.left_alone,
            "started_over": self.started_over,
            "waiting": [{"key": k, "next_retry_at": iso(t)} for k, t in self.waiting],
            "exhausted": [{**asdict(f), "next_retry_at": None} for f in self.exhausted],
            "submit": self.submit.to_dict() if self.submit else None,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class CancelReport:
    """What `cancel` did."""

    cancelled_jobs: int
    arrays: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class EstimateReport:
    """What a campaign will cost."""

    n_jobs: int
    remaining_jobs: int
    n_arrays: int
    n_tasks: int
    groups: list[dict[str, Any]]
    node_hours: float  # charged by the site's rules: CPU and GPU node-hours together
    cpu_hours: float
    gpu_hours: float
    expected_wall_hours: float
    basis: str  # "time limit" or "measured runtimes (n=..)"
    cpu_node_hours: float = 0.0
    gpu_node_hours: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)
