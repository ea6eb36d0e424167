"""The measured proof of unattended operation, on the real Slurm (required in CI): 200 jobs
with injected faults (10% transient, three timeouts that escalate, two permanent failures),
slurmctld restarted once mid-campaign, one tick killed with SIGKILL; only `init` and
`autopilot` are run. The scenario is `benchmarks/unattended.py`, which also times it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from slurm_helpers import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from unattended import run_scenario  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.mark.skipif(os.geteuid() != 0, reason="restarting slurmctld needs root")
def test_a_faulty_campaign_runs_to_the_end_with_nobody_watching(
    cluster: Cluster, tmp_path: Path
) -> None:
    result = run_scenario(tmp_path, n_jobs=200, faults=True, timeout=1500)
    assert result["manual_commands"] == 0
    assert result["slurmctld_restarted"] and result["ticks_killed"] == 1, result
    assert result["completed"] == 198 and result["failed_for_good"] == 2, result
    assert result["failed_as_expected"], result
    assert result["run_twice"] == 0 and result["lost"] == 0, result
