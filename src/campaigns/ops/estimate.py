"""`estimate`: jobs, arrays, charged node-hours, CPU/GPU-hours and expected wall time.

Submits nothing. Node-hours are charged by the site's rules (`core/estimate.charge`).

Before `init` (or with nothing run yet) it uses the time limits; once jobs have
finished, their measured runtimes give the expected wall time.
"""

from __future__ import annotations

import dataclasses

from campaigns.core import estimate as costs
from campaigns.core.states import JobState
from campaigns.ops.context import Context
from campaigns.ops.reports import EstimateReport
from campaigns.ops.status import standing


def estimate(ctx: Context) -> EstimateReport:
    """The cost of what is left to run (everything, before `init`)."""
    expansion = ctx.expansion
    groups = {g.index: g for g in expansion.groups}
    per_group = {g.index: 0 for g in expansion.groups}
    runtimes: list[float] = []
    if ctx.initialised():
        store, now = ctx.store, ctx.clock()
        max_retries = {g.index: g.max_retries for g in expansion.groups}
        open_states = [JobState.PENDING, JobState.QUEUED, JobState.RUNNING, JobState.FAILED]
        rows = store.jobs(
            columns=["group_id", "state", "attempts_used", "next_retry_at"],
            states=[s.value for s in open_states],
        )
        for row in rows:
            failed = row["state"] == JobState.FAILED.value
            if not failed or standing(row, max_retries, now) != "exhausted":
                per_group[row["group_id"]] = per_group.get(row["group_id"], 0) + 1
        runtimes = store.runtimes()
    else:
        for job in expansion.jobs:
            per_group[job.group] += 1
    limits = ctx.limits()
    site = ctx.spec.machine.site
    estimates = [
        costs.estimate_group(groups[g], n, limits, site) for g, n in per_group.items() if n
    ]
    wall, basis = costs.expected_wall_hours(estimates, groups, limits, runtimes)
    return EstimateReport(
        n_jobs=len(expansion.jobs),
        remaining_jobs=sum(per_group.values()),
        n_arrays=sum(e.n_arrays for e in estimates),
        n_tasks=sum(e.n_tasks for e in estimates),
        groups=[dataclasses.asdict(e) for e in estimates],
        node_hours=sum(e.node_hours for e in estimates),
        cpu_node_hours=sum(e.cpu_node_hours for e in estimates),
        gpu_node_hours=sum(e.gpu_node_hours for e in estimates),
        cpu_hours=sum(e.cpu_hours for e in estimates),
        gpu_hours=sum(e.gpu_hours for e in estimates),
        expected_wall_hours=wall,
        basis=basis,
    )
