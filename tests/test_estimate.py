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
    # override, the other 34,000 jobs 0.5 h and 4 GB; cpu_shared is 1 node x 1 task x 2 CPUs
    # in the shared QOS on a cpu node (256 CPUs, 512 GB); batch_size 1000, one job per task.
    assert report["n_jobs"] == report["remaining_jobs"] == 40_000
    assert report["n_tasks"] == 40_000 and report["n_arrays"] == 6 + 34
    by_group = {g["n_jobs"]: g for g in report["groups"]}
    assert by_group[6000]["cpu_hours"] == 6000 * 2 * 1.0
    assert by_group[34000]["cpu_hours"] == 34000 * 2 * 0.5
    assert report["cpu_hours"] == 12_000 + 34_000
    # The shared QOS charges the larger of the CPU share and the memory share of the node,
    # x hours x charge factor 1:
    #   34,000 jobs x 0.5 h x max(2/256, 4/512)  = 34,000 x 0.5 x 0.0078125 = 132.8125
    #    6,000 jobs x 1.0 h x max(2/256, 32/512) =  6,000 x 1.0 x 0.0625    = 375.0
    #                                                                   total = 507.8125
    # (the hand range is 180-510 node-hours; whole nodes would be 23,000).
    by_hand = 34_000 * 0.5 * max(2 / 256, 4 / 512) + 6_000 * 1.0 * max(2 / 256, 32 / 512)
    assert report["node_hours"] == pytest.approx(by_hand) == pytest.approx(507.8125)
    assert 180 <= report["node_hours"] <= 510
    assert report["cpu_node_hours"] == report["node_hours"] and report["gpu_node_hours"] == 0
    assert by_group[34000]["rule"] == "shared: max(cpu 2/256, memory 4G/512G) of a cpu node x 1.0"
    assert by_group[6000]["rule"] == "shared: max(cpu 2/256, memory 32G/512G) of a cpu node x 1.0"
    assert report["gpu_hours"] == 0
    # max_queued_jobs 4000, array_parallelism 512, 1000 tasks per array: 4 arrays in the
    # queue x 512 = 2048 tasks at once; 23,000 task-hours / 2048 = 11.23 h.
    assert report["expected_wall_hours"] == pytest.approx(23_000 / 2048)
    assert "2048 tasks at once" in report["basis"]


def test_exclusive_and_gpu_groups_by_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "campaign.yaml"
    config.write_text(
        """\
campaign: {name: "Mixed", version: "v1", machine: nersc}
parameters:
  realization: {range: [0, 10]}
  kind: [cpu, gpu]
job:
  command: "run {realization} {kind} {output}"
  output: "r{realization}_{kind}.h5"
execution: {timeout_hours: 2}
resources: {account: m1234, job_type: cpu_intensive}
machine: {qos: {regular: {charge_factor: 2}}}
overrides:
  - match: {kind: gpu}
    resources: {account: m1234_g, job_type: gpu_intensive, nodes: 2}
"""
    )
    report = estimate(config, capsys)
    by_rule = {g["rule"]: g for g in report["groups"]}
    # Exclusive QOS: whole nodes x hours x charge factor (2, overridden by the campaign).
    cpu = by_rule["regular: 1 whole cpu node x 2.0"]
    assert cpu["node_hours"] == cpu["cpu_node_hours"] == 10 * 1 * 2.0 * 2
    gpu = by_rule["regular: 2 whole gpu nodes x 2.0"]
    assert gpu["node_hours"] == gpu["gpu_node_hours"] == 10 * 2 * 2.0 * 2
    assert gpu["gpu_hours"] == 10 * 2 * 4 * 2.0  # GPU-hours: 4 GPUs a node
    assert (report["cpu_node_hours"], report["gpu_node_hours"]) == (40, 80)


def test_without_a_machine_model_whole_nodes_are_charged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = estimate(REPO / "config" / "examples" / "mpi_campaign.yaml", capsys)
    (group,) = report["groups"]
    assert group["rule"].startswith("whole nodes: 1 x hours")
    assert "models no node types or QOS" in group["rule"]
    assert report["node_hours"] == 4 * 0.25


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
