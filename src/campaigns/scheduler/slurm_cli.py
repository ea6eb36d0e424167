"""Slurm's command-line tools, run politely: sbatch (through submitit), sacct, squeue,
scancel, scontrol. Transient failures (a busy controller, a lagging slurmdbd) are retried
with exponential backoff through tenacity; what no retry fixes fails at once.

Private submitit API used here (pinned by `submitit>=1.5.1,<1.6`; the golden
test `tests/fixtures/sbatch_golden.sh` fails first if it changes):
`submitit.slurm.slurm._make_sbatch_string`, `SlurmExecutor._submit_command`,
`SlurmExecutor._make_submission_command`, `executor.parameters["map_count"]`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping
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

from campaigns.errors import SchedulerError, SiteConfigError, SiteLimitError
from campaigns.scheduler.base import ArrayRequest
from campaigns.scheduler.slurm_refusals import LIMIT, classify, config_message, limit_message
from campaigns.scheduler.slurm_text import advice, one_line

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

T = TypeVar("T")


class Transient(Exception):
    """A failure worth retrying (internal: becomes SchedulerError when retries run out)."""


def sbatch_script(request: ArrayRequest, params: Mapping[str, Any], command: str) -> str:
    """The sbatch script submitit writes for one array (pure: no Slurm needed)."""
    return str(
        submitit_slurm._make_sbatch_string(
            command=command,
            folder=Path(request.folder).expanduser().absolute(),
            map_count=request.n_tasks,
            **params,
        )
    )


#: Variables that change what Slurm's commands do or show, whatever they are told:
#: `SBATCH_*` override the script's `#SBATCH` lines (SBATCH_REQUEUE, SBATCH_TIMELIMIT,
#: SBATCH_JOB_NAME, ...), `SQUEUE_*`/`SACCT_*`/`SCANCEL_*`/`SCONTROL_*` change formats,
#: filters and prompts, `SLURM_CLUSTERS` sends everything to another cluster.
OVERRIDING_PREFIXES = ("SBATCH_", "SQUEUE_", "SACCT_", "SCANCEL_", "SCONTROL_")
OVERRIDING_NAMES = frozenset({"SLURM_CLUSTERS"})


def overriding(name: str) -> bool:
    """True for a variable of the user's environment that Slurm's commands must not see."""
    return name.startswith(OVERRIDING_PREFIXES) or name in OVERRIDING_NAMES


def environment() -> dict[str, str]:
    """Our environment minus what overrides the commands' options or output formats."""
    env = {k: v for k, v in os.environ.items() if not overriding(k)}
    env["SLURM_TIME_FORMAT"] = "standard"
    return env


class _Executor(submitit.SlurmExecutor):
    """submitit's executor, its sbatch run without the variables `overriding` names
    (submitit runs sbatch in this process's own environment)."""

    def _make_submission_command(self, submission_file_path: Path) -> list[str]:
        unset = [arg for name in os.environ if overriding(name) for arg in ("-u", name)]
        command: list[str] = super()._make_submission_command(submission_file_path)
        return ["env", *unset, *command] if unset else command


def retrying(call: Callable[[], T], what: str, attempts: int | None = None) -> T:
    """Run `call`, retrying `Transient` with exponential backoff (1-20 s), boundedly."""

    def give_up(state: RetryCallState) -> T:
        exc = state.outcome.exception() if state.outcome else None
        raise SchedulerError(
            f"{what} failed {state.attempt_number} times: {exc}. Slurm seems "
            "unreachable; check `sinfo` and try again later."
        ) from exc

    retrying = Retrying(
        stop=stop_after_attempt(attempts or ATTEMPTS),
        wait=wait_exponential(multiplier=1, min=1, max=20),
        retry=retry_if_exception_type(Transient),
        retry_error_callback=give_up,
    )
    return retrying(call)


def query(argv: list[str], what: str, attempts: int | None = None) -> str:
    """Run a read-only Slurm command (retried); its stdout. SchedulerError when it fails."""

    def once() -> str:
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=environment(),
                timeout=COMMAND_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise SchedulerError(
                f"`{argv[0]}` is not on PATH: is this a Slurm machine? "
                "Use `--backend local` to run here."
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise Transient(
                f"`{shlex.join(argv[:3])} ...` took over {COMMAND_TIMEOUT_S:.0f} s"
            ) from exc
        message = one_line(proc.stderr)
        if proc.returncode == 0:
            return proc.stdout
        if "invalid job id" in message.lower():
            return proc.stdout  # squeue/scancel on ids Slurm has forgotten: nothing to report
        text = f'`{argv[0]}` exited {proc.returncode}: "{message or one_line(proc.stdout)}"'
        if PERMANENT_QUERY.search(message):
            raise SchedulerError(f"{text}. Fix the Slurm setup (sacct needs accounting).")
        raise Transient(text)

    return retrying(once, what, attempts)


def sbatch(request: ArrayRequest, python: str, params: Mapping[str, Any], command: str) -> str:
    """Submit once through submitit; the array job id. Leaves no temporary file on failure."""
    executor = _Executor(folder=request.folder, python=python)
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
        message = one_line(str(exc) or captured.getvalue())
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
            raise Transient(f'sbatch said "{message}"') from exc
        what = f"array {request.folder.name} ({request.n_tasks} tasks)"
        refusal = classify(message)
        if refusal is not None and refusal.kind == LIMIT:
            raise SiteLimitError(limit_message(refusal, what)) from exc
        if refusal is not None:
            raise SiteConfigError(config_message(refusal, request.resources, what)) from exc
        raise SchedulerError(
            f"sbatch refused {what}, {request.resources.describe()}: "
            f'"{message}". {advice(message)} '
            "Its jobs stay pending; `submit --dry-run` prints the script."
        ) from exc
    # submitit keeps a `.submission_file_*.sh` symlink to `{id}_submission.sh`: one file is enough.
    for path in set(Path(request.folder).glob(".submission_file_*.sh")) - before:
        if path.is_symlink():
            path.unlink()
    return str(job.job_id)
