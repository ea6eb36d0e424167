"""Shared test setup.

Slurm tests (`@pytest.mark.slurm`) run against the real cluster that
`scripts/dev/slurm-cluster.sh up` starts. Without Slurm they skip with a
reason, except when CI is set or CAMPAIGNS_REQUIRE_SLURM=1: then a skipped or
missing Slurm test fails the session, so CI can never go green without them.
The Perlmutter-shaped cluster's tests (`@pytest.mark.perlmutter`, started by
`scripts/dev/slurm-cluster.sh up --profile perlmutter`, selected with SLURM_CONF) run in
the same session and are required by the same variable.

PostgreSQL tests (`@pytest.mark.postgres`, and the `postgresql` half of every test
that takes the `db_url` or `database` fixture) run against the real server of
`scripts/dev/postgres.sh up`, the same way: skipped without it, required (a skip
fails the session) when CI is set or CAMPAIGNS_REQUIRE_POSTGRES=1.

Browser tests (`@pytest.mark.browser`) drive a real headless Chromium
(`scripts/dev/browser-deps.sh` installs it); the same rule holds for them with
CAMPAIGNS_REQUIRE_BROWSER=1.

Under CI (or CAMPAIGNS_REQUIRE_ALL=1) no test may skip at all: what the other skips need is
in the `test` extra (the web server's libraries, sphinx, mpi4py, pyarrow) or installed by
`scripts/dev/slurm-cluster.sh up` (Open MPI's mpirun), so a skip there means a broken
setup, and the session fails naming every skipped test and its reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaigns.scheduler import registry
from fake_scheduler import SharedFake
from pg_helpers import REQUIRE_POSTGRES, fresh_schema, password
from slurm_helpers import Cluster, require_slurm, scancel_campaign

REQUIRE_SLURM = os.environ.get("CAMPAIGNS_REQUIRE_SLURM") == "1" or bool(os.environ.get("CI"))
REQUIRE_BROWSER = os.environ.get("CAMPAIGNS_REQUIRE_BROWSER") == "1" or bool(os.environ.get("CI"))
REQUIRE_ALL = os.environ.get("CAMPAIGNS_REQUIRE_ALL") == "1" or bool(os.environ.get("CI"))
#: The repository's own campaign folder, where the README's quickstart leaves its example.
REPO_CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"
#: Outcomes of the tests that CI requires, per marker.
_outcomes: dict[str, dict[str, int]] = {
    marker: {"passed": 0, "skipped": 0, "failed": 0}
    for marker in ("slurm", "perlmutter", "postgres", "browser")
}
#: Every skipped test, with its reason.
_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        _skipped.append(f"{report.nodeid}: {reason}")
    for marker, outcomes in _outcomes.items():
        if marker not in report.keywords:
            continue
        if report.when == "call" and report.passed:
            outcomes["passed"] += 1
        elif report.skipped:
            outcomes["skipped"] += 1
        elif report.failed:
            outcomes["failed"] += 1


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
    if session.config.getoption("collectonly"):
        return
    required = {
        "slurm": (REQUIRE_SLURM, "CAMPAIGNS_REQUIRE_SLURM", "scripts/dev/slurm-cluster.sh up"),
        "perlmutter": (
            REQUIRE_SLURM,
            "CAMPAIGNS_REQUIRE_SLURM",
            "scripts/dev/slurm-cluster.sh up --profile perlmutter",
        ),
        "postgres": (REQUIRE_POSTGRES, "CAMPAIGNS_REQUIRE_POSTGRES", "scripts/dev/postgres.sh up"),
        "browser": (REQUIRE_BROWSER, "CAMPAIGNS_REQUIRE_BROWSER", "scripts/dev/browser-deps.sh"),
    }
    if REQUIRE_ALL and _skipped:
        listed = "\n  ".join(_skipped[:20]) + (" ..." if len(_skipped) > 20 else "")
        print(
            f"\n{len(_skipped)} tests were skipped where none may be (CI or "
            f"CAMPAIGNS_REQUIRE_ALL=1): failing the session. Install the `test` extra and run "
            f"the `up` scripts of scripts/dev/.\n  {listed}"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    for marker, (needed, variable, start) in required.items():
        outcomes = _outcomes[marker]
        if not needed:
            continue
        if outcomes["skipped"] or not outcomes["passed"]:
            print(
                f"\n{marker} tests are required here (CI or {variable}=1) but "
                f"{outcomes['passed']} passed and {outcomes['skipped']} were skipped: failing "
                f"the session. Make them runnable with `bash {start}`."
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL: an SQLite file in tmp_path, or a fresh schema on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/c.db"
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Where the CLI puts new campaigns: its default SQLite file, or (CAMPAIGNS_DB_URL) a fresh
    schema on the real PostgreSQL, with the password in PGPASSWORD as users keep it."""
    if request.param == "sqlite":
        monkeypatch.delenv("CAMPAIGNS_DB_URL", raising=False)
        yield "sqlite"
        return
    with fresh_schema() as url:
        monkeypatch.setenv("CAMPAIGNS_DB_URL", url)
        monkeypatch.setenv("PGPASSWORD", password())
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the real PostgreSQL (its URL carries the password)."""
    with fresh_schema() as url:
        yield url
