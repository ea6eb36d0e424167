"""The Slurm backend: one sbatch job array per campaign array, through submitit; sacct to poll.

Submission goes through submitit's `SlurmExecutor`: it renders the sbatch
script (`_make_sbatch_string`, a pure function, so `render` shows exactly what
`submit` sends), runs `sbatch` and parses the job id. We do NOT use its
`map_array`/`batch` path: that pickles every task and leaves four files and a
folder per task (submitted/result pickles, out/err); at 40,000 jobs that is
160,000 files on a shared filesystem, while our tasks are already described by
the array folder (`array.json`, `tasks.jsonl`). Instead we take submitit's own
array path (`SlurmExecutor._internal_process_submissions`) minus the pickles:
`parameters["map_count"] = n` on a fresh executor, then
`_submit_command("exec python -u -m campaigns.worker FOLDER")`. One sbatch per
array; each task leaves one log (`{array}_{task}_0_log.out`) and one manifest.

Private submitit API used here (pinned by `submitit>=1.5.1,<1.6`; the golden
test `tests/fixtures/sbatch_golden.sh` fails first if it changes):
`submitit.slurm.slurm._make_sbatch_string`, `SlurmExecutor._submit_command`,
`executor.parameters["map_count"]`.

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
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import submitit
from submitit.core.utils import FailedJobError, FailedSubmissionError
from submitit.slurm import slurm as submitit_slurm
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from campaigns.errors import InputError, SchedulerError, SubmissionUnknownError
from campaigns.scheduler.base import ArrayRequest, ArrayStatus, TaskStatus
from campaigns.states import TaskState, from_slurm

#: Sent to the batch shell (the worker) 90 s before the time limit: a notice only.
SIGNAL = "B:USR2@90"
#: Marker `find` leaves in an array folder it gives up on: a late-arriving array then does nothing.
ABANDONED = "abandoned"
#: sacct fields, in this order, for `poll`.
SACCT_FIELDS = "JobID,State,ExitCode,Start,End,NodeList"
#: Options that would break tracking if a campaign overrode them through `sbatch_options`.
RESERVED_OPTIONS = frozenset(
    {"array", "output", "error", "job_name", "comment", "open_mode", "parsable", "wrap"}
)
#: Messages of sbatch/sacct failures worth another try.
TRANSIENT = re.compile(
    r"socket timed out|temporarily unavailable|temporarily unable|try again|"
    r"unable to contact slurm controller|connection refused|connection reset|"
    r"zero bytes were transmitted|unable to connect to database|slurmdbd|timed out|"
    r"communication connection failure|transport endpoint",
    re.IGNORECASE,
)
#: Query failures that no retry will fix.
PERMANENT_QUERY = re.compile(
    r"accounting storage is disabled|invalid option|unrecognized option", re.IGNORECASE
)
ATTEMPTS = 4
COMMAND_TIMEOUT_S = 120.0
_JOB_ID = re.compile(r"^(?P<job>\d+)(?:_(?P<index>\d+|\[(?P<ranges>[^\]]*)\]))?$")

T = TypeVar("T")


class _Transient(Exception):
    """A failure worth retrying (internal: becomes SchedulerError when retries run out)."""


class SlurmScheduler:
    """Job arrays on Slurm, submitted through submitit, polled with sacct."""

    name = "slurm"

    def __init__(self, python: str | None = None) -> None:
        self.python = python
        self._max_array_size: tuple[int | None] | None = None  # cached; (None,) = unknown
        self._n_tasks: dict[Path, int] = {}

    # -- submission ---------------------------------------------------------------

    def render(self, request: ArrayRequest) -> str:
        """The sbatch script `submit` would send (pure: no Slurm needed)."""
        params = sbatch_parameters(request)
        return str(
            submitit_slurm._make_sbatch_string(
                command=worker_command(self._python(request), request.folder),
                folder=Path(request.folder).expanduser().absolute(),
                map_count=request.n_tasks,
                **params,
            )
        )

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
                job_id = _sbatch(request, self._python(request), params, command)
            except SchedulerError:
                uncertain = False  # sbatch said no: nothing reached Slurm
                raise
            uncertain = False
            return job_id

        try:
            return _retrying(once, f"submitting {request.folder.name} to Slurm")
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
        out = _query(["squeue", "-h", "-t", "all", "-u", user, "-o", "%F|%j"], "squeue")
        for line in out.splitlines():
            job, _, name = line.strip().partition("|")
            if name.endswith(suffix) and job.isdigit():
                return job
        start = since or datetime.now(timezone.utc) - timedelta(days=1)
        out = _query(
            [
                "sacct",
                "-X",
                "--noheader",
                "--parsable2",
                "-u",
                user,
                "-S",
                _slurm_time(start - timedelta(minutes=5)),
                "-o",
                "JobID,JobName",
            ],
            "sacct",
        )
        for line in out.splitlines():
            job, _, name = line.strip().partition("|")
            match = _JOB_ID.match(job)
            if match and name.endswith(suffix):
                return match["job"]
        return None

    # -- state --------------------------------------------------------------------

    def poll(self, arrays: Mapping[str, Path]) -> dict[str, ArrayStatus]:
        """Task states of all `arrays` from one sacct call (and at most one squeue call)."""
        if not arrays:
            return {}
        ids = {_base_id(sid): sid for sid in arrays}
        since = self._window_start(arrays.values())
        out = _query(
            [
                "sacct",
                "-X",
                "--noheader",
                "--parsable2",
                "-S",
                _slurm_time(since),
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
                    _query(
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
            _query(["scancel", *scheduler_ids], "scancel")

    def log_path(self, folder: Path, scheduler_id: str, task_index: int) -> Path:
        """submitit's stdout (stderr merged) of one array task."""
        return Path(folder) / f"{_base_id(scheduler_id)}_{task_index}_0_log.out"

    def max_array_size(self) -> int | None:
        """The site's MaxArraySize (tasks per array), from `scontrol show config`; or None."""
        if self._max_array_size is None:
            value = None
            try:
                out = _query(["scontrol", "show", "config"], "scontrol", attempts=2)
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


# -- pure functions ---------------------------------------------------------------------


def worker_command(python: str, folder: Path) -> str:
    """The batch step's command: the worker replaces the shell (so it gets `B:` signals)."""
    folder = Path(folder).expanduser().absolute()
    marker = shlex.quote(str(folder / ABANDONED))
    return (
        f"if [ -e {marker} ]; then echo 'campaigns: submission abandoned; not running'; "
        f"exit 0; fi\n"
        f"exec {shlex.quote(python)} -u -m campaigns.worker {shlex.quote(str(folder))}"
    )


def sbatch_parameters(request: ArrayRequest) -> dict[str, Any]:
    """submitit's `update_parameters` arguments for one array (without map_count)."""
    res = request.resources
    params: dict[str, Any] = {
        "job_name": request.name,
        "comment": request.token,
        "time": res.time_minutes,
        "nodes": res.nodes,
        "ntasks_per_node": res.ntasks_per_node,
        "cpus_per_task": res.cpus_per_task,
        "setup": list(request.setup) or None,
        "array_parallelism": max(1, request.parallelism),
        "stderr_to_stdout": True,
        "use_srun": False,
        "wckey": None,
    }
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if res.memory_mb:
        params["mem"] = f"{res.memory_mb}M"  # not mem_gb: submitit would round it to GB/MB
    for key in ("partition", "qos", "account", "constraint"):
        value = getattr(res, key)
        if value:
            params[key] = value
    extra: dict[str, Any] = {"signal": SIGNAL, "no_requeue": True}
    for key, value in res.sbatch_options:
        name = key.lstrip("-").replace("-", "_")
        if name in RESERVED_OPTIONS:
            raise InputError(
                f"resources.sbatch_options.{key} cannot be set: campaigns sets "
                f"--{name.replace('_', '-')} itself to track the array."
            )
        flag = str(value).lower()
        if flag in ("true", "false"):
            if flag == "true":
                extra[name] = True
            continue
        extra[name] = value
    params["additional_parameters"] = extra
    return params


def parse_sacct(text: str) -> dict[str, dict[int, TaskStatus]]:
    """`JobID|State|ExitCode|Start|End|NodeList` rows -> array job id -> task index -> status.

    Handles `123_4` (one task), `123_[5-9%3]` / `123_[1,3,5-7]` (tasks still pending, or
    cancelled while pending, share one row) and plain `123` (task 0).
    """
    rows = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        match = _JOB_ID.match(fields[0]) if len(fields) >= 6 else None
        if match:  # else a step or a heterogeneous job: not ours
            rows.append((match, fields))
    out: dict[str, dict[int, TaskStatus]] = {}
    # Combined rows first: a task's own row, where there is one, is the newer word.
    for match, fields in sorted(rows, key=lambda row: row[0]["ranges"] is None):
        status = TaskStatus(
            from_slurm(fields[1]),
            _exit_code(fields[2]),
            _time(fields[3]),
            _time(fields[4]),
            _node(fields[5]),
        )
        tasks = out.setdefault(match["job"], {})
        for index in _indices(match):
            tasks[index] = status
    return out


def parse_squeue(text: str) -> dict[str, dict[int, TaskStatus]]:
    """`%i|%T|%N|%S` rows (squeue -r) -> array job id -> task index -> status."""
    out: dict[str, dict[int, TaskStatus]] = {}
    for line in text.splitlines():
        fields = [*line.strip().split("|"), "", ""]
        match = _JOB_ID.match(fields[0])
        if not match or not fields[1]:
            continue
        state = from_slurm(fields[1])
        started = _time(fields[3]) if state == TaskState.RUNNING else None  # else: a forecast
        status = TaskStatus(state, started_at=started, node=_node(fields[2]))
        tasks = out.setdefault(match["job"], {})
        for index in _indices(match):
            tasks[index] = status
    return out


def expand_ranges(text: str) -> list[int]:
    """`1,3,5-7%2` -> [1, 3, 5, 6, 7] (the `%N` throttle dropped)."""
    indices: list[int] = []
    for part in text.split("%")[0].split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        indices.extend(range(int(low), int(high or low) + 1))
    return indices


def _indices(match: re.Match[str]) -> list[int]:
    if match["ranges"] is not None:
        return expand_ranges(match["ranges"])
    return [int(match["index"] or 0)]


def _exit_code(text: str) -> int | None:
    """sacct's `code:signal`: the code, or 128+signal for a task a signal ended."""
    code, _, sig = text.partition(":")
    try:
        number, signum = int(code), int(sig or 0)
    except ValueError:
        return None
    return 128 + signum if signum else number


def _time(text: str) -> datetime | None:
    """sacct prints local time without a zone; return aware UTC (None for Unknown/None)."""
    try:
        return datetime.fromisoformat(text.strip()).astimezone(timezone.utc)
    except ValueError:
        return None


def _node(text: str) -> str | None:
    text = text.strip()
    return None if not text or text.startswith("None") or text == "(null)" else text


def _base_id(scheduler_id: str) -> str:
    return scheduler_id.split("_", 1)[0]


def _slurm_time(moment: datetime) -> str:
    """A moment as Slurm's local `YYYY-MM-DDTHH:MM:SS` (naive input is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone().strftime("%Y-%m-%dT%H:%M:%S")


# -- running Slurm commands -------------------------------------------------------------


def _environment() -> dict[str, str]:
    """Our environment minus what changes the commands' output formats."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SACCT_FORMAT", "SQUEUE_FORMAT", "SQUEUE_FORMAT2", "SQUEUE_SORT")
    }
    env["SLURM_TIME_FORMAT"] = "standard"
    return env


def _retrying(call: Callable[[], T], what: str, attempts: int | None = None) -> T:
    """Run `call`, retrying `_Transient` with exponential backoff (1-20 s), boundedly."""

    def give_up(state: RetryCallState) -> T:
        exc = state.outcome.exception() if state.outcome else None
        raise SchedulerError(
            f"{what} failed {state.attempt_number} times: {exc}. Slurm seems "
            "unreachable; check `sinfo` and try again later."
        ) from exc

    retrying = Retrying(
        stop=stop_after_attempt(attempts or ATTEMPTS),
        wait=wait_exponential(multiplier=1, min=1, max=20),
        retry=retry_if_exception_type(_Transient),
        retry_error_callback=give_up,
    )
    return retrying(call)


def _query(argv: list[str], what: str, attempts: int | None = None) -> str:
    """Run a read-only Slurm command (retried); its stdout. SchedulerError when it fails."""

    def once() -> str:
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=_environment(),
                timeout=COMMAND_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise SchedulerError(
                f"`{argv[0]}` is not on PATH: is this a Slurm machine? "
                "Use `--backend local` to run here."
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise _Transient(
                f"`{shlex.join(argv[:3])} ...` took over {COMMAND_TIMEOUT_S:.0f} s"
            ) from exc
        message = _one_line(proc.stderr)
        if proc.returncode == 0:
            return proc.stdout
        if "invalid job id" in message.lower():
            return proc.stdout  # squeue/scancel on ids Slurm has forgotten: nothing to report
        text = f'`{argv[0]}` exited {proc.returncode}: "{message or _one_line(proc.stdout)}"'
        if PERMANENT_QUERY.search(message):
            raise SchedulerError(f"{text}. Fix the Slurm setup (sacct needs accounting).")
        raise _Transient(text)

    return _retrying(once, what, attempts)


def _sbatch(request: ArrayRequest, python: str, params: Mapping[str, Any], command: str) -> str:
    """Submit once through submitit; the array job id. Leaves no temporary file on failure."""
    executor = submitit.SlurmExecutor(folder=request.folder, python=python)
    executor.update_parameters(**params)
    executor.parameters["map_count"] = request.n_tasks  # submitit's array path, minus pickles
    before = set(Path(request.folder).glob(".submission_file_*.sh"))
    captured = io.StringIO()  # submitit also prints sbatch's stderr; it is in the error below
    try:
        with contextlib.redirect_stderr(captured):
            job = executor._submit_command(command)
    except (FailedJobError, FailedSubmissionError, OSError, subprocess.SubprocessError) as exc:
        for path in set(Path(request.folder).glob(".submission_file_*.sh")) - before:
            path.unlink(missing_ok=True)
        message = _one_line(str(exc) or captured.getvalue())
        if isinstance(exc, FileNotFoundError):
            raise SchedulerError(
                "`sbatch` is not on PATH: is this a Slurm machine? Use "
                "`--backend local` to run here."
            ) from exc
        if (
            TRANSIENT.search(message)
            or not isinstance(exc, FailedJobError)
            or "unknown reason" in message
        ):  # sbatch may have run: the retry looks first
            raise _Transient(f'sbatch said "{message}"') from exc
        raise SchedulerError(
            f"sbatch refused array {request.folder.name} ({request.n_tasks} tasks, "
            f'{request.resources.describe()}): "{message}". {_advice(message)} '
            "Its jobs stay pending; `submit --dry-run` prints the script."
        ) from exc
    # submitit keeps a `.submission_file_*.sh` symlink to `{id}_submission.sh`: one file is enough.
    for path in set(Path(request.folder).glob(".submission_file_*.sh")) - before:
        if path.is_symlink():
            path.unlink()
    return str(job.job_id)


def _one_line(text: str) -> str:
    """A command's (multi-line) message as one line, for an error message."""
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _advice(message: str) -> str:
    lower = message.lower()
    if "partition" in lower:
        return "Check resources.partition (or the machine file); `sinfo -s` lists partitions."
    if "account" in lower or "association" in lower:
        return "Check resources.account; `sacctmgr show assoc user=$USER` lists yours."
    if "qos" in lower:
        return "Check resources.qos; `sacctmgr show qos` lists them."
    if "array" in lower and "size" in lower:
        return "Lower execution.batch_size or set machine.max_array_size to the site's limit."
    if "time limit" in lower:
        return "Lower execution.timeout_hours below the partition's time limit."
    if "memory" in lower:
        return "Lower the memory request (resources.memory or memory_requirement)."
    return "Fix the request in the campaign or machine file and run `submit` again."
