"""A scheduler fake at the seam (`campaigns.scheduler.base.Scheduler`), for fast tests of
the operations. The store, the array folders, the manifests and, with `run`, the worker
are all real; only the queue is in memory. Tests script it: fail or crash a submission,
set what `poll` reports, forget an array as a scheduler does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from campaigns.core.spec import Machine
from campaigns.core.states import TaskState
from campaigns.errors import SchedulerError, SiteLimitError
from campaigns.node.worker import TaskRunner
from campaigns.scheduler.base import ArrayRequest, ArrayStatus, TaskStatus


class Crash(BaseException):
    """The submitting process died here (a BaseException, as a SIGKILL is not an error)."""


@dataclass
class Submitted:
    """One array the fake accepted."""

    scheduler_id: str
    request: ArrayRequest
    tasks: dict[int, TaskStatus] = field(default_factory=dict)
    forgotten: bool = False  # the scheduler has no record of it any more


class FakeScheduler:
    """An in-memory queue; `run` executes an array's tasks with the real worker."""

    name = "fake"

    def __init__(self) -> None:
        self.arrays: dict[str, Submitted] = {}
        self.crash_before_submit = False  # die between recording the intent and sbatch
        self.crash_after_submit = False  # die between sbatch and recording its id
        self.cancelled: list[str] = []
        # Refusals, as a site's sbatch says no: each submit raises the next one queued here,
        # and with `max_submitted` (a QOS's MaxSubmitJobsPerUser) an array that would put
        # more tasks than that in the queue is refused for the limit.
        self.refusals: list[SchedulerError] = []
        self.max_submitted: int | None = None
        self.refused = 0

    @classmethod
    def from_machine(cls, machine: Machine) -> FakeScheduler:
        """A fresh fake (the machine does not matter)."""
        return cls()

    @classmethod
    def affinity(cls) -> int:
        """Never chosen by `auto`."""
        return 0

    def max_array_size(self) -> int | None:
        """No limit."""
        return None

    def render(self, request: ArrayRequest) -> str:
        """What would be submitted."""
        return f"fake array {request.name}: {request.n_tasks} tasks\n"

    def submit(self, request: ArrayRequest) -> str:
        """Accept the array (or crash where the test says)."""
        if self.crash_before_submit:
            self.crash_before_submit = False
            raise Crash("killed before sbatch")
        if self.refusals:
            self.refused += 1
            raise self.refusals.pop(0)
        if self.max_submitted is not None:
            queued = sum(
                1
                for array in self.arrays.values()
                for index in range(array.request.n_tasks)
                if index not in array.tasks or not array.tasks[index].state.is_final
            )
            if queued + request.n_tasks > self.max_submitted:
                self.refused += 1
                raise SiteLimitError(
                    f"sbatch refused {request.folder.name} for a site limit: "
                    '"QOSMaxSubmitJobPerUserLimit"'
                )
        scheduler_id = f"F{len(self.arrays) + 1}"
        self.arrays[scheduler_id] = Submitted(scheduler_id, request)
        if self.crash_after_submit:
            self.crash_after_submit = False
            raise Crash("killed after sbatch, before its id was recorded")
        return scheduler_id

    def find(self, token: str, folder: Path, since: datetime) -> str | None:
        """The array submitted with `token`, if it got here."""
        return next((s for s, a in self.arrays.items() if a.request.token == token), None)

    def poll(self, arrays: Mapping[str, Path]) -> dict[str, ArrayStatus]:
        """What the test set for each array (tasks not set are not reported)."""
        out = {}
        for sid in arrays:
            known = self.arrays.get(sid)
            if known is None or known.forgotten:
                out[sid] = ArrayStatus(known=False)
            else:
                out[sid] = ArrayStatus(tasks=dict(known.tasks))
        return out

    def cancel(self, scheduler_ids: Sequence[str]) -> None:
        """Remember what was cancelled; tasks not finished end CANCELLED."""
        for sid in scheduler_ids:
            self.cancelled.append(sid)
            array = self.arrays.get(sid)
            if array:
                for index in range(array.request.n_tasks):
                    state = array.tasks.get(index)
                    if state is None or not state.state.is_final:
                        array.tasks[index] = TaskStatus(TaskState.CANCELLED)

    def log_path(self, folder: Path, scheduler_id: str, task_index: int) -> Path:
        """One log per task."""
        return folder / f"fake-{scheduler_id}-{task_index}.log"

    # -- scripting ------------------------------------------------------------------

    def set_all(self, state: TaskState, exit_code: int | None = None) -> None:
        """Every task of every array reports `state`."""
        for array in self.arrays.values():
            for index in range(array.request.n_tasks):
                array.tasks[index] = TaskStatus(state, exit_code)

    def run(self) -> None:
        """Run every task not finished yet with the real worker (manifests and all)."""
        for sid, array in self.arrays.items():
            for index in range(array.request.n_tasks):
                if index in array.tasks and array.tasks[index].state.is_final:
                    continue
                folder = array.request.folder
                with open(self.log_path(folder, sid, index), "a", encoding="utf-8") as log:
                    # TaskRunner, not run_task: no signal handlers in the test process.
                    code = TaskRunner(folder, index, log, f"{sid}_{index}").run()
                state = TaskState.COMPLETED if code == 0 else TaskState.FAILED
                array.tasks[index] = TaskStatus(state, code)

    def jobs_submitted(self) -> list[str]:
        """The uid of every job in every accepted array, once per array it was in."""
        import json

        uids = []
        for array in self.arrays.values():
            for line in (array.request.folder / "tasks.jsonl").read_text().splitlines():
                uids.extend(job["uid"] for job in json.loads(line)["jobs"])
        return uids


class SharedFake(FakeScheduler):
    """The fake as a registered backend: one instance per test (each CLI command asks the
    registry anew); register it with `registry.register("fake", "fake_scheduler:SharedFake")`
    and reset `SharedFake.instance = None` afterwards (the `fake_backend` fixture does both)."""

    instance: SharedFake | None = None

    @classmethod
    def from_machine(cls, machine: Machine) -> SharedFake:
        """The test's one instance."""
        if cls.instance is None:
            cls.instance = cls()
        return cls.instance
