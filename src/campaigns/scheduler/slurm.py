"""The Slurm backend: one sbatch job array per campaign array, through submitit; sacct to poll.

Submission goes through submitit's `SlurmExecutor`: it renders the sbatch
script (`_make_sbatch_string`, a pure function, so `render` shows exactly what
`submit` sends), runs `sbatch` and parses the job id. We do NOT use its
`map_array`/`batch` path: that pickles every task and leaves four files and a
folder per task (submitted/result pickles, out/err); at 40,000 jobs that is
160,000 files on a shared filesystem, while our tasks are already described by
the array folder (`array.json`, `tasks.jsonl`). Instead we take submitit's own
array path (`SlurmExecutor._internal_process_submissions`) minus the pickles:
`parameters["map_count"] = n` on a fresh executor, then `_submit_command(...)` with
the worker as the command (`slurm_cli.sbatch`). One sbatch per array; each task
leaves one log (`{array}_{task}_0_log.out`) and one manifest.

Script choices: `use_srun=False` (the worker runs in the batch step and starts
`srun --mpi=pmix` itself for multi-rank jobs; submitit's srun would run the
worker once per rank), `exec` (the worker becomes the batch shell, so it gets
the `B:USR2@90` notice; Slurm then ends the task as TIMEOUT, not FAILED), and
`--no-requeue` (Slurm never reruns a task behind the manager's back).

Polling: one `sacct` for all open arrays per cycle (explicit `-o`, `--parsable2`,
`SLURM_TIME_FORMAT=standard`), plus one `squeue` for arrays sacct does not show
yet (accounting lags a few seconds behind the controller).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from campaigns.core.spec import Machine
from campaigns.errors import SchedulerError, SubmissionUnknownError
from campaigns.scheduler.base import ArrayRequest, ArrayStatus
from campaigns.scheduler.slurm_autopilot import SlurmAutopilot
from campaigns.scheduler.slurm_cli import query, retrying, sbatch, sbatch_script
from campaigns.scheduler.slurm_text import (
    ABANDONED,
    JOB_ID,
    SACCT_FIELDS,
    base_id,
    parse_sacct,
    parse_squeue,
    sbatch_parameters,
    slurm_time,
    worker_command,
)


class SlurmScheduler:
    """Job arrays on Slurm, submitted through submitit, polled with sacct."""

    name = "slurm"

    def __init__(self, python: str | None = None) -> None:
        self.python = python
        self._max_array_size: tuple[int | None] | None = None  # cached; (None,) = unknown
        self._n_tasks: dict[Path, int] = {}

    @classmethod
    def from_machine(cls, machine: Machine) -> SlurmScheduler:
        """Tasks run with the machine file's Python, else this one."""
        return cls(python=machine.python)

    @classmethod
    def affinity(cls) -> int:
        """2 where `sbatch` is on PATH (beats local), else 0."""
        return 2 if shutil.which("sbatch") else 0

    # -- submission ---------------------------------------------------------------

    def render(self, request: ArrayRequest) -> str:
        """The sbatch script `submit` would send (pure: no Slurm needed)."""
        command = worker_command(self._python(request), request.folder)
        return sbatch_script(request, sbatch_parameters(request), command)

    def submit(self, request: ArrayRequest) -> str:
        """One sbatch for the whole array; transient failures are retried. The array job id.

        An sbatch that failed transiently (a timeout) may still have reached the controller:
        before each new try, and after the last, we look the array up by its token, so one
        `submit` never makes two arrays. If even that lookup fails, `SubmissionUnknownError`
        says the outcome is unknown (the intent should stay for crash recovery to settle).
        """
        params = sbatch_parameters(request)
        command = worker_command(self._python(request), request.folder)
        uncertain = False

        def once() -> str:
            nonlocal uncertain
            if uncertain:
                found = self._find_by_token(request.token, None)
                if found:
                    return found
            uncertain = True  # until sbatch answers clearly, one way or the other
            try:
                job_id = sbatch(request, self._python(request), params, command)
            except SchedulerError:
                uncertain = False  # sbatch said no: nothing reached Slurm
                raise
            uncertain = False
            return job_id

        try:
            return retrying(once, f"submitting {request.folder.name} to Slurm")
        except SchedulerError as exc:
            if not uncertain:
                raise
            try:
                found = self._find_by_token(request.token, None)
            except SchedulerError:
                raise SubmissionUnknownError(
                    f"{exc} Whether the array reached Slurm is unknown: a later `submit` or "
                    f"`monitor` looks for a job named *-{request.token} before resubmitting."
                ) from exc
            if found:
                return found
            raise

    def find(self, token: str, folder: Path, since: datetime) -> str | None:
        """The array job id of a submission with `token` in its job name, or None.

        When none is found, the folder is marked abandoned first, so an sbatch still in
        flight from the crashed process submits an array that exits without running a job.
        """
        marker = Path(folder) / ABANDONED
        with contextlib.suppress(OSError):  # no folder: nothing can run from it anyway
            marker.write_text(
                f"abandoned by process {os.getpid()} at "
                f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
            )
        found = self._find_by_token(token, since)
        if found:
            marker.unlink(missing_ok=True)
        return found

    def _find_by_token(self, token: str, since: datetime | None) -> str | None:
        suffix = f"-{token}"
        user = str(os.getuid())
        # All states: a finished job stays in squeue for MinJobAge, longer than sacct lags.
        out = query(["squeue", "-h", "-t", "all", "-u", user, "-o", "%F|%j"], "squeue")
        for line in out.splitlines():
            job, _, name = line.strip().partition("|")
            if name.endswith(suffix) and job.isdigit():
                return job
        start = since or datetime.now(timezone.utc) - timedelta(days=1)
        out = query(
            [
                "sacct",
                "-X",
                "--noheader",
                "--parsable2",
                "-u",
                user,
                "-S",
                slurm_time(start - timedelta(minutes=5)),
                "-o",
                "JobID,JobName",
            ],
            "sacct",
        )
        for line in out.splitlines():
            job, _, name = line.strip().partition("|")
            match = JOB_ID.match(job)
            if match and name.endswith(suffix):
                return match["job"]
        return None

    # -- state --------------------------------------------------------------------

    def poll(self, arrays: Mapping[str, Path]) -> dict[str, ArrayStatus]:
        """Task states of all `arrays` from one sacct call (and at most one squeue call)."""
        if not arrays:
            return {}
        ids = {base_id(sid): sid for sid in arrays}
        since = self._window_start(arrays.values())
        out = query(
            [
                "sacct",
                "-X",
                "--noheader",
                "--parsable2",
                "-S",
                slurm_time(since),
                "-j",
                ",".join(sorted(ids, key=int)),
                "-o",
                SACCT_FIELDS,
            ],
            "sacct",
        )
        found = parse_sacct(out)
        lagging = [
            base
            for base, sid in ids.items()
            if len(found.get(base, {})) < self._task_count(arrays[sid])
        ]
        if lagging:
            try:
                queued = parse_squeue(
                    query(
                        ["squeue", "-h", "-r", "-j", ",".join(lagging), "-o", "%i|%T|%N|%S"],
                        "squeue",
                    )
                )
            except SchedulerError:
                queued = {}  # only a supplement: sacct answered
            for base in lagging:
                for index, status in queued.get(base, {}).items():
                    found.setdefault(base, {}).setdefault(index, status)
        return {
            sid: ArrayStatus(tasks=found[base], known=True)
            if found.get(base)
            else ArrayStatus(known=False)
            for base, sid in ids.items()
        }

    def cancel(self, scheduler_ids: Sequence[str]) -> None:
        """One scancel for all ids (`123` or `123_4`); ids Slurm no longer knows are ignored."""
        if scheduler_ids:
            query(["scancel", *scheduler_ids], "scancel")

    def log_path(self, folder: Path, scheduler_id: str, task_index: int) -> Path:
        """submitit's stdout (stderr merged) of one array task."""
        return Path(folder) / f"{base_id(scheduler_id)}_{task_index}_0_log.out"

    def autopilot(self) -> SlurmAutopilot:
        """scrontab where it works, else a self-queueing batch job."""
        return SlurmAutopilot()

    def max_array_size(self) -> int | None:
        """The site's MaxArraySize (tasks per array), from `scontrol show config`; or None."""
        if self._max_array_size is None:
            value = None
            try:
                out = query(["scontrol", "show", "config"], "scontrol", attempts=2)
            except SchedulerError:
                out = ""
            match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
            if match:
                value = int(match[1])
            self._max_array_size = (value,)
        return self._max_array_size[0]

    # -- helpers ------------------------------------------------------------------

    def _python(self, request: ArrayRequest) -> str:
        return request.python or self.python or sys.executable

    def _task_count(self, folder: Path) -> int:
        if folder not in self._n_tasks:
            try:
                header = json.loads((folder / "array.json").read_text())
                self._n_tasks[folder] = int(header["n_tasks"])
            except (OSError, ValueError, KeyError, TypeError):
                return 1  # unknown: only a wholly unreported array is looked up in squeue
        return self._n_tasks[folder]

    @staticmethod
    def _window_start(folders: Iterable[Path]) -> datetime:
        """sacct's -S: a day before the oldest array was written (sacct's default is midnight)."""
        now = datetime.now(timezone.utc)
        oldest = now
        for folder in folders:
            try:
                mtime = (folder / "array.json").stat().st_mtime
            except OSError:
                return now - timedelta(days=30)
            oldest = min(oldest, datetime.fromtimestamp(mtime, timezone.utc))
        return oldest - timedelta(days=1)
