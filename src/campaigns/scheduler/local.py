"""The local backend: runs arrays on this machine, no scheduler needed.

`submit` starts one detached runner process per array (new session, so it
outlives the `submit` command). The runner claims the array folder by creating
`runner.json` exclusively, runs the tasks with the same worker code as Slurm,
and appends task state changes to `status.jsonl`. Tasks of all arrays of a
campaign share a pool of slots (file locks under logs/.slots), so several
arrays never oversubscribe the machine.

    python -m campaigns.scheduler.local ARRAY_DIR
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from campaigns.scheduler.base import ArrayRequest, ArrayStatus, TaskStatus
from campaigns.states import TaskState
from campaigns.worker import TaskRunner, utcnow

CLAIM = "runner.json"
STATUS = "status.jsonl"


class LocalScheduler:
    """Runs arrays as detached local processes."""

    name = "local"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def command(self, request: ArrayRequest) -> list[str]:
        """The runner's command line."""
        return [
            request.python or self.python,
            "-m",
            "campaigns.scheduler.local",
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
        claim = _claim(folder, {"abandoned_by": os.getpid(), "at": utcnow()})
        if claim is None:
            return None  # we now own the folder: nothing ran and nothing will
        pid = _read_claim(folder).get("pid")
        return f"L{pid}" if pid else None

    def poll(self, arrays: Mapping[str, Path]) -> dict[str, ArrayStatus]:
        """Task states from each runner's status file; a dead runner's unfinished tasks are LOST."""
        out: dict[str, ArrayStatus] = {}
        for scheduler_id, folder in arrays.items():
            claim = _read_claim(folder)
            tasks = _read_status(folder)
            alive = _alive(claim.get("pid"), folder)
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


def _claim(folder: Path, content: Mapping[str, Any]) -> int | None:
    """Create the claim file exclusively; None if someone else holds it."""
    try:
        fd = os.open(folder / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return 1
    with os.fdopen(fd, "w") as fh:
        json.dump(dict(content), fh)
    return None


def _read_claim(folder: Path) -> dict[str, Any]:
    for _ in range(50):  # the claimer writes right after creating the file
        try:
            text = (folder / CLAIM).read_text()
        except FileNotFoundError:
            return {}
        if text:
            data: dict[str, Any] = json.loads(text)
            return data
        time.sleep(0.01)
    return {}


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


@contextmanager
def _slot(slots_dir: Path, count: int) -> Iterator[int]:
    """Hold one of `count` machine slots (a file lock) for the block's duration."""
    slots_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(count):
            fh = open(slots_dir / f"slot-{index}", "a")  # noqa: SIM115 -- held while the slot is
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
            return
        time.sleep(0.1)


class _Runner:
    """The detached process that runs one array's tasks."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.header: dict[str, Any] = json.loads((folder / "array.json").read_text())
        self.status = open(folder / STATUS, "a", encoding="utf-8")  # noqa: SIM115 -- runner-long
        self.lock = threading.Lock()
        self.active: set[TaskRunner] = set()
        self.stopping = False
        self.time_limit = 60.0 * float(self.header.get("resources", {}).get("time_minutes") or 60)

    def record(self, task: int, state: TaskState, exit_code: int | None = None) -> None:
        with self.lock:
            self.status.write(
                json.dumps(
                    {
                        "task": task,
                        "state": state.value,
                        "at": utcnow(),
                        "exit_code": exit_code,
                        "node": os.uname().nodename,
                    }
                )
                + "\n"
            )
            self.status.flush()

    def run_one(self, index: int) -> None:
        slots = int(self.header.get("local_slots") or os.cpu_count() or 1)
        with _slot(Path(self.header["slots_dir"]), slots):
            if self.stopping:
                self.record(index, TaskState.CANCELLED)
                return
            self.record(index, TaskState.RUNNING)
            with open(self.folder / f"task-{index:05d}.log", "a", encoding="utf-8") as log:
                runner = TaskRunner(self.folder, index, log)
                with self.lock:
                    self.active.add(runner)
                # Like Slurm, end a task that outlives its time limit: it ends TIMEOUT.
                expired = threading.Event()
                timer = threading.Timer(self.time_limit, self._expire, args=(runner, expired))
                timer.daemon = True
                timer.start()
                code = runner.run()
                timer.cancel()
                with self.lock:
                    self.active.discard(runner)
        if expired.is_set():
            state = TaskState.TIMEOUT
        elif self.stopping:
            state = TaskState.CANCELLED
        else:
            state = TaskState.COMPLETED if code == 0 else TaskState.FAILED
        self.record(index, state, code)

    def _expire(self, runner: TaskRunner, expired: threading.Event) -> None:
        expired.set()
        runner.log.write(f"[{utcnow()}] time limit of {self.time_limit:.0f} s reached\n")
        runner.stop(signal.SIGTERM)

    def stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        with self.lock:
            for runner in self.active:
                runner.stop(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        n_tasks = int(self.header["n_tasks"])
        slots = int(self.header.get("local_slots") or os.cpu_count() or 1)
        parallel = max(1, min(int(self.header.get("array_parallelism", n_tasks)), slots, n_tasks))
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(self.run_one, range(n_tasks)))
        return 0


def main(argv: list[str] | None = None) -> int:
    """Runner entry point: claim the folder, run every task."""
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]).absolute()
    os.environ["CAMPAIGNS_SCHEDULER_ID"] = f"L{os.getpid()}"
    if (
        _claim(
            folder,
            {
                "pid": os.getpid(),
                "started_at": utcnow(),
                "started": datetime.now(timezone.utc).timestamp(),
            },
        )
        is not None
    ):
        print(f"{folder} is already claimed; not running it", file=sys.stderr)
        return 0
    return _Runner(folder).run()


if __name__ == "__main__":
    raise SystemExit(main())
