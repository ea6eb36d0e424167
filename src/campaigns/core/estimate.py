"""What a campaign will cost and how long it will take. Pure.

Requested resources come from the time limits; once jobs have finished, the
measured runtimes (median, p90) replace the limits for the expected wall time.
The wall time assumes the scheduler runs as many tasks at once as the queue
cap and the array throttle allow; real queue waits come on top.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from campaigns.core.planning import Limits, task_parallelism, task_resources
from campaigns.core.spec import JobGroup


@dataclass(frozen=True)
class GroupEstimate:
    """The cost of one resource group."""

    group: int
    description: str
    short: str
    n_jobs: int
    n_tasks: int
    n_arrays: int
    task_hours: float  # requested time limit of one task
    node_hours: float
    cpu_hours: float
    gpu_hours: float


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def estimate_group(group: JobGroup, n_jobs: int, limits: Limits) -> GroupEstimate:
    """Tasks, arrays and requested node/CPU/GPU-hours of `n_jobs` jobs of one group."""
    n_tasks = math.ceil(n_jobs / limits.jobs_per_task)
    resources = task_resources(group.resources, limits.jobs_per_task)
    hours = resources.time_minutes / 60
    nodes = resources.nodes
    return GroupEstimate(
        group=group.index,
        description=resources.describe(),
        short=resources.short(),
        n_jobs=n_jobs,
        n_tasks=n_tasks,
        n_arrays=math.ceil(n_tasks / limits.tasks_per_array),
        task_hours=hours,
        node_hours=n_tasks * nodes * hours,
        cpu_hours=n_tasks * nodes * resources.ntasks_per_node * resources.cpus_per_task * hours,
        gpu_hours=n_tasks * nodes * resources.gpus_per_node * hours,
    )


def concurrency(n_tasks: int, limits: Limits) -> int:
    """Tasks that can run at once: bounded by the queue cap and each array's throttle."""
    arrays_in_queue = max(1, limits.max_queued_jobs // limits.tasks_per_array)
    return max(1, min(n_tasks, limits.max_queued_jobs, limits.array_parallelism * arrays_in_queue))


def expected_wall_hours(
    groups: Sequence[GroupEstimate],
    group_of: Mapping[int, JobGroup],
    limits: Limits,
    runtimes: Sequence[float],
) -> tuple[float, str]:
    """Expected wall time in hours and the basis it rests on."""
    total_tasks = sum(g.n_tasks for g in groups)
    if total_tasks == 0:
        return 0.0, "nothing left to run"
    slots = concurrency(total_tasks, limits)
    if runtimes:
        median = statistics.median(runtimes)
        # A packed task runs its jobs in waves of `task_parallelism`.
        task_hours = {
            g.group: math.ceil(
                limits.jobs_per_task
                / task_parallelism(group_of[g.group].resources, limits.jobs_per_task)
            )
            * median
            / 3600
            for g in groups
        }
        basis = (
            f"measured runtimes of {len(runtimes)} finished jobs (median {median:.1f} s, "
            f"p90 {percentile(runtimes, 0.9):.1f} s), {slots} tasks at once"
        )
    else:
        task_hours = {g.group: g.task_hours for g in groups}
        basis = f"requested time limits (no job has finished yet), {slots} tasks at once"
    work = sum(g.n_tasks * task_hours[g.group] for g in groups)
    # Work spread over the slots, but never shorter than the longest single task.
    return max(max(task_hours.values()), work / slots), basis
