"""`validate`: load, merge, validate and expand; count jobs, groups, arrays. Changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from campaigns.core.expand import Expansion
from campaigns.core.planning import ArrayPlan, plan_arrays
from campaigns.core.spec import JobGroup
from campaigns.ops.context import Context
from campaigns.ops.reports import GroupSummary, ValidationReport


def validate(ctx: Context) -> ValidationReport:
    """What the campaign would submit: jobs, resource groups, arrays and tasks."""
    ctx = ctx.as_written()  # the file as it is now, even after `init` recorded another one
    spec, expansion = ctx.spec, ctx.expansion
    limits = ctx.limits()
    pending = [(j.index + 1, j.group) for j in expansion.jobs]
    groups = {g.index: g for g in expansion.groups}
    plan = plan_arrays(pending, groups, limits, capacity=len(pending))
    return ValidationReport(
        name=spec.name,
        version=spec.version,
        config=str(ctx.config_path),
        campaign_dir=str(
            Path(spec.base_path) / spec.slug if ctx.base_path_error else ctx.layout.root
        ),
        machine=spec.machine.name,
        backend=spec.execution.backend or spec.machine.backend,
        n_jobs=len(expansion.jobs),
        parameters={a.label: len(a.rows) for a in spec.axes},
        groups=[_group_summary(g, plan.arrays, expansion) for g in expansion.groups],
        n_arrays=len(plan.arrays),
        n_tasks=sum(len(a.tasks) for a in plan.arrays),
        max_array_size=limits.max_array_size,
        config_hash=spec.config_hash,
        warnings=site_warnings(ctx),
        max_queued_jobs=limits.max_queued_jobs,
    )


def site_warnings(ctx: Context) -> list[str]:
    """What the site checks found worth a word but not an error: a lowered queue cap, a
    placeholder or malformed account (which `submit` to Slurm refuses)."""
    notes = list(ctx.site.notes)
    if ctx.base_path_error is not None:
        notes.append(f"{ctx.base_path_error} `init` refuses until it is set.")
    if ctx.site.account_error is not None:
        notes.append(str(ctx.site.account_error))
    return notes


def _group_summary(
    group: JobGroup, arrays: Sequence[ArrayPlan], expansion: Expansion
) -> GroupSummary:
    mine = [a for a in arrays if a.group == group.index]
    return GroupSummary(
        group=group.index,
        n_jobs=sum(1 for j in expansion.jobs if j.group == group.index),
        resources=group.resources.as_dict(),
        description=group.resources.describe(),
        max_retries=group.max_retries,
        n_arrays=len(mine),
        n_tasks=sum(len(a.tasks) for a in mine),
    )
