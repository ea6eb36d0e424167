"""Cut pending jobs into arrays within site limits. Pure.

An array holds jobs of one group only; a task holds `jobs_per_task` jobs; an
array holds at most min(batch_size, MaxArraySize) tasks (Slurm indices run
0..MaxArraySize-1); the campaign never has more than `capacity` tasks queued.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from campaigns.core.spec import JobGroup, Resources


@dataclass(frozen=True)
class Limits:
    """The settings that shape arrays and concurrency, gathered once per command."""

    batch_size: int
    max_array_size: int | None  # the site's MaxArraySize (machine file, else the scheduler)
    jobs_per_task: int
    array_parallelism: int
    max_queued_jobs: int
    max_running_jobs: int | None = None  # the QOS's running-jobs limit per user, if any

    @property
    def tasks_per_array(self) -> int:
        """Tasks in one array: the batch size within the site's MaxArraySize."""
        if self.max_array_size is None:
            return max(1, self.batch_size)
        return max(1, min(self.batch_size, self.max_array_size))


@dataclass(frozen=True)
class ArrayPlan:
    """One array to submit: its group and, per task, the job ids it runs."""

    group: int
    tasks: tuple[tuple[int, ...], ...]
    resources: Resources  # per task (time scaled for packed tasks)
    parallel: int  # jobs of one task run at once

    @property
    def n_jobs(self) -> int:
        """Jobs in the array."""
        return sum(len(t) for t in self.tasks)


@dataclass(frozen=True)
class Plan:
    """The arrays to submit now and what has to wait."""

    arrays: tuple[ArrayPlan, ...]
    waiting: int  # pending jobs left for later (queue cap or --limit)
    capacity: int  # tasks that could still be queued before this plan


def task_parallelism(resources: Resources, jobs_per_task: int) -> int:
    """Jobs of a packed task that run at once: one per CPU for single-task jobs, else one."""
    if resources.ntasks > 1:
        return 1
    return max(1, min(jobs_per_task, resources.cpus_per_task))


def task_resources(resources: Resources, jobs_per_task: int) -> Resources:
    """Per-task request of a packed task: its jobs run `task_parallelism` at a time, in
    waves, so the time limit scales with the waves and the memory with the jobs at once."""
    parallel = task_parallelism(resources, jobs_per_task)
    waves = math.ceil(jobs_per_task / parallel)
    memory = resources.memory_mb * parallel if resources.memory_mb is not None else None
    return replace(resources, time_minutes=resources.time_minutes * waves, memory_mb=memory)


def plan_arrays(
    pending: Sequence[tuple[int, int]],
    groups: Mapping[int, JobGroup],
    limits: Limits,
    *,
    capacity: int,
    limit: int | None = None,
) -> Plan:
    """Arrays for `pending` (job id, group id) pairs, in job order within each group.

    The planned jobs are always the first ones of `pending` (at most `limit` of them),
    as many as fit in `capacity` tasks: jobs run in the order the campaign lists them,
    whichever group they are in.
    """
    per_array = limits.tasks_per_array
    per_task = max(1, limits.jobs_per_task)
    budget_jobs = len(pending) if limit is None else max(0, min(limit, len(pending)))
    tasks_left = max(0, capacity)
    by_group: dict[int, list[list[int]]] = {}  # group -> its tasks, in order of first job
    planned = 0
    for job_id, group in pending[:budget_jobs]:
        tasks = by_group.get(group)
        if tasks is None or len(tasks[-1]) >= per_task:
            if tasks_left == 0:
                break
            tasks = by_group.setdefault(group, [])
            tasks.append([])
            tasks_left -= 1
        tasks[-1].append(job_id)
        planned += 1
    arrays: list[ArrayPlan] = []
    for group, tasks in by_group.items():
        resources = groups[group].resources
        for start in range(0, len(tasks), per_array):
            chunk = tuple(tuple(task) for task in tasks[start : start + per_array])
            arrays.append(
                ArrayPlan(
                    group,
                    chunk,
                    task_resources(resources, per_task),
                    task_parallelism(resources, per_task),
                )
            )
    return Plan(tuple(arrays), waiting=len(pending) - planned, capacity=capacity)
