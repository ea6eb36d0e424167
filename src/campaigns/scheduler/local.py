"""The local backend: runs arrays on this machine, no scheduler needed.

`submit` starts one detached runner process per array (new session, so it
outlives the `submit` command). The runner (`campaigns.node.runner`) claims
the array folder, runs its tasks and appends their states to `status.jsonl`,
which `poll` reads; a runner that died leaves its unfinished tasks LOST.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from campaigns.core.spec import Machine
from campaigns.core.states import TaskState
from campaigns.node.files import utc_iso
from campaigns.node.runner import CLAIM, STATUS, claim, read_claim
from campaigns.node.ticker import PID_FILE
from campaigns.scheduler.base import ArrayRequest, ArrayStatus, TaskStatus, TickJob


class LocalScheduler:
    """Runs arrays as detached local processes."""

    name = "local"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    @classmethod
    def from_machine(cls, machine: Machine) -> LocalScheduler:
        """Jobs run with the machine file's Python, else this one."""
        return cls(machine.python)

    @classmethod
    def affinity(cls) -> int:
        """Always usable, and the fallback: 1."""
        return 1

    def max_array_size(self) -> int | None:
        """No limit: an array is one runner process."""
        return None

    def command(self, request: ArrayRequest) -> list[str]:
        """The runner's command line."""
        return [
            request.python or self.python,
            "-m",
            "campaigns.node.runner",
            str(request.folder),
        ]

    def render(self, request: ArrayRequest) -> str:
        """The command `submit` would start, as shell text."""
        import shlex

        setup = "".join(f"{line}\n" for line in request.setup)
        return f"{setup}{shlex.join(self.command(request))}  # {request.n_tasks} tasks, detached\n"

    def submit(self, request: ArrayRequest) -> str:
        """Start the runner detached; wait until it has claimed the folder."""
        log = open(request.folder / "runner.log", "ab")  # noqa: SIM115 -- closed below, after Popen
        try:
            proc = subprocess.Popen(
                self.command(request),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + 30
        while not (request.folder / CLAIM).exists():
            if proc.poll() is not None:
                raise OSError(
                    f"the local runner exited at once (code {proc.returncode}); "
                    f"see {request.folder / 'runner.log'}"
                )
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return f"L{proc.pid}"

    def find(self, token: str, folder: Path, since: datetime) -> str | None:
        """After a crash: did a runner claim this folder? Else claim it so none ever will."""
        if claim(folder, {"abandoned_by": os.getpid(), "at": utc_iso()}):
            return None  # we now own the folder: nothing ran and nothing will
        pid = read_claim(folder).get("pid")
        return f"L{pid}" if pid else None

    def poll(self, arrays: Mapping[str, Path]) -> dict[str, ArrayStatus]:
        """Task states from each runner's status file; a dead runner's unfinished tasks are LOST."""
        out: dict[str, ArrayStatus] = {}
        for scheduler_id, folder in arrays.items():
            tasks = _read_status(folder)
            alive = _alive(read_claim(folder).get("pid"), folder)
            if not alive:
                n_tasks = int(json.loads((folder / "array.json").read_text())["n_tasks"])
                for index in range(n_tasks):
                    if index not in tasks or not tasks[index].state.is_final:
                        tasks[index] = TaskStatus(TaskState.LOST)
            out[scheduler_id] = ArrayStatus(tasks=tasks, known=True)
        return out

    def cancel(self, scheduler_ids: Sequence[str]) -> None:
        """Terminate the runners (and their jobs) of whole arrays."""
        for sid in scheduler_ids:
            pid = int(sid.split("_")[0].lstrip("L"))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)

    def log_path(self, folder: Path, scheduler_id: str, task_index: int) -> Path:
        """One log per task."""
        return folder / f"task-{task_index:05d}.log"

    def autopilot(self) -> LocalAutopilot:
        """A detached ticker process on this machine."""
        return LocalAutopilot(self.python)


class LocalAutopilot:
    """The autopilot as a detached local process (`campaigns.node.ticker`)."""

    method = "process"

    def __init__(self, python: str) -> None:
        self.python = python

    def install(self, job: TickJob) -> str:
        """Start the ticker unless one runs for this campaign already."""
        if self.active(job):
            return f"a ticker process already runs ({job.folder / PID_FILE})"
        job.folder.mkdir(parents=True, exist_ok=True)
        (job.folder / PID_FILE).unlink(missing_ok=True)
        argv = [self.python, "-m", "campaigns.node.ticker", str(job.folder), str(job.interval)]
        with open(job.folder / "ticker.out", "ab") as out:
            subprocess.Popen(
                [*argv, "--", *job.argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + 10
        while not (job.folder / PID_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"a detached ticker process (pid in {job.folder / PID_FILE})"

    def remove(self, job: TickJob) -> None:
        """The ticker stops at its next look at the stop file; a running tick finishes."""
        job.stop_file.touch()

    def active(self, job: TickJob) -> bool:
        """True while the ticker process lives."""
        try:
            pid = int((job.folder / PID_FILE).read_text())
        except (OSError, ValueError):
            return False
        return _alive(pid, job.folder)

    def keep(self, job: TickJob) -> str | None:
        """Nothing to do: the ticker that runs this tick starts the next one."""
        return None

    def health(self, job: TickJob, now: datetime) -> list[str]:
        """A ticker process never waits for resources."""
        return []


def _alive(pid: int | None, folder: Path) -> bool:
    """True when `pid` is a live (not zombie) runner of `folder`."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and str(folder) in cmdline


def _read_status(folder: Path) -> dict[int, TaskStatus]:
    tasks: dict[int, TaskStatus] = {}
    try:
        lines = (folder / STATUS).read_text().splitlines()
    except FileNotFoundError:
        return tasks
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        at = datetime.fromisoformat(event["at"])
        old = tasks.get(event["task"])
        state = TaskState(event["state"])
        tasks[event["task"]] = TaskStatus(
            state,
            event.get("exit_code"),
            started_at=at if state == TaskState.RUNNING else (old.started_at if old else None),
            ended_at=at if state.is_final else None,
            node=event.get("node"),
        )
    return tasks
