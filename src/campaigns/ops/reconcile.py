"""`monitor`'s step: reconcile the store with what the schedulers and the manifests say.

One poll per backend for all open arrays, one scan of each open array's
manifest folder, one transaction of bulk updates. Also recovers submissions
whose outcome a crash left unknown (recorded intent, no scheduler id).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from campaigns.core.policy import decide
from campaigns.core.states import FailureClass, JobState, TaskState, Verdict, judge
from campaigns.core.times import parse_iso
from campaigns.errors import SchedulerError
from campaigns.ops.context import Context
from campaigns.scheduler.base import ArrayStatus, TaskStatus

#: A task the scheduler does not report for this long after submission is lost.
LOST_GRACE = timedelta(minutes=10)


def recover_intents(ctx: Context) -> list[str]:
    """Settle submissions recorded but never confirmed (the caller holds the lock)."""
    return _Reconciler(ctx).recover_intents()


def reconcile(ctx: Context) -> str | None:
    """Update every open job from its scheduler and manifests (the caller holds the lock).

    Returns an error text when a scheduler could not be asked (status unknown, no change).
    """
    return _Reconciler(ctx).reconcile()


class _Reconciler:
    """One reconciliation step for one campaign."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.now = ctx.clock()

    def recover_intents(self) -> list[str]:
        """Settle submissions recorded but never confirmed: found -> submitted, else abandoned."""
        messages = []
        for sub in self.store.submissions(states=["intent"]):
            folder = (
                Path(sub["log_dir"]) if sub["log_dir"] else self.ctx.layout.array_dir(sub["id"])
            )
            found = None
            if folder.is_dir():
                scheduler = self.ctx.scheduler(sub["backend"])
                found = scheduler.find(
                    sub["token"], folder, sub["created_at"] - timedelta(minutes=5)
                )
            if found:
                scheduler = self.ctx.scheduler(sub["backend"])
                logs = {i: str(scheduler.log_path(folder, found, i)) for i in range(sub["n_tasks"])}
                self.store.mark_submitted(sub["id"], found, logs, self.now)
                messages.append(f"submission {sub['id']} had reached the scheduler as {found}")
            else:
                n = self.store.abandon(
                    sub["id"],
                    "never reached the scheduler (the submitting "
                    "process stopped first); its jobs are pending again",
                    self.now,
                )
                messages.append(
                    f"submission {sub['id']} never reached the scheduler: {n} jobs back to pending"
                )
        return messages

    def reconcile(self) -> str | None:
        """Update every open job; returns an error text if a scheduler could not be asked."""
        subs = {s["id"]: s for s in self.store.submissions(states=["submitted"])}
        if not subs:
            return None
        statuses: dict[int, ArrayStatus] = {}
        by_backend: dict[str, dict[str, Path]] = {}
        for sub in subs.values():
            by_backend.setdefault(sub["backend"], {})[sub["scheduler_id"]] = Path(sub["log_dir"])
        for backend, arrays in by_backend.items():
            try:
                polled = self.ctx.scheduler(backend).poll(arrays)
            except SchedulerError as exc:
                return f"status unknown: {exc}"
            for sub in subs.values():
                if sub["backend"] == backend:
                    statuses[sub["id"]] = polled.get(sub["scheduler_id"], ArrayStatus(known=False))
        present = self._present(subs)
        # An array whose every task is still pending and that left no manifest has nothing
        # new: its jobs are not read (on a quiet tick at 100,000 jobs, none are).
        quiet = {sid for sid, sub in subs.items() if _quiet(sub, statuses[sid], present[sid])}
        active = [sid for sid in subs if sid not in quiet]
        jobs = (
            [
                j
                for j in self.store.jobs(
                    states=["queued", "running"],
                    submission_ids=active,
                    columns=[
                        "id",
                        "key",
                        "uid",
                        "state",
                        "attempts",
                        "attempts_used",
                        "submission_id",
                        "task_index",
                        "group_id",
                        "time_scale",
                        "memory_scale",
                    ],
                )
                if j["submission_id"] in subs
            ]
            if active
            else []
        )
        manifests = self._manifests(subs, present, jobs)
        groups = self.store.groups()
        job_updates, attempt_updates, events = [], [], []
        still_open: dict[int, int] = {sid: int(sid in quiet) for sid in subs}
        for job in jobs:
            sub = subs[job["submission_id"]]
            status = statuses[sub["id"]]
            task = status.tasks.get(job["task_index"], TaskStatus(TaskState.UNKNOWN))
            lost = (
                task.state == TaskState.UNKNOWN
                and self.now - (sub["submitted_at"] or self.now) > LOST_GRACE
            )
            manifest = manifests.get(job["id"])
            verdict = judge(task.state, manifest, lost=lost)
            change = self._change(job, verdict, task, manifest, groups, sub)
            if change is not None:
                job_update, attempt_update, note = change
                job_updates.append(job_update)
                attempt_updates.append(attempt_update)
                if verdict.state == JobState.FAILED:
                    events.append(
                        {
                            "kind": "failed",
                            "job_id": job["id"],
                            "submission_id": sub["id"],
                            "message": f"{job['key']} attempt {job['attempts']}: "
                            f"{verdict.failure.value if verdict.failure else '?'}"
                            f" ({verdict.error}); {note}",
                        }
                    )
            final = verdict.state in (JobState.COMPLETED, JobState.FAILED)
            if not final:
                still_open[sub["id"]] += 1
        close = [sid for sid, n in still_open.items() if n == 0]
        self.store.apply(job_updates, attempt_updates, events, close, self.now)
        return None

    @staticmethod
    def _present(subs: Mapping[int, Mapping[str, Any]]) -> dict[int, set[str]]:
        """The manifest files in each open array's folder: one directory scan per array."""
        present: dict[int, set[str]] = {}
        for sid, sub in subs.items():
            try:
                with os.scandir(os.path.join(sub["log_dir"], "manifests")) as entries:
                    present[sid] = {e.name for e in entries}
            except FileNotFoundError:
                present[sid] = set()
        return present

    def _manifests(
        self,
        subs: Mapping[int, Mapping[str, Any]],
        present: Mapping[int, set[str]],
        jobs: list[dict[str, Any]],
    ) -> dict[int, dict[str, Any]]:
        """Manifests of open jobs (read only where the job's file is present)."""
        folders = {sid: os.path.join(sub["log_dir"], "manifests") for sid, sub in subs.items()}
        out = {}
        for job in jobs:
            name = f"{job['uid']}.json"
            if name not in present[job["submission_id"]]:
                continue
            path = os.path.join(folders[job["submission_id"]], name)
            try:
                with open(path, "rb") as fh:  # bytes: json decodes UTF-8 itself, faster
                    data = json.loads(fh.read())
            except (OSError, ValueError):
                continue  # unreadable now; the next cycle tries again
            if data.get("attempt") == job["attempts"]:
                data["_path"] = path
                out[job["id"]] = data
        return out

    def _change(
        self,
        job: Mapping[str, Any],
        verdict: Verdict,
        task: TaskStatus,
        manifest: Mapping[str, Any] | None,
        groups: Mapping[int, Mapping[str, Any]],
        sub: Mapping[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any], str] | None:
        """The updates for one job (None: nothing new) and a note on what happens next."""
        state = verdict.state
        if state == JobState.QUEUED or state.value == job["state"]:
            return None  # nothing new (a running job never goes back to queued)
        started = _time(manifest, "started_at") or task.started_at
        ended = _time(manifest, "ended_at") or task.ended_at or self.now
        node = (manifest or {}).get("host") or task.node
        job_update: dict[str, Any] = {"id": job["id"], "state": state.value, "started_at": started}
        attempt_update: dict[str, Any] = {
            "job_id": job["id"],
            "number": job["attempts"],
            "state": state.value,
            "started_at": started,
            "node": node,
        }
        if state == JobState.RUNNING:
            return job_update, attempt_update, "running"
        failure = verdict.failure.value if verdict.failure else None
        final = {
            "ended_at": ended,
            "exit_code": verdict.exit_code,
            "failure_class": failure,
            "error": verdict.error,
        }
        job_update.update(final)
        attempt_update.update(final, manifest_path=(manifest or {}).get("_path"))
        note = "completed"
        if state == JobState.FAILED:
            decision = decide(
                self.ctx.policy,
                verdict.failure or FailureClass.EXIT_CODE,
                verdict.exit_code,
                job["attempts_used"],
                groups[job["group_id"]]["max_retries"],
                ended,
                self.ctx.rng.random(),
                job["time_scale"],
                job["memory_scale"],
            )
            job_update.update(
                next_retry_at=decision.next_retry_at,
                time_scale=decision.time_scale,
                memory_scale=decision.memory_scale,
            )
            note = decision.reason
        return job_update, attempt_update, note


def _quiet(sub: Mapping[str, Any], status: ArrayStatus, manifests: set[str]) -> bool:
    """True when the scheduler reports every task of the array pending and no job of it left
    a manifest: none of its jobs can have changed (a pending task's job stays queued)."""
    tasks = status.tasks
    return (
        status.known
        and not manifests
        and len(tasks) >= sub["n_tasks"]
        and all(tasks.get(i, _UNREPORTED).state == TaskState.PENDING for i in range(sub["n_tasks"]))
    )


_UNREPORTED = TaskStatus(TaskState.UNKNOWN)


def _time(manifest: Mapping[str, Any] | None, key: str) -> datetime | None:
    return parse_iso(manifest.get(key)) if manifest else None
