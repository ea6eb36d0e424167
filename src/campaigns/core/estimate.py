"""What a campaign will cost and how long it will take. Pure.

Requested resources come from the time limits; once jobs have finished, the
measured runtimes (median, p90) replace the limits for the expected wall time.
The wall time assumes the scheduler runs as many tasks at once as the queue
cap and the array throttle allow; real queue waits come on top.

Node-hours are charged as the site does (`charge`): an exclusive QOS charges whole
nodes x hours x its charge factor; a shared QOS charges the larger of the CPU share and
the memory share of the node x hours x its charge factor. Hours on a node type with GPUs
are GPU node-hours, the rest CPU node-hours. A machine file that models no node types
and no QOS keeps the plain rule: whole nodes x hours.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from campaigns.core.planning import Limits, task_parallelism, task_resources
from campaigns.core.site import Site
from campaigns.core.spec import JobGroup, Resources


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
    node_hours: float  # charged: CPU and GPU node-hours together
    cpu_hours: float
    gpu_hours: float
    cpu_node_hours: float = 0.0  # charged on nodes without GPUs
    gpu_node_hours: float = 0.0  # charged on nodes with GPUs
    rule: str = ""  # how one task is charged, in words


@dataclass(frozen=True)
class Charge:
    """How the site charges one task: nodes charged per hour, on which kind of node."""

    nodes: float  # node-hours charged per hour of the task (charge factor included)
    gpu: bool  # GPU node-hours (a node type with GPUs, or GPUs asked for)
    rule: str


def charge(resources: Resources, site: Site) -> Charge:
    """The site's charging rule for a task asking for `resources`."""
    node, qos = site.node_type(resources.constraint), site.qos_of(resources.qos)
    gpu = node.is_gpu if node is not None else resources.gpus_per_node > 0
    if node is None and qos is None:
        return Charge(
            resources.nodes,
            gpu,
            f"whole nodes: {resources.nodes} x hours (the machine file models no node types "
            "or QOS)",
        )
    factor = qos.charge_factor if qos is not None else 1.0
    kind = f"{node.name} node" if node is not None else "node"
    if qos is not None and qos.shared and node is not None:
        cpus = resources.ntasks_per_node * resources.cpus_per_task
        shares = [cpus / node.cpus]
        words = [f"cpu {cpus}/{node.cpus}"]
        if resources.memory_mb is not None:
            shares.append(resources.memory_mb / node.memory_mb)
            words.append(f"memory {_gb(resources.memory_mb)}/{_gb(node.memory_mb)}")
        share = min(1.0, max(shares)) * resources.nodes
        return Charge(
            share * factor,
            gpu,
            f"{qos.name}: max({', '.join(words)}) of a {kind} x {float(factor)!r}",
        )
    name = qos.name if qos is not None else "no QOS"
    plural = "s" if resources.nodes > 1 else ""
    return Charge(
        resources.nodes * factor,
        gpu,
        f"{name}: {resources.nodes} whole {kind}{plural} x {float(factor)!r}",
    )


def _gb(mb: int) -> str:
    return f"{mb / 1024:g}G"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def estimate_group(
    group: JobGroup, n_jobs: int, limits: Limits, site: Site | None = None
) -> GroupEstimate:
    """Tasks, arrays, charged node-hours and requested CPU/GPU-hours of `n_jobs` jobs of one
    group."""
    n_tasks = math.ceil(n_jobs / limits.jobs_per_task)
    resources = task_resources(group.resources, limits.jobs_per_task)
    hours = resources.time_minutes / 60
    nodes = resources.nodes
    charged = charge(resources, site or Site())
    node_hours = n_tasks * hours * charged.nodes
    return GroupEstimate(
        group=group.index,
        description=resources.describe(),
        short=resources.short(),
        n_jobs=n_jobs,
        n_tasks=n_tasks,
        n_arrays=math.ceil(n_tasks / limits.tasks_per_array),
        task_hours=hours,
        node_hours=node_hours,
        cpu_hours=n_tasks * nodes * resources.ntasks_per_node * resources.cpus_per_task * hours,
        gpu_hours=n_tasks * nodes * resources.gpus_per_node * hours,
        cpu_node_hours=0.0 if charged.gpu else node_hours,
        gpu_node_hours=node_hours if charged.gpu else 0.0,
        rule=charged.rule,
    )


def concurrency(n_tasks: int, limits: Limits) -> int:
    """Tasks that can run at once: bounded by the queue cap, each array's throttle and the
    QOS's running-jobs limit."""
    arrays_in_queue = max(1, limits.max_queued_jobs // limits.tasks_per_array)
    running = limits.max_running_jobs or n_tasks
    slots = min(n_tasks, limits.max_queued_jobs, limits.array_parallelism * arrays_in_queue)
    return max(1, min(slots, running))


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
