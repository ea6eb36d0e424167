"""`submit`: plan pending jobs into arrays and hand them to a backend, crash-safely.

For each array: record the intent (a submission row with a unique token, attempt rows,
jobs `queued`) in one transaction, write the array folder (`array.json`,
`tasks.jsonl` with every job's rendered, shell-quoted command), submit with the token in
the scheduler's job name, then record the scheduler id. A crash anywhere leaves either
nothing or an intent that `reconcile.recover_intents` settles by the token.

A refusal is never a job failure. When the scheduler refuses an array for a site limit
(`SiteLimitError`: the user's queue is full), its intent is abandoned (jobs back to
pending, the attempt unspent), submission stops for this step and is held (`holds`): the
next `monitor --submit` cycle after the back-off tries again. A refusal of the request
itself (`SiteConfigError`: a QOS, account, constraint or time the site rejects) abandons
the intent the same way and stops with exit 1 and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from campaigns.core.expand import CommandTemplate
from campaigns.core.launch import launcher_command
from campaigns.core.planning import ArrayPlan, plan_arrays
from campaigns.core.policy import scaled
from campaigns.core.site import Site
from campaigns.core.spec import JobGroup, Resources
from campaigns.core.states import JobState
from campaigns.errors import (
    SchedulerError,
    SiteConfigError,
    SiteLimitError,
    SubmissionUnknownError,
)
from campaigns.node.files import write_atomic
from campaigns.ops import holds
from campaigns.ops.breaker import refuse_if_open
from campaigns.ops.context import Context
from campaigns.ops.reports import ArraySummary, SubmitReport
from campaigns.scheduler.base import ArrayRequest, Scheduler


def submit(
    ctx: Context,
    name: str,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    recovered: Sequence[str] = (),
    only_keys: Sequence[str] | None = None,
    patient: bool = True,
) -> SubmitReport:
    """Plan and submit pending jobs (or only `only_keys`; a dry run also takes failed ones).

    The caller holds the campaign lock (a dry run needs none). While the circuit breaker
    is open nothing is submitted (CircuitOpenError), except in a dry run. While a site
    limit holds submission (`holds`), a `patient` caller (`monitor --submit`, the
    autopilot) submits nothing; the user's own `submit` tries at once."""
    if not dry_run:
        refuse_if_open(ctx)
        refuse_account(ctx, name)
    return _Submission(ctx, name).run(limit, dry_run, list(recovered), only_keys, patient)


def refuse_account(ctx: Context, name: str) -> None:
    """A placeholder or malformed account is only a warning in `validate`; Slurm would refuse
    every array, so submitting there stops first (exit 2). The local backend charges nobody."""
    if name == "slurm" and ctx.site.account_error is not None:
        raise ctx.site.account_error


class _Submission:
    """One submission step to one backend."""

    def __init__(self, ctx: Context, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.spec = ctx.spec
        self.store = ctx.store
        self.layout = ctx.layout
        self.scheduler = ctx.scheduler(name)

    def run(
        self,
        limit: int | None,
        dry_run: bool,
        recovered: list[str],
        only_keys: Sequence[str] | None,
        patient: bool = True,
    ) -> SubmitReport:
        name, scheduler, store = self.name, self.scheduler, self.store
        held = holds.active(self.ctx) if patient and not dry_run else None
        if held is not None:
            waiting = (
                store.counts().get(JobState.PENDING.value, 0)
                if only_keys is None
                else len(store.jobs(states=["pending"], columns=["id"], keys=only_keys))
            )
            return SubmitReport(name, dry_run, [], 0, waiting, recovered, held=held.describe())
        groups = {
            gid: JobGroup(gid, Resources.from_dict(g["resources"]), g["max_retries"])
            for gid, g in store.groups().items()
        }
        states = ["pending", "failed"] if dry_run and only_keys else ["pending"]
        candidates = store.jobs(
            states=states, columns=["id", "group_id", "time_scale", "memory_scale"], keys=only_keys
        )
        pending, groups = self._escalated_groups(candidates, groups)
        cancelled = store.counts().get(JobState.CANCELLED.value, 0)
        limits = self.ctx.limits(scheduler)
        capacity = limits.max_queued_jobs - store.open_task_count()
        plan = plan_arrays(pending, groups, limits, capacity=capacity, limit=limit)
        if not plan.arrays:
            return SubmitReport(name, dry_run, [], 0, plan.waiting, recovered, cancelled)
        job_ids = [jid for array in plan.arrays for task in array.tasks for jid in task]
        wanted = set(job_ids)
        jobs = {r["id"]: r for r in store.jobs(states=states, keys=only_keys) if r["id"] in wanted}
        summaries: list[ArraySummary] = []
        if not dry_run:
            store.set_backend(name)  # `retry --submit` uses the backend last submitted to
        hold = None
        for array in plan.arrays:
            real = dataclasses.replace(array, group=groups[array.group].index)  # virtual -> real
            try:
                summaries.append(self._submit_array(name, scheduler, real, jobs, dry_run))
            except SiteLimitError as exc:  # the intent was abandoned: its jobs are pending
                hold = holds.hold(self.ctx, str(exc)).describe()
                break
            if len(summaries) == 1 and not dry_run:
                holds.clear(self.ctx)  # the queue had room: a later refusal starts afresh
        submitted = sum(s.n_jobs for s in summaries)
        waiting = plan.waiting + sum(a.n_jobs for a in plan.arrays) - submitted
        return SubmitReport(
            name, dry_run, summaries, submitted, waiting, recovered, cancelled, held=hold
        )

    def _escalated_groups(
        self, candidates: Sequence[Mapping[str, Any]], groups: dict[int, JobGroup]
    ) -> tuple[list[tuple[int, int]], dict[int, JobGroup]]:
        """Jobs whose time or memory was escalated after a failure get their own (virtual) group,
        so arrays never mix resource requests."""
        virtual: dict[tuple[int, float, float], int] = {}
        out = dict(groups)
        pending = []
        for row in candidates:
            key = (row["group_id"], row["time_scale"], row["memory_scale"])
            if key[1:] == (1.0, 1.0):
                pending.append((row["id"], row["group_id"]))
                continue
            if key not in virtual:
                base = groups[row["group_id"]]
                minutes, memory = scaled(
                    base.resources.time_minutes,
                    base.resources.memory_mb,
                    key[1],
                    key[2],
                    self.ctx.policy_for(base.resources),
                )
                index = virtual[key] = max(out) + 1
                out[index] = JobGroup(
                    row["group_id"],
                    dataclasses.replace(base.resources, time_minutes=minutes, memory_mb=memory),
                    base.max_retries,
                )
            pending.append((row["id"], virtual[key]))
        return pending, out

    def _submit_array(
        self,
        name: str,
        scheduler: Scheduler,
        array: ArrayPlan,
        jobs: Mapping[int, Mapping[str, Any]],
        dry_run: bool,
    ) -> ArraySummary:
        token = uuid.uuid4().hex[:12]
        store = self.store
        task_rows = []
        for index, task in enumerate(array.tasks):
            for job_id in task:
                job = jobs[job_id]
                task_rows.append(
                    {
                        "job_id": job_id,
                        "attempt": job["attempts"] + 1,
                        "task_index": index,
                        "time_minutes": array.resources.time_minutes,
                        "memory_mb": array.resources.memory_mb,
                    }
                )
        if dry_run:
            folder = self.layout.logs / "dry-run" / f"plan-{token}"
            request = self._write_array(folder, token, array, jobs, task_rows, name)
            return ArraySummary(
                None,
                None,
                len(array.tasks),
                array.n_jobs,
                array.group,
                array.resources.describe(),
                str(folder),
                scheduler.render(request),
            )
        now = self.ctx.clock()
        submission_id = store.record_intent(
            {
                "token": token,
                "backend": name,
                "group_id": array.group,
                "n_tasks": len(array.tasks),
                "n_jobs": array.n_jobs,
                "log_dir": "",
            },
            task_rows,
            now,
            self.spec.config_hash,
        )
        folder = self.layout.array_dir(submission_id)
        request = self._write_array(folder, token, array, jobs, task_rows, name)
        store.set_log_dir(submission_id, str(folder))
        try:
            scheduler_id = scheduler.submit(request)
        except SubmissionUnknownError:
            raise  # keep the intent: recover_intents() looks for it by token next time
        except SiteConfigError as exc:
            store.abandon(submission_id, str(exc), self.ctx.clock())
            raise SiteConfigError(f"{exc}{_machine_view(self.spec.machine.site)}") from exc
        except SchedulerError as exc:
            store.abandon(submission_id, str(exc), self.ctx.clock())
            raise
        logs = {
            i: str(scheduler.log_path(folder, scheduler_id, i)) for i in range(len(array.tasks))
        }
        store.mark_submitted(submission_id, scheduler_id, logs, self.ctx.clock())
        return ArraySummary(
            submission_id,
            scheduler_id,
            len(array.tasks),
            array.n_jobs,
            array.group,
            array.resources.describe(),
            str(folder),
        )

    def _write_array(
        self,
        folder: Path,
        token: str,
        array: ArrayPlan,
        jobs: Mapping[int, Mapping[str, Any]],
        task_rows: Sequence[Mapping[str, Any]],
        backend: str,
    ) -> ArrayRequest:
        """Write array.json and tasks.jsonl (atomically) and describe the request."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifests").mkdir(exist_ok=True)
        template = CommandTemplate.parse(self.spec.command)
        attempt_of = {r["job_id"]: r["attempt"] for r in task_rows}
        lines = []
        for task in array.tasks:
            entries = []
            for job_id in task:
                job = jobs[job_id]
                entries.append(self._task_entry(job, attempt_of[job_id], folder, template))
            lines.append(json.dumps({"jobs": entries}))
        write_atomic(folder / "tasks.jsonl", "\n".join(lines) + "\n")
        launcher = launcher_command(self.spec.machine.launcher, array.resources)
        header = {
            "campaign": self.spec.name,
            "version": self.spec.version,
            "token": token,
            "campaign_dir": str(self.layout.root),
            "config_hash": self.spec.config_hash,
            "n_tasks": len(array.tasks),
            "n_jobs": array.n_jobs,
            "parallel": array.parallel,
            "launcher": launcher,
            "backend": backend,
            "array_parallelism": self.spec.execution.array_parallelism,
            "resources": array.resources.as_dict(),
            "slots_dir": str(self.layout.logs / ".slots"),
            "local_slots": self.spec.execution.local_workers or None,
        }
        write_atomic(folder / "array.json", json.dumps(header, indent=1) + "\n")
        return ArrayRequest(
            token=token,
            name=f"cmp-{self.spec.slug[:40]}-{token}",
            folder=folder,
            n_tasks=len(array.tasks),
            resources=array.resources,
            parallelism=self.spec.execution.array_parallelism,
            setup=self.spec.machine.setup,
            python=self.spec.machine.python,
        )

    def _task_entry(
        self, job: Mapping[str, Any], attempt: int, folder: Path, template: CommandTemplate
    ) -> dict[str, Any]:
        params = json.loads(job["params"])
        final = self.layout.output(job["output"])
        tmp = (
            final.with_name(f".{final.stem}.attempt{attempt}.tmp{final.suffix}")
            if self.spec.atomic_output
            else None
        )
        values = {
            **params,
            "output": str(tmp or final),
            "job_key": job["key"],
            "attempt": attempt,
            "campaign_dir": str(self.layout.root),
            "compression": self.spec.compression,
        }
        return {
            "id": job["id"],
            "uid": job["uid"],
            "key": job["key"],
            "attempt": attempt,
            "params": params,
            "command": template.render(values),
            "output": str(final),
            "output_rel": job["output"],
            "tmp_output": str(tmp) if tmp else None,
            "manifest": str(folder / "manifests" / f"{job['uid']}.json"),
            "env": dict(self.spec.env),
        }


def _machine_view(site: Site) -> str:
    """What the machine file believes of the site, to set beside the site's refusal."""
    if not site.known:
        return ""
    parts = []
    if site.qos:
        parts.append(f"QOS {', '.join(site.qos)}")
    if site.node_types:
        nodes = ", ".join(
            f"{n.name} ({n.cpus} CPUs, {n.memory_mb} MB{f', {n.gpus} GPUs' if n.gpus else ''})"
            for n in site.node_types.values()
        )
        parts.append(f"node types {nodes}")
    return f" The machine file lists {'; '.join(parts)}: if the site differs, correct it there."
