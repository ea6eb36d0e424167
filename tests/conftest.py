"""Shared test setup.

Slurm tests (`@pytest.mark.slurm`) run against the real cluster that
`scripts/dev/slurm-cluster.sh up` starts. Without Slurm they skip with a
reason, except when CI is set or CAMPAIGNS_REQUIRE_SLURM=1: then a skipped or
missing Slurm test fails the session, so CI can never go green without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_helpers import Cluster, require_slurm, scancel_campaign

REQUIRE_SLURM = os.environ.get("CAMPAIGNS_REQUIRE_SLURM") == "1" or bool(os.environ.get("CI"))
_slurm_outcomes: dict[str, int] = {"passed": 0, "skipped": 0, "failed": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "slurm" not in report.keywords:
        return
    if report.when == "call" and report.passed:
        _slurm_outcomes["passed"] += 1
    elif report.skipped:
        _slurm_outcomes["skipped"] += 1
    elif report.failed:
        _slurm_outcomes["failed"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not REQUIRE_SLURM or session.config.getoption("collectonly"):
        return
    if _slurm_outcomes["skipped"] or not _slurm_outcomes["passed"]:
        print(
            f"\nSlurm tests are required here (CI or CAMPAIGNS_REQUIRE_SLURM=1) but "
            f"{_slurm_outcomes['passed']} passed and {_slurm_outcomes['skipped']} were skipped: "
            "failing the session. Start the cluster with `bash scripts/dev/slurm-cluster.sh up`."
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def cluster() -> Cluster:
    """The running Slurm cluster (skip, or fail where required, when there is none)."""
    return require_slurm()


@pytest.fixture
def leftovers() -> Iterator[list[Path]]:
    """Campaign directories whose Slurm arrays are cancelled after the test, pass or fail."""
    dirs: list[Path] = []
    yield dirs
    for directory in dirs:
        if (directory / "metadata" / "campaign.db").exists():
            scancel_campaign(directory)
