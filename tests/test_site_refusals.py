"""A site's refusals are not job failures: sbatch's messages classified (as measured on the
Perlmutter-shaped test cluster), and `submit`/`monitor --submit` with the scheduler fake
refusing for a limit (jobs stay pending, a later cycle tries again, backing off) or for the
request itself (exit 1, the directive and the fix). Nothing is lost or submitted twice."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from campaigns.core.spec import Resources
from campaigns.errors import SiteConfigError, SiteLimitError
from campaigns.ops import holds
from campaigns.scheduler.slurm_refusals import (
    CONFIG,
    LIMIT,
    classify,
    config_message,
    limit_message,
)
from fake_scheduler import FakeScheduler
from test_ops_submit import CAMPAIGN, Clock, manager

#: sbatch's stderr (one line, as the backend reads it), recorded on the test cluster.
VIOLATES = (
    "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
    "(job submit limit, user's size and/or time limits)"
)
MEASURED = {
    f"sbatch: error: QOSMaxSubmitJobPerUserLimit; {VIOLATES}": (LIMIT, None),
    f"sbatch: error: AssocMaxSubmitJobLimit; {VIOLATES}": (LIMIT, None),
    VIOLATES: (LIMIT, None),
    "sbatch: error: Batch job submission failed: Invalid job array specification": (
        LIMIT,
        "--array",
    ),
    f"sbatch: error: QOSMaxWallDurationPerJobLimit; {VIOLATES}": (CONFIG, "--time"),
    "sbatch: error: Batch job submission failed: Invalid qos specification": (CONFIG, "--qos"),
    "sbatch: error: Batch job submission failed: Invalid account or account/partition "
    "combination specified": (CONFIG, "--account"),
    "sbatch: error: Batch job submission failed: Invalid feature specification": (
        CONFIG,
        "--constraint",
    ),
    "sbatch: error: Invalid generic resource (gres) specification": (CONFIG, "--gpus"),
    "sbatch: error: Batch job submission failed: Requested node configuration is not available": (
        CONFIG,
        "--constraint",
    ),
    "sbatch: error: Memory specification can not be satisfied; sbatch: error: Batch job "
    "submission failed: Requested node configuration is not available": (CONFIG, "--mem"),
    "sbatch: error: Batch job submission failed: More processors requested than permitted": (
        CONFIG,
        "--cpus-per-task",
    ),
    "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing "
    "or exceeds some limit)": (CONFIG, "--time"),
    "sbatch: error: Batch job submission failed: Node count specification invalid": (
        CONFIG,
        "--nodes",
    ),
}


@pytest.mark.parametrize("message", list(MEASURED))
def test_sbatch_refusals_are_classified(message: str) -> None:
    refusal = classify(message)
    assert refusal is not None
    assert (refusal.kind, refusal.directive) == MEASURED[message]


def test_other_failures_are_not_refusals() -> None:
    assert classify("sbatch: error: Batch job submission failed: Socket timed out") is None
    assert classify("sbatch: error: Batch job submission failed: Unknown error") is None


def test_a_limit_refusal_says_which_limit() -> None:
    full = classify(f"sbatch: error: QOSMaxSubmitJobPerUserLimit; {VIOLATES}")
    assert full is not None
    assert limit_message(full, "array 2") == (
        'sbatch refused array 2 for a site limit: "QOSMaxSubmitJobPerUserLimit"'
    )
    array = classify("sbatch: error: Batch job submission failed: Invalid job array specification")
    assert array is not None and "machine.max_array_size" in limit_message(array, "array 2")


def test_a_configuration_refusal_names_the_directive_and_the_fix() -> None:
    refusal = classify("sbatch: error: Batch job submission failed: Invalid qos specification")
    assert refusal is not None
    text = config_message(refusal, Resources(qos="debug"), "array array-000001 (3 tasks)")
    assert text.startswith('sbatch refused --qos=debug for array array-000001 (3 tasks): "Invalid')
    assert "set resources.qos" in text and "sacctmgr show assoc" in text
    wall = classify(f"sbatch: error: QOSMaxWallDurationPerJobLimit; {VIOLATES}")
    assert wall is not None
    text = config_message(wall, Resources(time_minutes=120, qos="debug"), "array 1")
    assert text.startswith('sbatch refused --time=120 for array 1: "QOSMaxWallDurationPerJobLimit"')
    assert "execution.timeout_hours" in text


# -- with the scheduler fake -------------------------------------------------------------


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN)
    return config


def test_a_limit_refusal_holds_the_jobs_pending_until_a_later_cycle(campaign: Path) -> None:
    fake, clock = FakeScheduler(), Clock()
    fake.max_submitted = 5  # the QOS's MaxSubmitJobsPerUser: arrays of 4 and 2 do not both fit
    m = manager(campaign, fake, clock)
    m.init()
    report = m.submit_campaign(backend="fake")
    assert report.submitted_jobs == 4 and report.waiting_jobs == 2
    assert report.held is not None and "QOSMaxSubmitJobPerUserLimit" in report.held
    assert "12:01:00" in report.held  # 60 s: the retry backoff's first delay
    assert m.store.counts() == {"queued": 4, "pending": 2}
    assert [s["state"] for s in m.store.submissions()] == ["submitted", "abandoned"]
    assert sorted(j["attempts"] for j in m.store.jobs()) == [0, 0, 1, 1, 1, 1]

    # The next cycles inside the back-off do not ask sbatch again.
    clock.now += timedelta(seconds=30)
    status = m.monitor_progress(resubmit=True, backend="fake")
    assert status.counts["pending"] == 2 and fake.refused == 1
    fake.run()  # the first array's tasks finish: the queue has room again
    clock.now += timedelta(seconds=31)
    status = m.monitor_progress(resubmit=True, backend="fake")
    assert status.counts["completed"] == 4 and status.counts["queued"] == 2
    assert fake.refused == 1 and holds.current(m) is None  # cleared by the accepted array
    fake.run()
    status = m.monitor_progress(resubmit=True, backend="fake")
    assert status.counts["completed"] == 6 and status.counts["failed"] == 0
    assert sorted(Counter(fake.jobs_submitted()).values()) == [1] * 6  # each exactly once
    assert {j["attempts"] for j in m.store.jobs()} == {1}


def test_refusals_in_a_row_back_off_like_retries(campaign: Path) -> None:
    fake, clock = FakeScheduler(), Clock()
    fake.refusals = [SiteLimitError(f'refused: "QOSMaxSubmitJobPerUserLimit" ({n})') for n in "123"]
    m = manager(campaign, fake, clock)
    m.init()
    waits = []
    for _ in range(3):
        report = m.submit_campaign(backend="fake")  # the user's own submit tries at once
        assert report.submitted_jobs == 0 and report.waiting_jobs == 6
        hold = holds.current(m)
        assert hold is not None
        waits.append((hold.until - clock.now).total_seconds())
        assert m.monitor_progress(resubmit=True, backend="fake").counts["pending"] == 6
    assert waits == [60, 120, 240] and fake.refused == 3  # monitor never asked inside a hold
    clock.now += timedelta(seconds=240)
    assert m.monitor_progress(resubmit=True, backend="fake").counts["queued"] == 6
    assert m.store.counts() == {"queued": 6}


def test_a_configuration_refusal_stops_with_exit_1_and_marks_nothing_failed(
    campaign: Path,
) -> None:
    fake, clock = FakeScheduler(), Clock()
    fake.refusals = [SiteConfigError("sbatch refused --qos=nope for array-000001: ...")]
    m = manager(campaign, fake, clock)
    m.init()
    with pytest.raises(SiteConfigError) as caught:
        m.submit_campaign(backend="fake")
    assert caught.value.exit_code == 1
    assert m.store.counts() == {"pending": 6}
    assert [s["state"] for s in m.store.submissions()] == ["abandoned"]
    assert m.store.attempts() == [] and holds.current(m) is None
    # Once the file is fixed (here: the site accepts), the same jobs go, once each.
    report = m.submit_campaign(backend="fake")
    assert report.submitted_jobs == 6
    assert sorted(Counter(fake.jobs_submitted()).values()) == [1] * 6


def test_a_configuration_refusal_in_a_cycle_stops_later_cycles(campaign: Path) -> None:
    fake, clock = FakeScheduler(), Clock()
    fake.refusals = [SiteConfigError('sbatch refused --qos=nope for array-000001: "Invalid qos"')]
    m = manager(campaign, fake, clock)
    m.init()
    with pytest.raises(SiteConfigError, match="circuit breaker is open.*submit --resume"):
        m.monitor_progress(resubmit=True, backend="fake")
    for _ in range(3):  # the autopilot's next ticks: no sbatch until the user resumes
        clock.now += timedelta(minutes=5)
        report = m.monitor_progress(resubmit=True, backend="fake")
        assert report.counts["pending"] == 6 and report.breaker_open_since is not None
    assert fake.refused == 1 and fake.arrays == {}
    assert m.submit_campaign(backend="fake", resume=True).submitted_jobs == 6
