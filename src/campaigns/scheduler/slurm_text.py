"""Slurm as text, both ways (pure): the batch step's command and sbatch options we send,
and the sacct/squeue rows we read back.

sacct and squeue are always asked for explicit fields (`-o`, `--parsable2`) with
`SLURM_TIME_FORMAT=standard`, so a user's `SACCT_FORMAT` never breaks parsing.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from campaigns.core.directives import reserved
from campaigns.core.states import TaskState, from_slurm
from campaigns.errors import InputError
from campaigns.scheduler.base import ArrayRequest, TaskStatus

#: Sent to the batch shell (the worker) 90 s before the time limit: a notice only.
SIGNAL = "B:USR2@90"
#: Marker `find` leaves in an array folder it gives up on: a late-arriving array then does nothing.
ABANDONED = "abandoned"
#: sacct fields, in this order, for `poll`.
SACCT_FIELDS = "JobID,State,ExitCode,Start,End,NodeList"
JOB_ID = re.compile(r"^(?P<job>\d+)(?:_(?P<index>\d+|\[(?P<ranges>[^\]]*)\]))?$")


def worker_command(python: str, folder: Path) -> str:
    """The batch step's command: the worker replaces the shell (so it gets `B:` signals)."""
    folder = Path(folder).expanduser().absolute()
    marker = shlex.quote(str(folder / ABANDONED))
    return (
        f"if [ -e {marker} ]; then echo 'campaigns: submission abandoned; not running'; "
        f"exit 0; fi\n"
        f"exec {shlex.quote(python)} -u -m campaigns.node.worker {shlex.quote(str(folder))} "
        '"$SLURM_ARRAY_TASK_ID" "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"'
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
        "setup": _setup(request) or None,
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
        found = reserved(key)  # `validate` refuses these: a guard for a spec made otherwise
        if found is not None:
            raise InputError(
                f"resources.sbatch_options.{key} cannot be set: campaigns sets "
                f"--{found[0]} itself ({found[1]})."
            )
        flag = str(value).lower()
        if flag in ("true", "false"):
            if flag == "true":
                extra[name] = True
            continue
        extra[name] = value
    params["additional_parameters"] = extra
    return params


def _setup(request: ArrayRequest) -> list[str]:
    """The machine's setup lines; for a multi-task job first `SRUN_CPUS_PER_TASK`: since Slurm
    22.05 srun does not inherit --cpus-per-task, and a user's command may call srun itself."""
    res = request.resources
    lines = list(request.setup)
    if res.ntasks > 1:
        lines.insert(0, f"export SRUN_CPUS_PER_TASK={res.cpus_per_task}")
    return lines


def parse_sacct(text: str) -> dict[str, dict[int, TaskStatus]]:
    """`JobID|State|ExitCode|Start|End|NodeList` rows -> array job id -> task index -> status.

    Handles `123_4` (one task), `123_[5-9%3]` / `123_[1,3,5-7]` (tasks still pending, or
    cancelled while pending, share one row) and plain `123` (task 0).
    """
    rows = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        match = JOB_ID.match(fields[0]) if len(fields) >= 6 else None
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
        match = JOB_ID.match(fields[0])
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


def base_id(scheduler_id: str) -> str:
    return scheduler_id.split("_", 1)[0]


def slurm_time(moment: datetime) -> str:
    """A moment as Slurm's local `YYYY-MM-DDTHH:MM:SS` (naive input is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone().strftime("%Y-%m-%dT%H:%M:%S")


def one_line(text: str) -> str:
    """A command's (multi-line) message as one line, for an error message."""
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def advice(message: str) -> str:
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
