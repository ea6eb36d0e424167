"""Reconciliation with a scheduler fake at the seam: manifests missing, stale, duplicated or
corrupt, a task the scheduler lost, and the retry decisions that follow. Real store, real files."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from campaigns.core.states import TaskState
from campaigns.ops.reconcile import LOST_GRACE
from fake_scheduler import FakeScheduler
from test_ops_submit import Clock, manager


@pytest.fixture
def running(campaign: Path) -> tuple[Path, FakeScheduler, Clock]:
    """Six jobs submitted to the fake as two arrays (4 + 2), nothing run yet."""
    fake, clock = FakeScheduler(), Clock()
    m = manager(campaign, fake, clock)
    m.init()
    m.submit_campaign(backend="fake")
    m.close()
    return campaign, fake, clock


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    from test_ops_submit import CAMPAIGN

    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN)
    return config


def jobs(config: Path, fake: FakeScheduler, clock: Clock) -> dict[str, dict]:
    m = manager(config, fake, clock)
    rows = {r["key"]: r for r in m.store.jobs()}
    m.close()
    return rows


def manifests(fake: FakeScheduler) -> list[Path]:
    return sorted(
        p for a in fake.arrays.values() for p in (a.request.folder / "manifests").iterdir()
    )


def test_jobs_complete_from_their_manifests(running) -> None:
    config, fake, clock = running
    fake.run()
    report = manager(config, fake, clock).monitor_progress()
    assert report.counts["completed"] == 6 and report.open_arrays == 0
    rows = jobs(config, fake, clock)
    assert all(r["exit_code"] == 0 and r["started_at"] and r["ended_at"] for r in rows.values())
    outputs = sorted(p.name for p in (config.parent / "out" / "f1_fake" / "catalogs").iterdir())
    assert outputs == [f"r{i}.txt" for i in range(6)]


def test_a_running_task_is_running_until_its_manifest(running) -> None:
    config, fake, clock = running
    fake.set_all(TaskState.RUNNING)
    assert manager(config, fake, clock).monitor_progress().counts["running"] == 6
    fake.set_all(TaskState.PENDING)  # a scheduler's stale word never moves a job back
    assert manager(config, fake, clock).monitor_progress().counts["running"] == 6


def test_a_missing_manifest_is_a_lost_job_retried_soon(running) -> None:
    config, fake, clock = running
    fake.run()
    gone = manifests(fake)[0]
    uid = gone.stem
    gone.unlink()
    report = manager(config, fake, clock).monitor_progress()
    assert report.counts["completed"] == 5 and report.counts["failed"] == 1
    (job,) = [r for r in jobs(config, fake, clock).values() if r["uid"] == uid]
    assert job["failure_class"] == "lost" and job["state"] == "failed"
    # An infrastructure failure: retried after the short fixed delay, not the backoff.
    assert job["next_retry_at"] == clock.now + timedelta(seconds=30)


def test_a_corrupt_manifest_never_counts_as_completed(running) -> None:
    config, fake, clock = running
    fake.run()
    broken = manifests(fake)[0]
    broken.write_text('{"exit_code": 0, "attem')
    report = manager(config, fake, clock).monitor_progress()
    assert report.counts["completed"] == 5 and report.counts["failed"] == 1
    (job,) = [r for r in jobs(config, fake, clock).values() if r["uid"] == broken.stem]
    assert job["state"] == "failed" and job["failure_class"] == "lost"


def test_a_manifest_of_another_attempt_is_ignored(running) -> None:
    config, fake, clock = running
    stale = manifests_dir(fake) / f"{first_uid(fake)}.json"
    stale.write_text(json.dumps({"attempt": 7, "exit_code": 0, "failure": None}))
    fake.set_all(TaskState.RUNNING)
    report = manager(config, fake, clock).monitor_progress()
    assert report.counts["running"] == 6  # attempt 7's word says nothing about attempt 1


def test_a_duplicated_manifest_in_another_array_changes_nothing(running) -> None:
    config, fake, clock = running
    fake.run()
    first, second = (a.request.folder for a in fake.arrays.values())
    copy = first / "manifests" / f"{first_uid(fake)}.json"
    shutil.copy(copy, second / "manifests" / copy.name)  # the same job's word, twice
    report = manager(config, fake, clock).monitor_progress()
    assert report.counts["completed"] == 6
    rows = jobs(config, fake, clock)
    assert sorted(r["attempts"] for r in rows.values()) == [1] * 6


def test_a_failed_job_waits_for_its_backoff(running) -> None:
    config, fake, clock = running
    m = manager(config, fake, clock)
    for array in fake.arrays.values():  # every job exits 3
        for line in (array.request.folder / "tasks.jsonl").read_text().splitlines():
            for job in json.loads(line)["jobs"]:
                job_manifest(job, exit_code=3)
    fake.set_all(TaskState.FAILED, 3)
    report = m.monitor_progress()
    assert report.counts["failed"] == 6 and report.retry_waiting == 6
    row = next(iter(jobs(config, fake, clock).values()))
    assert row["failure_class"] == "exit_code" and row["exit_code"] == 3
    assert row["next_retry_at"] == clock.now + timedelta(seconds=60)  # base 60 s, no jitter


def test_a_task_the_scheduler_lost(running) -> None:
    config, fake, clock = running
    for array in fake.arrays.values():
        array.forgotten = True  # the scheduler has no record of the arrays at all
    report = manager(config, fake, clock).monitor_progress()
    assert report.counts["queued"] == 6  # accounting lags: not lost yet
    clock.now += LOST_GRACE + timedelta(seconds=1)
    report = manager(config, fake, clock).monitor_progress()
    assert report.counts["failed"] == 6 and report.failures_by_class == {"lost": 6}
    assert report.open_arrays == 0


def test_a_scheduler_that_cannot_be_asked_changes_nothing(running, monkeypatch) -> None:
    from campaigns.errors import SchedulerError

    config, fake, clock = running
    fake.run()

    def unreachable(arrays):  # type: ignore[no-untyped-def]
        raise SchedulerError("sacct: Unable to contact slurm controller")

    monkeypatch.setattr(fake, "poll", unreachable)
    report = manager(config, fake, clock).monitor_progress()
    assert report.counts["queued"] == 6
    assert report.unknown_scheduler and "Unable to contact" in report.unknown_scheduler


def manifests_dir(fake: FakeScheduler) -> Path:
    return next(iter(fake.arrays.values())).request.folder / "manifests"


def first_uid(fake: FakeScheduler) -> str:
    folder = next(iter(fake.arrays.values())).request.folder
    return json.loads((folder / "tasks.jsonl").read_text().splitlines()[0])["jobs"][0]["uid"]


def job_manifest(job: dict, exit_code: int) -> None:
    """The manifest a worker leaves for a job that exited `exit_code`."""
    Path(job["manifest"]).write_text(
        json.dumps(
            {
                "attempt": job["attempt"],
                "exit_code": exit_code,
                "failure": "exit_code",
                "error": f"exit code {exit_code}",
                "started_at": "2026-01-01T11:59:00Z",
                "ended_at": "2026-01-01T12:00:00Z",
            }
        )
    )


def test_only_arrays_with_news_are_read(running, monkeypatch) -> None:
    """A pending array without manifests is not read: no job rows, no manifest opened."""
    import builtins

    from campaigns.store import Store

    config, fake, clock = running
    opened: list[str] = []
    read_arrays: list[list[int] | None] = []

    def counting_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return builtins.open(path, *args, **kwargs)

    real_jobs = Store.jobs

    def counting_jobs(self, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("states") == ["queued", "running"]:
            read_arrays.append(kwargs.get("submission_ids"))
        return real_jobs(self, **kwargs)

    monkeypatch.setattr("campaigns.ops.reconcile.open", counting_open, raising=False)
    monkeypatch.setattr(Store, "jobs", counting_jobs)
    fake.set_all(TaskState.PENDING)
    assert manager(config, fake, clock).monitor_progress().counts["queued"] == 6
    assert opened == [] and read_arrays == []  # nothing new: nothing read

    fake.run()  # every job finishes; then the second array is made to look untouched
    first, second = fake.arrays.values()
    shutil.rmtree(second.request.folder / "manifests")
    (second.request.folder / "manifests").mkdir()
    for index in second.tasks:
        second.tasks[index] = second.tasks[index].__class__(TaskState.PENDING)
    report = manager(config, fake, clock).monitor_progress()
    assert report.counts["completed"] == 4 and report.counts["queued"] == 2
    assert len(opened) == 4 and all(p.endswith(".json") for p in opened)
    assert len(read_arrays) == 1 and len(read_arrays[0] or []) == 1  # the first array only
    opened.clear()
    read_arrays.clear()
    report = manager(config, fake, clock).monitor_progress()
    assert report.counts["queued"] == 2 and report.open_arrays == 1
    assert opened == [] and read_arrays == []
