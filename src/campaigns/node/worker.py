"""What runs inside one array task: run its jobs, move outputs into place, write manifests.

Runs on compute nodes. It never opens the campaign database: each job leaves
an atomic JSON manifest (temp file + rename, written LAST) that the manager
reads in bulk. A job counts as done only through its manifest.

    python -m campaigns.node.worker ARRAY_DIR TASK_INDEX SCHEDULER_ID

Array folder contents (written by the manager before submission):
    array.json     header: campaign, launcher, parallelism, ...
    tasks.jsonl    line i = the jobs of task i
    manifests/     one <uid>.json per finished job (written here)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from campaigns.node.files import sha256_of, utc_iso, write_atomic

MANIFEST_FORMAT = 1


def read_task(array_dir: Path, index: int) -> list[dict[str, Any]]:
    """The jobs of task `index` (line `index` of tasks.jsonl)."""
    with open(array_dir / "tasks.jsonl", encoding="utf-8") as fh:
        for number, line in enumerate(fh):
            if number == index:
                jobs: list[dict[str, Any]] = json.loads(line)["jobs"]
                return jobs
    raise IndexError(f"{array_dir}/tasks.jsonl has no task {index}")


class TaskRunner:
    """Runs the jobs of one array task and writes their manifests."""

    def __init__(self, array_dir: Path, index: int, log: IO[str], scheduler_id: str) -> None:
        self.array_dir = array_dir
        self.index = index
        self.log = log
        self.header: dict[str, Any] = json.loads((array_dir / "array.json").read_text())
        self.jobs = read_task(array_dir, index)
        self.children: set[subprocess.Popen[bytes]] = set()
        self.lock = threading.Lock()
        self.stopping = False
        self.scheduler_id = scheduler_id  # the task as its scheduler calls it, e.g. `123_4`

    def run(self) -> int:
        """Run every job; return 0 when all completed, 1 otherwise."""
        parallel = max(1, min(int(self.header.get("parallel", 1)), len(self.jobs)))
        self._say(
            f"campaigns task {self.index} of {self.array_dir.name} on {socket.gethostname()}: "
            f"{len(self.jobs)} job(s), {parallel} at a time"
        )
        if parallel == 1:
            results = [self.run_job(job, self.log) for job in self.jobs]
        else:
            with ThreadPoolExecutor(parallel) as pool:
                results = list(pool.map(self._run_buffered, self.jobs))
        return 0 if all(results) else 1

    def stop(self, signum: int) -> None:
        """Forward a termination signal to running jobs; start no new ones."""
        self.stopping = True
        self._say(f"received signal {signum}: stopping")
        self._signal_children(signal.SIGTERM)
        # Jobs that ignore SIGTERM are killed after a grace period.
        timer = threading.Timer(10.0, self._signal_children, args=(signal.SIGKILL,))
        timer.daemon = True
        timer.start()

    def _signal_children(self, signum: int) -> None:
        with self.lock:
            for child in self.children:
                if child.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signum)  # the job and everything it started

    def _run_buffered(self, job: dict[str, Any]) -> bool:
        # Parallel jobs log to a private file first, then append one whole section.
        fd, tmp = tempfile.mkstemp(dir=self.array_dir, prefix=f".job-{job['uid']}.", suffix=".log")
        with os.fdopen(fd, "w+", encoding="utf-8", errors="replace") as buffer:
            ok = self.run_job(job, buffer)
            buffer.seek(0)
            with self.lock:
                self.log.write(buffer.read())
                self.log.flush()
        os.unlink(tmp)
        return ok

    def run_job(self, job: dict[str, Any], log: IO[str]) -> bool:
        """Run one job and write its manifest; True when it completed."""
        if self.stopping:
            return False
        final = Path(job["output"])
        tmp = Path(job["tmp_output"]) if job.get("tmp_output") else None
        final.parent.mkdir(parents=True, exist_ok=True)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        started = utc_iso()
        workdir = self.header.get("workdir") or os.getcwd()
        log.write(
            f"\n===== job {job['key']} attempt {job['attempt']} start {started} =====\n"
            f"host: {socket.gethostname()}\n"
            f"working directory: {workdir}\n"
            f"command: {job['command']}\n"
        )
        log.flush()
        clock = time.monotonic()
        # Jobs see the Python environment campaigns runs in first on PATH (its venv's `python`).
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        env = {
            **os.environ,
            "PATH": path,
            **job.get("env", {}),
            "CAMPAIGNS_JOB_KEY": job["key"],
            "CAMPAIGNS_JOB_UID": job["uid"],
            "CAMPAIGNS_ATTEMPT": str(job["attempt"]),
            "CAMPAIGNS_OUTPUT": str(tmp or final),
        }
        command = job["command"]
        launcher = self.header.get("launcher")
        argv = ["bash", "-c", command]
        if launcher:
            argv = [*launcher.split(), "bash", "-c", command]
        try:
            child = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=workdir,
                start_new_session=True,
            )
        except OSError as exc:
            return self._finish(
                job, started, 127, "exit_code", f"cannot start: {exc}", [], log, clock
            )
        with self.lock:
            self.children.add(child)
        code = child.wait()
        with self.lock:
            self.children.discard(child)
        if code != 0:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if self.stopping:
                # Killed by the scheduler's signal: leave no manifest, the task state says why.
                log.write(
                    f"===== job {job['key']} attempt {job['attempt']} interrupted (exit code "
                    f"{code}) after {time.monotonic() - clock:.1f} s =====\n"
                )
                return False
            return self._finish(
                job, started, code, "exit_code", f"exit code {code}", [], log, clock
            )
        produced = tmp if tmp is not None else final
        if not produced.is_file() or produced.stat().st_size == 0:
            what = "missing" if not produced.is_file() else "empty"
            return self._finish(
                job,
                started,
                0,
                "missing_output",
                f"exited 0 but its output {final.name} is {what}",
                [],
                log,
                clock,
            )
        if tmp is not None:
            os.replace(tmp, final)
        outputs = [
            {"path": job["output_rel"], "size": final.stat().st_size, "sha256": sha256_of(final)}
        ]
        return self._finish(job, started, 0, None, None, outputs, log, clock)

    def _finish(
        self,
        job: Mapping[str, Any],
        started: str,
        code: int,
        failure: str | None,
        error: str | None,
        outputs: list[dict[str, Any]],
        log: IO[str],
        clock: float,
    ) -> bool:
        """Write the job's manifest (last), then close its log section."""
        manifest = {
            "format": MANIFEST_FORMAT,
            "job_id": job["id"],
            "uid": job["uid"],
            "key": job["key"],
            "params": job["params"],
            "attempt": job["attempt"],
            "config_hash": self.header.get("config_hash"),
            "scheduler_id": self.scheduler_id,
            "host": socket.gethostname(),
            "started_at": started,
            "ended_at": utc_iso(),
            "exit_code": code,
            "failure": failure,
            "error": error,
            "outputs": outputs,
        }
        write_atomic(Path(job["manifest"]), json.dumps(manifest, indent=1) + "\n")
        verdict = "completed" if failure is None else f"failed ({error})"
        log.write(
            f"===== job {job['key']} attempt {job['attempt']} {verdict}: exit code {code} after "
            f"{time.monotonic() - clock:.1f} s, end {manifest['ended_at']} =====\n"
        )
        log.flush()
        return failure is None

    def _say(self, text: str) -> None:
        self.log.write(f"[{utc_iso()}] {text}\n")
        self.log.flush()


def run_task(array_dir: Path, index: int, log: IO[str], scheduler_id: str) -> int:
    """Run one task with signal handling; the exit status of the task."""
    runner = TaskRunner(array_dir, index, log, scheduler_id)

    def on_signal(signum: int, _frame: Any) -> None:
        if signum == signal.SIGUSR2:  # time limit near: Slurm will end the task as TIMEOUT
            runner._say("time limit is near")
            return
        runner.stop(signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGUSR2, on_signal)
    return runner.run()


def main(argv: list[str] | None = None) -> int:
    """Entry point on the compute node: `ARRAY_DIR TASK_INDEX SCHEDULER_ID`.

    The backend's script supplies the index and id (Slurm from `$SLURM_ARRAY_*`), so the
    worker knows no scheduler.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    array_dir, index, scheduler_id = Path(args[0]), int(args[1]), args[2]
    return run_task(array_dir, index, sys.stdout, scheduler_id)


if __name__ == "__main__":
    raise SystemExit(main())
