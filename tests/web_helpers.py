"""Helpers of the dashboard's tests: small real campaigns, a real uvicorn, a real Chromium."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from axes import campaign_head
from campaigns.cli import main
from waiting import wait_for  # noqa: F401 -- the browser tests take it from here

CAMPAIGN = (
    campaign_head("Web test", "w1")
    + """\
job:
  command: 'if [ {{realization}} -eq {bad} ]; then echo boom {{realization}} >&2; exit 3; fi;
    sleep {nap}; echo done {{realization}}; echo {{realization}} > {{output}}'
  output: "r{{realization:03d}}_z{{redshift:.1f}}.txt"
execution:
  batch_size: 4
  max_retries: 1
  retry_backoff: {{base_seconds: 600, factor: 2, max_seconds: 600, jitter: 0}}
overrides:
  - match: {{redshift: 2.0}}
    execution: {{max_retries: 0}}
"""
)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def write_campaign(folder: Path, n: int = 6, bad: int = 2, nap: float = 0.0) -> Path:
    """A campaign of 2n jobs; realization `bad` exits 3 (z=1.0 may retry, z=2.0 may not)."""
    path = folder / "web.yaml"
    path.write_text(CAMPAIGN.format(n=n, bad=bad, nap=nap))
    return path


def forty_thousand_jobs(folder: Path, error: str) -> tuple[Path, Path]:
    """(config, root) of an initialised 40,000-job campaign `b1_big` whose even-numbered jobs
    failed with a timeout and `error`: the reference size, made in about a second."""
    import sqlalchemy as sa

    from campaigns.store.schema import jobs_table

    config, root = folder / "big.yaml", folder / "runs"
    config.write_text(
        'campaign: {name: "Big", version: "b1", machine: local}\n'
        "parameters: {realization: {range: [0, 20000]}, redshift: [1.0, 2.0]}\n"
        'job: {command: "true", output: "r{realization:05d}_z{redshift:.1f}.txt"}\n'
    )
    cli("init", str(config), "--root", str(root))
    db = sa.create_engine(f"sqlite:///{root / 'b1_big' / 'metadata' / 'campaign.db'}")
    with db.begin() as conn:
        conn.execute(
            jobs_table.update()
            .where(jobs_table.c.id % 2 == 0)
            .values(state="failed", attempts=1, failure_class="timeout", error=error)
        )
    db.dispose()
    return config, root


def cli(*argv: str) -> None:
    """Run one command; fail the test when it does not exit 0."""
    code = main(list(argv))
    assert code == 0, f"run-campaign {' '.join(argv)} exited {code}"


def status_json(config: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """`status --json` as the CLI prints it."""
    capsys.readouterr()
    cli("status", str(config), "--root", str(root), "--json")
    return dict(json.loads(capsys.readouterr().out))


def run_until_done(config: Path, root: Path, timeout: float = 120) -> None:
    """Refresh from the local backend until no job is queued or running."""
    from campaigns.ops.manager import CampaignManager

    deadline = time.monotonic() + timeout
    while True:
        manager = CampaignManager(config, root=root)
        counts = manager.monitor_progress().counts
        manager.close()
        if counts["queued"] + counts["running"] == 0:
            return
        assert time.monotonic() < deadline, f"campaign not done after {timeout} s: {counts}"
        time.sleep(0.3)


@contextmanager
def live_server(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` with a real uvicorn in a thread; yield its base URL (port chosen freely)."""
    import uvicorn

    from campaigns.web.server import bind

    sock = bind(host, 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def chromium_path() -> str | None:
    """The distribution's Chromium (CAMPAIGNS_CHROMIUM overrides), if installed."""
    chosen = os.environ.get("CAMPAIGNS_CHROMIUM") or shutil.which("chromium")
    return chosen if chosen and os.access(chosen, os.X_OK) else None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A real headless Chromium driven by Playwright (skip, or fail where required, without)."""
    from conftest import REQUIRE_BROWSER

    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        reason = "needs Chromium and Playwright: bash scripts/dev/browser-deps.sh"
        if REQUIRE_BROWSER:
            pytest.fail(f"browser tests are required here but cannot run: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
