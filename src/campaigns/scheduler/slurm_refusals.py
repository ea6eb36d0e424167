"""Why sbatch said no, read from its message (pure): a site *limit* that passes later, or a
*configuration* the site will never accept, with the directive to change and how.

Messages as Slurm 22.05 prints them, measured on the project's Perlmutter-shaped test
cluster (QOS with `Flags=DenyOnLimit`, `AccountingStorageEnforce=associations,limits,qos`,
`EnforcePartLimits=ALL`); sbatch's stderr, joined into one line:

- over a QOS submit limit: ``sbatch: error: QOSMaxSubmitJobPerUserLimit; sbatch: error: Batch
  job submission failed: Job violates accounting/QOS policy (job submit limit, user's size
  and/or time limits)`` -- a limit: the same array passes once the user's queue drains;
- over the QOS walltime: ``QOSMaxWallDurationPerJobLimit`` then the same "violates" line --
  a configuration: it never passes;
- ``Invalid job array specification`` (an index beyond MaxArraySize), ``Invalid qos
  specification``, ``Invalid account or account/partition combination specified``,
  ``Invalid feature specification``, ``Invalid generic resource (gres) specification``,
  ``Requested node configuration is not available`` (after ``Memory specification can not be
  satisfied`` when --mem is too large), ``More processors requested than permitted``,
  ``Node count specification invalid``, ``Requested time limit is invalid (missing or
  exceeds some limit)``.

The specific reason (the line naming the limit) is matched before the generic "violates
accounting/QOS policy" line, which alone is read as a limit: a site without DenyOnLimit
prints only that line for a full queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from campaigns.core.spec import Resources

LIMIT, CONFIG = "limit", "configuration"


@dataclass(frozen=True)
class Refusal:
    """sbatch's refusal, classified."""

    kind: str  # LIMIT or CONFIG
    reason: str  # what Slurm said, shortest form (e.g. "QOSMaxSubmitJobPerUserLimit")
    directive: str | None = None  # the sbatch option at fault, e.g. "--qos"


# sbatch's phrases (any case) -> the directive at fault; the first match wins.
_CONFIG = [
    (r"requested time limit is invalid", "--time"),
    (r"invalid qos specification", "--qos"),
    (r"invalid account|account/partition combination", "--account"),
    (r"invalid partition", "--partition"),
    (r"invalid feature specification", "--constraint"),
    (r"invalid generic resource|gres specification", "--gpus"),
    (r"memory specification can not be satisfied", "--mem"),
    (r"more processors requested than permitted", "--cpus-per-task"),
    (r"node count specification invalid", "--nodes"),
    (r"requested node configuration is not available", "--constraint"),
]
#: Parts of a limit's name (QOSMaxWallDurationPerJobLimit, ...) -> the directive.
_REASON_PARTS = [
    ("Wall", "--time"),
    ("GRES", "--gpus"),
    ("Mem", "--mem"),
    ("Cpu", "--cpus-per-task"),
    ("Node", "--nodes"),
]
_LIMIT = re.compile(
    r"invalid job array specification|job violates accounting/qos policy|"
    r"batch job submission failed:.*\blimit",
    re.IGNORECASE,
)
#: The line that names the limit, printed before "Job violates accounting/QOS policy".
_REASON = re.compile(r"\b(?:QOS|Assoc)\w+Limit\b")
#: The generic line: its "(job submit limit, user's size and/or time limits)" names no culprit.
_GENERIC = re.compile(r"job violates accounting/qos policy[^;]*", re.IGNORECASE)


def classify(message: str) -> Refusal | None:
    """A refusal of sbatch as LIMIT or CONFIG (with the directive), or None: not recognised."""
    specific = _REASON.search(message)
    if specific:
        reason = specific[0]
        # Submit limits and group-wide (Grp) limits pass once jobs leave the queue; a
        # per-job maximum or minimum (MaxWall, MaxNodes per job, ...) never does.
        if "Submit" in reason or "Grp" in reason:
            return Refusal(LIMIT, reason)
        parts = (d for part, d in _REASON_PARTS if part.lower() in reason.lower())
        return Refusal(CONFIG, reason, next(parts, "--qos"))
    rest = _GENERIC.sub("", message)
    directive = _directive(rest)
    if directive is not None:
        return Refusal(CONFIG, _last_error(message), directive)
    if _LIMIT.search(message):
        array = "array" in message.lower()
        return Refusal(LIMIT, _last_error(message), "--array" if array else None)
    return None


def _directive(text: str) -> str | None:
    for pattern, directive in _CONFIG:
        if re.search(pattern, text, re.IGNORECASE):
            return directive
    return None


def _last_error(message: str) -> str:
    """The last `sbatch: error: ...` part, without the prefix and "Batch job submission failed"."""
    parts = [p.strip() for p in message.split(";") if p.strip()]
    text = parts[-1] if parts else message.strip()
    for prefix in ("sbatch: error:", "Batch job submission failed:"):
        text = text.removeprefix(prefix).strip()
    return text


def requested(directive: str | None, res: Resources) -> str:
    """The option as it was sent, e.g. `--qos=debug` (or the directive alone when unset)."""
    values = {
        "--time": f"{res.time_minutes}",
        "--qos": res.qos,
        "--account": res.account,
        "--partition": res.partition,
        "--constraint": res.constraint,
        "--gpus": f"{res.gpus_per_node} per node" if res.gpus_per_node else None,
        "--mem": f"{res.memory_mb}M" if res.memory_mb else None,
        "--cpus-per-task": f"{res.cpus_per_task}",
        "--nodes": f"{res.nodes}",
    }
    value = values.get(directive or "")
    if directive == "--gpus" and value:
        return f"--gpus-per-node={res.gpus_per_node}"
    return f"{directive}={value}" if directive and value else (directive or "the request")


#: What to change in the campaign (or machine) file, per directive.
FIXES = {
    "--time": "lower execution.timeout_hours (and any override's) below the QOS's or "
    "partition's limit, or pick a QOS that allows longer jobs (resources.qos); "
    "`sacctmgr show qos format=name,maxwall` lists them",
    "--qos": "set resources.qos (or the job type's qos in the machine file) to a QOS your "
    "account may use; `sacctmgr show assoc user=$USER format=account,qos%40` lists them",
    "--account": "set resources.account to one of your projects (GPU jobs at NERSC need the "
    "mXXXX_g account); `sacctmgr show assoc user=$USER format=account` lists them",
    "--partition": "set resources.partition to an existing partition; `sinfo -s` lists them",
    "--constraint": "ask for what one node of that constraint has (resources.job_type, "
    "memory_requirement, cpus and gpus per node) or change the constraint; "
    "`sinfo -o '%f %c %m %G'` lists the node types",
    "--gpus": "ask for GPUs only with a GPU constraint (a gpu job type), at most what one node has",
    "--mem": "lower the memory request (resources.memory or memory_requirement) to what one "
    "node of the constraint has",
    "--cpus-per-task": "lower cpus_per_task x ntasks_per_node to the CPUs of one node",
    "--nodes": "lower resources.nodes to the QOS's node limit",
}


def config_message(refusal: Refusal, res: Resources, what: str) -> str:
    """One paragraph: what sbatch refused, why, and the fix."""
    fix = FIXES.get(refusal.directive or "", "fix the request in the campaign or machine file")
    return (
        f"sbatch refused {requested(refusal.directive, res)} for {what}: "
        f'"{refusal.reason}". This is the site refusing the request itself, not a full queue: '
        f"no retry can pass. To fix: {fix}; then run `submit` again (`submit --dry-run` "
        "prints the script). No job was marked failed; they stay pending."
    )


def limit_message(refusal: Refusal, what: str) -> str:
    """One line: which limit held the submission back (and, for the array size, the cure
    should it persist)."""
    text = f'sbatch refused {what} for a site limit: "{refusal.reason}"'
    if refusal.directive == "--array":
        text += (
            " (if this repeats, the site's MaxArraySize is below the array: lower or remove "
            "machine.max_array_size, and campaigns reads it from `scontrol show config`)"
        )
    return text
