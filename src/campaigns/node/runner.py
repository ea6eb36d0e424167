"""The local runner: a detached process that runs one array's tasks on this machine.

Started by the local backend (`campaigns.scheduler.local`) as

    python -m campaigns.node.runner ARRAY_DIR

It claims the array folder by creating `runner.json` exclusively (so a folder runs
at most once, and crash recovery can claim it first to make sure it never runs),
runs the tasks with the same worker code as Slurm, and appends task state changes
to `status.jsonl`. Tasks of all arrays of a campaign share a pool of slots (file
locks under logs/.slots), so several arrays never oversubscribe the machine.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from campaigns.core.states import TaskState
from campaigns.node.files import utc_iso
from campaigns.node.worker import TaskRunner

CLAIM = "runner.json"
STATUS = "status.jsonl"


def claim(folder: Path, content: Mapping[str, Any]) -> bool:
    """Create the claim file exclusively; False when someone else already holds it."""
    try:
        fd = os.open(folder / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump(dict(content), fh)
    return True


def read_claim(folder: Path) -> dict[str, Any]:
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
                        "at": utc_iso(),
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
                runner = TaskRunner(self.folder, index, log, f"L{os.getpid()}_{index}")
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
        runner.log.write(f"[{utc_iso()}] time limit of {self.time_limit:.0f} s reached\n")
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
    mine = {
        "pid": os.getpid(),
        "started_at": utc_iso(),
        "started": datetime.now(timezone.utc).timestamp(),
    }
    if not claim(folder, mine):
        print(f"{folder} is already claimed; not running it", file=sys.stderr)
        return 0
    return _Runner(folder).run()


if __name__ == "__main__":
    raise SystemExit(main())
