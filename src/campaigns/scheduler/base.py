"""The scheduler seam: what the manager needs from Slurm, the local runner or any other backend.

A backend submits one *array* (a folder under logs/ holding `array.json` and
`tasks.jsonl`), reports the state of many arrays' tasks in one call, finds a
submission by its token after a crash, and cancels. Inside the allocation each task
runs `python -m campaigns.node.worker ARRAY_DIR TASK_INDEX SCHEDULER_ID`.

A new backend is one module with a class that satisfies `Scheduler`, plus one line
in `campaigns.scheduler.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from campaigns.core.spec import Machine, Resources
from campaigns.core.states import TaskState


@dataclass(frozen=True)
class ArrayRequest:
    """Everything a backend needs to submit one array."""

    token: str  # unique; carried into the scheduler's job name so a crash can find it
    name: str  # human job name
    folder: Path  # the array folder (array.json, tasks.jsonl; logs go here)
    n_tasks: int
    resources: Resources  # per task
    parallelism: int  # at most this many tasks at once (%N)
    setup: tuple[str, ...] = ()
    python: str | None = None


@dataclass(frozen=True)
class TaskStatus:
    """A scheduler's view of one array task."""

    state: TaskState
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    node: str | None = None


@dataclass(frozen=True)
class ArrayStatus:
    """The tasks of one array the scheduler told us about (missing index = not reported)."""

    tasks: Mapping[int, TaskStatus] = field(default_factory=dict)
    known: bool = True  # False: the scheduler has no record of the array at all


@dataclass(frozen=True)
class TickJob:
    """A command an autopilot runs every `interval` seconds, unattended (one campaign's tick)."""

    tag: str  # unique per campaign and safe in job names
    argv: tuple[str, ...]  # one tick
    interval: float  # seconds between ticks
    folder: Path  # logs/autopilot/: its scripts, state and output; `stop` in it ends the ticks
    sbatch_options: tuple[tuple[str, str], ...] = ()  # account, partition, qos for Slurm ticks
    method: str | None = None  # a backend's way to prefer (e.g. Slurm's "batch"); None: its best

    @property
    def stop_file(self) -> Path:
        """Present: no further tick runs."""
        return self.folder / "stop"


class Autopilot(Protocol):
    """How a backend runs a recurring tick with nobody watching."""

    method: str  # e.g. "scrontab", "batch", "process"

    def install(self, job: TickJob) -> str:
        """Start the recurring tick (idempotent); a line saying how it runs."""
        ...

    def remove(self, job: TickJob) -> None:
        """Stop it: no tick starts after this returns (one running may finish)."""
        ...

    def active(self, job: TickJob) -> bool:
        """True while the recurring tick is installed."""
        ...

    def keep(self, job: TickJob) -> str | None:
        """Called by each tick: make sure a next tick will run (a broken chain queued again);
        what was done, None when nothing was needed. SchedulerError when it cannot."""
        ...

    def health(self, job: TickJob, now: datetime) -> list[str]:
        """What keeps ticks from running as they should, in words (a tick waiting in the
        queue, a broken chain); empty when nothing does."""
        ...


class Scheduler(Protocol):
    """What every backend provides."""

    name: str

    @classmethod
    def from_machine(cls, machine: Machine) -> Scheduler:
        """An instance configured from the machine file (its Python, its site settings)."""
        ...

    @classmethod
    def affinity(cls) -> int:
        """How well this backend fits this machine: 0 unusable; `auto` takes the highest."""
        ...

    def max_array_size(self) -> int | None:
        """The most tasks one array may hold here (None: no limit)."""
        ...

    def render(self, request: ArrayRequest) -> str:
        """The script or command that `submit` would run (for --dry-run)."""
        ...

    def submit(self, request: ArrayRequest) -> str:
        """Submit one array; return its scheduler id."""
        ...

    def find(self, token: str, folder: Path, since: datetime) -> str | None:
        """The scheduler id of a submission made with `token`, or None if it never arrived."""
        ...

    def poll(self, arrays: Mapping[str, Path]) -> Mapping[str, ArrayStatus]:
        """States of the tasks of many arrays (scheduler id -> folder), in one query."""
        ...

    def cancel(self, scheduler_ids: Sequence[str]) -> None:
        """Cancel whole arrays or single tasks (`123` or `123_4`)."""
        ...

    def log_path(self, folder: Path, scheduler_id: str, task_index: int) -> Path:
        """Where the log of one task goes."""
        ...

    def autopilot(self) -> Autopilot:
        """How this backend runs the autopilot's tick."""
        ...
