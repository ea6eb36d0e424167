"""Job states, allowed transitions, scheduler-state mapping, failure classes. Pure.

    pending ──submit──▶ queued ──▶ running ──▶ completed
       ▲                  │           │             │ (qa --requeue: invalid output)
       │                  └───────────┴──▶ failed ◀─┘
       ├──────────────── retry ────────────┘
       └── retry --reset ── cancelled, failed, completed

`check_transition` is the one gate: the store calls it before every state change.

"Eligible for retry" and "exhausted" are derived from stored facts
(attempts, max_retries, next_retry_at), never stored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from campaigns.errors import IllegalTransitionError


class JobState(str, enum.Enum):
    """Where a job is in its life."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        """Handed to a scheduler and not yet back."""
        return self in (JobState.QUEUED, JobState.RUNNING)


ALL_STATES = tuple(s.value for s in JobState)

TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.QUEUED: frozenset(
        {
            JobState.PENDING,
            JobState.RUNNING,
            JobState.COMPLETED,
            JobState.FAILED,
            JobState.CANCELLED,
        }
    ),
    JobState.RUNNING: frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}),
    # qa --requeue (invalid output); retry --reset (run it again from scratch)
    JobState.COMPLETED: frozenset({JobState.FAILED, JobState.PENDING}),
    JobState.FAILED: frozenset({JobState.PENDING}),
    JobState.CANCELLED: frozenset({JobState.PENDING}),
}


def can_transition(old: JobState, new: JobState) -> bool:
    """True when `old -> new` is allowed (staying put always is)."""
    return old == new or new in TRANSITIONS[old]


def check_transition(old: JobState, new: JobState) -> None:
    """Raise IllegalTransitionError unless `old -> new` is allowed."""
    if not can_transition(old, new):
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "nothing"
        raise IllegalTransitionError(
            f"a job cannot go from {old.value} to {new.value} (from {old.value}: {allowed})."
        )


class FailureClass(str, enum.Enum):
    """Why an attempt failed."""

    EXIT_CODE = "exit_code"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    NODE_FAIL = "node_fail"
    PREEMPTED = "preempted"
    BOOT_FAIL = "boot_fail"
    CANCELLED = "cancelled"
    MISSING_OUTPUT = "missing_output"
    LOST = "lost"
    INVALID_OUTPUT = "invalid_output"


class TaskState(str, enum.Enum):
    """A scheduler's view of one array task, normalised."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    CANCELLED = "CANCELLED"
    LOST = "LOST"  # the executor itself is gone (a dead local runner)
    UNKNOWN = "UNKNOWN"

    @property
    def is_final(self) -> bool:
        """The task will not change any more."""
        return self not in (TaskState.PENDING, TaskState.RUNNING, TaskState.UNKNOWN)


_SLURM: Mapping[str, TaskState] = {
    "PENDING": TaskState.PENDING,
    "CONFIGURING": TaskState.PENDING,
    "REQUEUED": TaskState.PENDING,
    "REQUEUE_FED": TaskState.PENDING,
    "REQUEUE_HOLD": TaskState.PENDING,
    "RESV_DEL_HOLD": TaskState.PENDING,
    "SUSPENDED": TaskState.RUNNING,
    "RUNNING": TaskState.RUNNING,
    "COMPLETING": TaskState.RUNNING,
    "STAGE_OUT": TaskState.RUNNING,
    "SIGNALING": TaskState.RUNNING,
    "RESIZING": TaskState.RUNNING,
    "STOPPED": TaskState.RUNNING,
    "COMPLETED": TaskState.COMPLETED,
    "FAILED": TaskState.FAILED,
    "SPECIAL_EXIT": TaskState.FAILED,
    "TIMEOUT": TaskState.TIMEOUT,
    "DEADLINE": TaskState.TIMEOUT,
    "OUT_OF_MEMORY": TaskState.OUT_OF_MEMORY,
    "NODE_FAIL": TaskState.NODE_FAIL,
    "PREEMPTED": TaskState.PREEMPTED,
    "BOOT_FAIL": TaskState.BOOT_FAIL,
    "CANCELLED": TaskState.CANCELLED,
    "REVOKED": TaskState.CANCELLED,
}


def from_slurm(state: str) -> TaskState:
    """Map a Slurm state (`CANCELLED by 0`, `OUT_OF_MEMORY+`, ...) to a TaskState."""
    word = state.strip().split(" ")[0].rstrip("+").upper()
    return _SLURM.get(word, TaskState.UNKNOWN)


_TASK_FAILURE: Mapping[TaskState, FailureClass] = {
    TaskState.FAILED: FailureClass.EXIT_CODE,
    TaskState.TIMEOUT: FailureClass.TIMEOUT,
    TaskState.OUT_OF_MEMORY: FailureClass.OUT_OF_MEMORY,
    TaskState.NODE_FAIL: FailureClass.NODE_FAIL,
    TaskState.PREEMPTED: FailureClass.PREEMPTED,
    TaskState.BOOT_FAIL: FailureClass.BOOT_FAIL,
    TaskState.CANCELLED: FailureClass.CANCELLED,
    TaskState.COMPLETED: FailureClass.LOST,  # the task ended well but left no manifest
    TaskState.LOST: FailureClass.LOST,
}


_SCHEDULER_KILLS = frozenset(
    {
        TaskState.TIMEOUT,
        TaskState.OUT_OF_MEMORY,
        TaskState.NODE_FAIL,
        TaskState.PREEMPTED,
        TaskState.BOOT_FAIL,
        TaskState.CANCELLED,
    }
)


@dataclass(frozen=True)
class Verdict:
    """What reconciliation decides about one open job."""

    state: JobState
    failure: FailureClass | None = None
    exit_code: int | None = None
    error: str | None = None


def _failure_class(text: Any) -> FailureClass:
    # A manifest from another version of the worker may name a class this one lacks:
    # it still failed, so count it as a plain failure rather than crash reconciliation.
    try:
        return FailureClass(text or FailureClass.EXIT_CODE.value)
    except ValueError:
        return FailureClass.EXIT_CODE


def judge(task: TaskState, manifest: Mapping[str, Any] | None, *, lost: bool = False) -> Verdict:
    """Decide a job's state from its task's scheduler state and its manifest, if any.

    The manifest (written last by the worker) is the job's own word and wins.
    `lost` says the scheduler has forgotten the task for longer than its grace period.
    """
    if manifest is not None:
        code = manifest.get("exit_code")
        failure = _failure_class(manifest.get("failure"))
        if code == 0 and not manifest.get("failure"):
            return Verdict(JobState.COMPLETED, exit_code=0)
        if failure == FailureClass.EXIT_CODE and task in _SCHEDULER_KILLS:
            # The scheduler killed the job (time limit, memory, node): its reason beats the code.
            return Verdict(
                JobState.FAILED,
                _TASK_FAILURE[task],
                code,
                f"killed by the scheduler ({task.value}), exit code {code}",
            )
        return Verdict(JobState.FAILED, failure, code, manifest.get("error") or f"exit code {code}")
    if task == TaskState.PENDING:
        return Verdict(JobState.QUEUED)
    if task == TaskState.RUNNING:
        return Verdict(JobState.RUNNING)
    if task == TaskState.UNKNOWN:
        if lost:
            return Verdict(
                JobState.FAILED,
                FailureClass.LOST,
                None,
                "the scheduler no longer knows the task and it left no manifest",
            )
        return Verdict(JobState.QUEUED)
    failure = _TASK_FAILURE[task]
    return Verdict(
        JobState.FAILED, failure, None, f"task ended {task.value} before the job finished"
    )
