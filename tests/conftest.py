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

from campaigns.scheduler import registry
from fake_scheduler import SharedFake
from slurm_helpers import Cluster, require_slurm, scancel_campaign

REQUIRE_SLURM = os.environ.get("CAMPAIGNS_REQUIRE_SLURM") == "1" or bool(os.environ.get("CI"))
#: The repository's own campaign folder, where the README's quickstart leaves its example.
REPO_CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"
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


def _snapshot(folder: Path) -> dict[str, float]:
    """Every path under `folder` with its modification time."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.lstat().st_mtime for p in folder.rglob("*")}


_repo_campaigns_before: dict[str, float] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _repo_campaigns_before.update(_snapshot(REPO_CAMPAIGNS))


@pytest.fixture(autouse=True)
def _away_from_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own directory: a default `./campaigns` lands in tmp_path,
    never in the repository (where the quickstart's example campaign may live)."""
    monkeypatch.chdir(tmp_path)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _snapshot(REPO_CAMPAIGNS) != _repo_campaigns_before:
        print(
            f"\nA test wrote into the repository's {REPO_CAMPAIGNS}: tests must keep their "
            "campaigns under tmp_path. Failing the session."
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
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
def fake_backend() -> Iterator[type[SharedFake]]:
    """A backend named `fake`, added the way a new one is: one class, one registration."""
    registry.register("fake", "fake_scheduler:SharedFake")
    yield SharedFake
    registry.unregister("fake")
    SharedFake.instance = None


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
