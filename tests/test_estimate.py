"""`estimate` against hand computations for the examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.core.estimate import Limits, concurrency, percentile

REPO = Path(__file__).resolve().parents[1]


def estimate(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    assert main(["estimate", str(config), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_production_example_by_hand(capsys: pytest.CaptureFixture[str]) -> None:
    report = estimate(REPO / "config" / "examples" / "production_campaign.yaml", capsys)
    # 2,000 realizations x 20 snapshots; snapshots 0-2 (6,000 jobs) have 1 h and 32 GB by
    # override, the other 34,000 jobs 0.5 h and 4 GB; cpu_shared is 1 node x 1 task x 2 CPUs;
    # batch_size 1000, one job per task.
    assert report["n_jobs"] == report["remaining_jobs"] == 40_000
    assert report["n_tasks"] == 40_000 and report["n_arrays"] == 6 + 34
    by_group = {g["n_jobs"]: g for g in report["groups"]}
    assert by_group[6000]["cpu_hours"] == 6000 * 2 * 1.0
    assert by_group[34000]["cpu_hours"] == 34000 * 2 * 0.5
    assert report["cpu_hours"] == 12_000 + 34_000
    assert report["node_hours"] == 6000 * 1.0 + 34000 * 0.5
    assert report["gpu_hours"] == 0
    # max_queued_jobs 4000, array_parallelism 512, 1000 tasks per array: 4 arrays in the
    # queue x 512 = 2048 tasks at once; 23,000 task-hours / 2048 = 11.23 h.
    assert report["expected_wall_hours"] == pytest.approx(23_000 / 2048)
    assert "2048 tasks at once" in report["basis"]


def test_test_example_by_hand(capsys: pytest.CaptureFixture[str]) -> None:
    report = estimate(REPO / "config" / "examples" / "test_campaign.yaml", capsys)
    # 30 jobs of 1 CPU for 15 minutes, batches of 10.
    assert (report["n_jobs"], report["n_tasks"], report["n_arrays"]) == (30, 30, 3)
    assert report["cpu_hours"] == pytest.approx(30 * 0.25)
    # local: 100,000 queued allowed, 3 arrays x 256 -> all 30 at once: one 15-minute round.
    assert report["expected_wall_hours"] == pytest.approx(0.25)


def test_concurrency_and_percentile() -> None:
    limits = Limits(
        batch_size=1000,
        max_array_size=None,
        jobs_per_task=1,
        array_parallelism=512,
        max_queued_jobs=4000,
    )
    assert concurrency(40_000, limits) == 2048
    assert concurrency(100, limits) == 100
    assert percentile([1, 2, 3, 4, 5], 0.5) == 3
    assert percentile([0, 10], 0.9) == pytest.approx(9)
