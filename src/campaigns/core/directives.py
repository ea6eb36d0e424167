"""The sbatch directives campaigns itself depends on: no campaign may set them. Pure.

`resources.sbatch_options` passes extra `#SBATCH` lines through as written. The lines
campaigns writes itself are not extra: the token in the job name and comment finds an
array again after a crash, the array spec and throttle come from the plan, the log path
is where status and triage read, `--no-requeue` and the USR2 notice before the time
limit keep one attempt one run, and time, memory and the node request are what the
site checks, the estimate and the memory escalation reason about. A second line for any
of them would win silently (sbatch takes the last), so `validate` refuses them.

sbatch also accepts any unambiguous start of a long option (`--req` is `--requeue`), so
the start of a reserved name is refused too, except where it is an option of its own.
"""

from __future__ import annotations

#: Each reserved option (as sbatch spells it) and why, or which key sets it instead.
RESERVED: dict[str, str] = {
    "array": "campaigns plans the arrays (execution.batch_size, execution.array_parallelism)",
    "job-name": "it carries the submission's token, by which campaigns finds its arrays",
    "comment": "it carries the submission's token, by which campaigns finds its arrays",
    "output": "the task's log is where status and the failure reports read",
    "error": "the task's log is where status and the failure reports read",
    "open-mode": "the task's log is where status and the failure reports read",
    "parsable": "campaigns reads sbatch's answer itself",
    "wrap": "the batch script is campaigns' worker",
    "test-only": "nothing would be submitted",
    "wait": "sbatch would block until the whole array ends",
    "requeue": (
        "campaigns retries failed jobs itself (execution.max_retries), and a task Slurm "
        "requeued would run again beside its retry"
    ),
    "no-requeue": "campaigns sets it on every array (it retries failed jobs itself)",
    "signal": "the worker's notice 90 s before the time limit depends on it",
    "time": "set execution.timeout_hours instead",
    "mem": "set resources.memory or resources.memory_requirement instead",
    "nodes": "set resources.nodes instead",
    "ntasks-per-node": "set resources.ntasks_per_node instead",
    "cpus-per-task": "set resources.cpus_per_task instead",
    "gpus-per-node": "set resources.gpus_per_node instead",
    "partition": "set resources.partition instead",
    "qos": "set resources.qos instead",
    "account": "set resources.account instead",
    "constraint": "set resources.constraint instead",
}
#: Options of their own that are also the start of a reserved name (an exact match wins).
DISTINCT = frozenset({"gpus", "ntasks"})


def option_name(key: str) -> str:
    """A `sbatch_options` key as sbatch spells the option: `no_requeue` -> `no-requeue`."""
    return str(key).strip().lstrip("-").replace("_", "-").lower()


def reserved(key: str) -> tuple[str, str] | None:
    """(the reserved option, why) when `key` would set one; None when campaigns lets it pass."""
    name = option_name(key)
    if name in RESERVED:
        return name, RESERVED[name]
    if not name or name in DISTINCT:
        return None
    for option, why in RESERVED.items():
        if option.startswith(name):
            return option, why
    return None
