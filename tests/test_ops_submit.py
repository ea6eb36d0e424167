"""`submit` and its crash recovery, with a scheduler fake at the seam (real store and files).

A crash is a `Crash` (BaseException) raised inside the fake: the submitting process
stops there, the lock and the database are left as a killed process leaves them, and a
new manager (a new command) picks up.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from campaigns.core.states import TaskState
from campaigns.errors import SchedulerError
from campaigns.ops.manager import CampaignManager
from fake_scheduler import Crash, FakeScheduler

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
CAMPAIGN = """\
campaign: {name: "Fake", version: "f1", machine: local}
parameters:
  realization: {range: [0, 6]}
job:
  command: "echo {realization} > {output}"
  output: "r{realization}.txt"
execution:
  batch_size: 4
  max_retries: 2
  retry_backoff: {base_seconds: 60, factor: 2, max_seconds: 600, jitter: 0}
"""


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN)
    return config


def manager(config: Path, fake: FakeScheduler, clock: Clock | None = None) -> CampaignManager:
    """A new command's manager (a fresh context, as after a restart)."""
    return CampaignManager(
        config,
        root=config.parent / "out",
        clock=clock or Clock(),
        rng=random.Random(1),
        schedulers={"fake": fake},
    )


def submissions(m: CampaignManager) -> list[tuple[str, str | None]]:
    return [(s["state"], s["scheduler_id"]) for s in m.store.submissions()]


def test_submit_plans_arrays_and_records_them(campaign: Path) -> None:
    fake = FakeScheduler()
    m = manager(campaign, fake)
    m.init()
    report = m.submit_campaign(backend="fake")
    assert [a.n_jobs for a in report.arrays] == [4, 2]
    assert submissions(m) == [("submitted", "F1"), ("submitted", "F2")]
    assert m.store.counts() == {"queued": 6}
    assert sorted(Counter(fake.jobs_submitted()).values()) == [1] * 6
    assert m.store.campaign()["backend"] == "fake"


def test_a_refused_submission_leaves_the_jobs_pending(campaign: Path, monkeypatch) -> None:
    fake = FakeScheduler()
    m = manager(campaign, fake)
    m.init()

    def refuse(request):  # type: ignore[no-untyped-def]
        raise SchedulerError("sbatch refused: invalid partition")

    monkeypatch.setattr(fake, "submit", refuse)
    with pytest.raises(SchedulerError):
        m.submit_campaign(backend="fake")
    assert m.store.counts() == {"pending": 6}
    assert [s["state"] for s in m.store.submissions()] == ["abandoned"]
    assert all(j["attempts"] == 0 for j in m.store.jobs())
    assert m.store.attempts() == []


def crashed_submit(campaign: Path, where: str) -> tuple[CampaignManager, FakeScheduler]:
    """`init`, then a `submit` killed at `where` (`before` or `after` sbatch)."""
    fake = FakeScheduler()
    m = manager(campaign, fake)
    m.init()
    setattr(fake, f"crash_{where}_submit", True)
    with pytest.raises(Crash):
        m.submit_campaign(backend="fake")
    return m, fake


def test_crash_between_intent_and_sbatch(campaign: Path) -> None:
    m, fake = crashed_submit(campaign, "before")
    # The intent is recorded, its jobs queued, and nothing reached the scheduler.
    assert submissions(m) == [("intent", None)]
    assert m.store.counts() == {"pending": 2, "queued": 4}
    assert fake.arrays == {}
    again = manager(campaign, fake)
    report = again.submit_campaign(backend="fake")
    assert report.recovered == ["submission 1 never reached the scheduler: 4 jobs back to pending"]
    assert submissions(again) == [("abandoned", None), ("submitted", "F1"), ("submitted", "F2")]
    # Every job went to the scheduler exactly once, on its first attempt.
    assert sorted(Counter(fake.jobs_submitted()).values()) == [1] * 6
    assert {j["attempts"] for j in again.store.jobs()} == {1}
    assert (Path(again.store.submissions()[0]["log_dir"]) / "tasks.jsonl").exists()


def test_crash_between_sbatch_and_recording(campaign: Path) -> None:
    m, fake = crashed_submit(campaign, "after")
    assert submissions(m) == [("intent", None)] and list(fake.arrays) == ["F1"]
    again = manager(campaign, fake)
    report = again.submit_campaign(backend="fake")
    assert report.recovered == ["submission 1 had reached the scheduler as F1"]
    # Found by its token: recorded, not submitted a second time.
    assert submissions(again) == [("submitted", "F1"), ("submitted", "F2")]
    assert sorted(Counter(fake.jobs_submitted()).values()) == [1] * 6
    ids = {j["scheduler_id"] for j in again.store.jobs()}
    assert ids == {"F1_0", "F1_1", "F1_2", "F1_3", "F2_0", "F2_1"}


def test_monitor_recovers_an_intent_too(campaign: Path) -> None:
    fake = FakeScheduler()
    m = manager(campaign, fake)
    m.init()
    fake.crash_after_submit = True
    with pytest.raises(Crash):
        m.submit_campaign(backend="fake", limit=4)
    fake.run()
    report = manager(campaign, fake).monitor_progress()
    assert report.counts["completed"] == 4 and report.counts["pending"] == 2


def test_the_queue_cap_holds_jobs_back(campaign: Path) -> None:
    capped = campaign.parent / "capped.yaml"
    capped.write_text(
        CAMPAIGN.replace("machine: local}", "machine: local}\nmachine: {max_queued_jobs: 3}")
    )
    fake = FakeScheduler()
    m = manager(capped, fake)
    m.init()
    report = m.submit_campaign(backend="fake")
    assert report.submitted_jobs == 3 and report.waiting_jobs == 3
    fake.set_all(TaskState.RUNNING)
    m.monitor_progress()
    assert m.submit_campaign(backend="fake").submitted_jobs == 0  # still 3 tasks open
    fake.run()
    report = m.monitor_progress(resubmit=True, backend="fake")
    assert report.counts == {**report.counts, "completed": 3, "queued": 3}


def test_dry_run_changes_nothing(campaign: Path) -> None:
    fake = FakeScheduler()
    m = manager(campaign, fake)
    m.init()
    report = m.submit_campaign(backend="fake", dry_run=True)
    assert report.dry_run and [a.script for a in report.arrays][0].startswith("fake array")
    assert m.store.counts() == {"pending": 6} and m.store.submissions() == []
    assert m.store.campaign()["backend"] is None and fake.arrays == {}
    plan = Path(report.arrays[0].folder)
    assert len((plan / "tasks.jsonl").read_text().splitlines()) == 4
    assert json.loads((plan / "array.json").read_text())["n_jobs"] == 4


def test_retry_submits_due_jobs_to_the_backend_last_used(campaign: Path) -> None:
    fake, clock = FakeScheduler(), Clock()
    m = manager(campaign, fake, clock)
    m.init()
    m.submit_campaign(backend="fake")
    fake.set_all(TaskState.FAILED, 1)
    m.monitor_progress()
    assert m.store.counts() == {"failed": 6}
    assert m.retry_failed_jobs(submit=True).reset == []  # backoff: 60 s after the failure
    clock.now += timedelta(seconds=61)
    report = m.retry_failed_jobs(submit=True)
    assert len(report.reset) == 6 and report.submit is not None
    assert report.submit.backend == "fake" and report.submit.submitted_jobs == 6
    assert {j["attempts"] for j in m.store.jobs()} == {2}
